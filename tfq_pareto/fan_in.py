"""FanInPrecisionScheme: each layer's bits from its fan-in d (beyond the paper, after Prop. 5.1)."""

from tfq_pareto import plan as plan_lib
from tfq_pareto.backend import keras
from tfq_pareto.checks import check_int
from tfq_pareto.quantizers import check_bits
from tfq_pareto.scheme import DualPrecisionScheme


def _check_thresholds(thresholds):
    checked = []
    for entry in thresholds:
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            raise ValueError(
                f"thresholds must be (max_fan_in, bits) pairs; received {entry!r}"
            )
        limit, bits = entry
        check_int("a fan-in threshold", limit)
        checked.append((limit, check_bits("threshold bits", bits)))
    limits = [limit for limit, _ in checked]
    if limits != sorted(set(limits)):
        raise ValueError(f"fan-in thresholds must be strictly increasing; received {limits}")
    return tuple(checked)


@keras.utils.register_keras_serializable(package="tfq_pareto")
class FanInPrecisionScheme(DualPrecisionScheme):
    """Each conv/dense layer gets its bits from its fan-in d = C_in * K_w * K_h (beyond the paper).

    Prop. 5.1: the per-filter scale estimate mean|W_i| gets noisier as d falls, so
    small-fan-in filters want more bits. ``thresholds`` maps fan-in ranges to
    bits: a layer takes the bits of the first ``(limit, bits)`` with d < limit,
    else ``default_bits``. DualPrecision is the special case
    ``thresholds=((10, dw_bits),), default_bits=conv_bits`` when every standard
    conv has d >= 10 (3x3 depthwise filters have d = 9).

    Args:
      thresholds: increasing ``(limit, bits)`` pairs, e.g. ``((32, 4),)``:
        d < 32 -> 4 bits.
      default_bits: bits of layers at or above every limit, 1..8.
      first_last_bits, act_bits, ternary_scale: as in :class:`DualPrecisionScheme`.
    """

    def __init__(self, thresholds=((32, 4),), default_bits=1, first_last_bits=8, act_bits=8,
                 ternary_scale="mean_abs"):
        self.thresholds = _check_thresholds(thresholds)
        self.default_bits = check_bits("default_bits", default_bits)
        super().__init__(default_bits, default_bits, first_last_bits, act_bits, ternary_scale)

    def weight_bits(self, layer, first_or_last):
        """The bits of the first threshold above the layer's fan-in d, else ``default_bits``."""
        if first_or_last and self.first_last_bits is not None:
            return self.first_last_bits
        _, d = plan_lib.filters_and_fan_in(layer)
        for limit, bits in self.thresholds:
            if d < limit:
                return bits
        return self.default_bits

    def get_config(self):
        return {
            "thresholds": [list(t) for t in self.thresholds],
            "default_bits": self.default_bits,
            "first_last_bits": self.first_last_bits,
            "act_bits": self.act_bits,
            "ternary_scale": self.ternary_scale,
        }
