"""Does it fit? Flash, RAM and MACs of an exported model against a device's budget.

:func:`fit_section` makes the manifest's ``fit`` certificate from measured
figures: flash is the length of the C array the firmware stores (the packed
file), RAM is the TFLM arena measured on the real interpreter, MACs are counted
from the model's ops. :class:`Budget` holds a part's limits (:data:`DEVICES`
lists common ones) and :meth:`Budget.check` says whether a certificate fits
and by how much.

The arena is measured with the tflite-micro Python package's interpreter: TFLM's
reference kernels, built for the 64-bit host. On a 32-bit microcontroller its
persistent allocations (pointers, node structs) are smaller, so the measured
figure bounds the device's from above for the same kernels. Optimized kernels
may also ask for scratch buffers: for CMSIS-NN the certificate adds, per op, the
buffer CMSIS-NN's ``*_get_buffer_size`` functions request (see
:func:`cmsis_nn_scratch_bytes`); scratch buffers of different ops do not live
at the same time, so ``arena + max over ops`` bounds the CMSIS-NN arena.
"""

import dataclasses

import numpy as np

from tflite_export.errors import ExportError
from tflite_export.flatbuffer import op_name, parse

KIB = 1024
MIB = 1024 * KIB

#: RAM kept free for the application (stack, heap, drivers, the interpreter
#: object) when a :class:`Budget` is made from a device: 1/8 of its SRAM,
#: at least 8 KiB. An assumption to override for a real firmware.
RAM_RESERVE_FRACTION = 0.125
MIN_RAM_RESERVE_BYTES = 8 * KIB
#: Flash kept for the application and the TFLM runtime with its kernels when a
#: :class:`Budget` is made from a device: 128 KiB. An assumption to override.
FLASH_RESERVE_BYTES = 128 * KIB


@dataclasses.dataclass(frozen=True)
class Device:
    """A microcontroller's on-chip memories (from its datasheet; the flash of a board
    whose part has no internal flash is the board's external flash, said in ``note``)."""

    flash_bytes: int
    sram_bytes: int
    core: str
    note: str = ""


#: Common parts, flash and SRAM from their datasheets' feature summaries.
DEVICES = {
    "stm32l432kc": Device(256 * KIB, 64 * KIB, "Cortex-M4F"),
    "stm32f411re": Device(512 * KIB, 128 * KIB, "Cortex-M4F"),
    "stm32f746ng": Device(1 * MIB, 320 * KIB, "Cortex-M7"),
    "stm32h743zi": Device(2 * MIB, 1 * MIB, "Cortex-M7", "SRAM includes 192 KiB of TCM"),
    "nrf52840": Device(1 * MIB, 256 * KIB, "Cortex-M4F", "Arduino Nano 33 BLE Sense"),
    "nrf5340_app": Device(1 * MIB, 512 * KIB, "Cortex-M33", "application core"),
    "apollo3": Device(1 * MIB, 384 * KIB, "Cortex-M4F", "SparkFun Edge"),
    "rp2040_pico": Device(2 * MIB, 264 * KIB, "Cortex-M0+",
                          "flash: the Raspberry Pi Pico board's external QSPI flash"),
}


@dataclasses.dataclass(frozen=True)
class Budget:
    """What a model may use on the target: flash and RAM bytes, optionally MACs.

    Attributes:
      flash_bytes: bytes available for the model's C array.
      ram_bytes: bytes available for the TFLM tensor arena.
      max_macs: multiply-accumulates per inference allowed (None: no limit), a
        proxy for the time budget.
      name: a label (e.g. the device's name).
    """

    flash_bytes: int
    ram_bytes: int
    max_macs: int = None
    name: str = None

    def __post_init__(self):
        for field, value in (("flash_bytes", self.flash_bytes), ("ram_bytes", self.ram_bytes)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{field} must be an int >= 1 (bytes); received {value!r}")
        if self.max_macs is not None and (isinstance(self.max_macs, bool)
                                          or not isinstance(self.max_macs, (int, float))
                                          or not self.max_macs > 0):
            raise ValueError(f"max_macs must be a number > 0 or None; received {self.max_macs!r}")

    @classmethod
    def for_device(cls, name, *, flash_reserve_bytes=FLASH_RESERVE_BYTES,
                   ram_reserve_bytes=None, max_macs=None):
        """The budget of a part of :data:`DEVICES` less the application's reserves.

        ``ram_reserve_bytes`` defaults to :data:`RAM_RESERVE_FRACTION` of the SRAM
        (at least :data:`MIN_RAM_RESERVE_BYTES`); ``flash_reserve_bytes`` to
        :data:`FLASH_RESERVE_BYTES`.
        """
        if name not in DEVICES:
            raise ValueError(f"unknown device {name!r}; known: {sorted(DEVICES)}")
        device = DEVICES[name]
        if ram_reserve_bytes is None:
            ram_reserve_bytes = max(MIN_RAM_RESERVE_BYTES,
                                    int(RAM_RESERVE_FRACTION * device.sram_bytes))
        flash, ram = device.flash_bytes - flash_reserve_bytes, device.sram_bytes - ram_reserve_bytes
        if flash < 1 or ram < 1:
            raise ValueError(f"the reserves ({flash_reserve_bytes:,} B flash, "
                             f"{ram_reserve_bytes:,} B RAM) leave nothing of {name!r}")
        return cls(flash, ram, max_macs, name)

    def check(self, fit):
        """Margins of a ``fit`` certificate against this budget.

        RAM is checked against ``fit["ram_bytes_upper_bound"]`` (the measured arena
        plus the largest CMSIS-NN scratch buffer), so a fit holds for both kernel sets.

        Returns:
          ``{"budget": ..., "fits": bool, "margins": {"flash_bytes": ..., "ram_bytes": ...,
          "macs": ...}, "over": [...]}``; a margin is what is left (negative: over).
        """
        margins = {"flash_bytes": self.flash_bytes - fit["flash_bytes"],
                   "ram_bytes": self.ram_bytes - fit["ram_bytes_upper_bound"]}
        if self.max_macs is not None:
            margins["macs"] = self.max_macs - fit["macs"]
        over = [f"{key.replace('_bytes', '')} over by {-value:,.0f}"
                f"{' B' if key.endswith('_bytes') else ''}"
                for key, value in margins.items() if value < 0]
        return {"budget": dataclasses.asdict(self), "fits": not over, "margins": margins,
                "over": over}


class BudgetError(ExportError):
    """An export that does not fit its budget (raised when the budget is enforced)."""


def enforce(budget, fit, what="the packed model"):
    """Raises :class:`BudgetError` naming what is over and by how much; returns the check."""
    check = budget.check(fit)
    if not check["fits"]:
        name = f" {budget.name!r}" if budget.name else ""
        raise BudgetError(f"{what} does not fit budget{name} ({budget.flash_bytes:,} B flash, "
                          f"{budget.ram_bytes:,} B RAM"
                          + (f", {budget.max_macs:,.0f} MACs" if budget.max_macs else "")
                          + f"): {'; '.join(check['over'])}")
    return check


def _op_shapes(model, graph, op):
    def shape(index):
        return [int(d) for d in graph.tensors[index].shape] if index >= 0 else None

    return [shape(i) for i in op.inputs], [shape(i) for i in op.outputs]


def macs(model):
    """Multiply-accumulates of one inference: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED.

    Conv: output pixels x output channels x filter fan-in (grouped convs: the
    filter's own input depth); depthwise: output elements x K x K; fully
    connected: output rows x units x fan-in. Other ops (adds, pooling) are not
    counted.
    """
    parsed = parse(model)
    graph = parsed.model.subgraphs[0]
    total = 0
    for op in graph.operators:
        name = op_name(parsed.model, op)
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        inputs, outputs = _op_shapes(parsed.model, graph, op)
        filt, out = inputs[1], outputs[0]
        if name == "CONV_2D":  # filter [O, KH, KW, I]
            total += int(np.prod(out)) * filt[1] * filt[2] * filt[3]
        elif name == "DEPTHWISE_CONV_2D":  # filter [1, KH, KW, C]
            total += int(np.prod(out)) * filt[1] * filt[2]
        else:  # filter [O, I]
            total += int(np.prod(out)) * filt[1]
    return int(total)


def _align4(n):
    return n + (4 - n % 4) % 4


def cmsis_nn_scratch_bytes(model):
    """Per op, the scratch buffer CMSIS-NN's s8 kernels request on a DSP or MVE core.

    Formulas of CMSIS-NN (ARM-software/CMSIS-NN, Source/ConvolutionFunctions/
    ``arm_convolve_get_buffer_sizes_s8.c``, ``arm_depthwise_conv_get_buffer_sizes_s8.c``,
    Source/FullyConnectedFunctions/``arm_fully_connected_get_buffer_sizes_s8.c``),
    each op taking the larger of its DSP (Cortex-M4/M7/M33) and MVE (Cortex-M55/M85)
    figure so that the result bounds either:

    - CONV_2D, 1x1 with stride 1 (``arm_convolve_1x1_s8_fast``): DSP ``2 * C_in *
      sizeof(int16)``; 1x1 strided: 0; otherwise (``arm_convolve_s8``): DSP
      ``2 * align4(K_h * K_w * C_in) * sizeof(int16)``, MVE ``4 * 16 *
      ceil(K_h * K_w * C_in / 16)``;
    - DEPTHWISE_CONV_2D with multiplier 1: 3x3 with padding <= 1 on DSP: 0, else
      DSP ``C_in * K_h * K_w * sizeof(int16)``; MVE ``4 * CH_IN_BLOCK_MVE (124) *
      K_h * K_w``;
    - FULLY_CONNECTED: DSP 0, MVE ``units * sizeof(int32)``.

    Returns:
      ``[{"op": index, "name": op, "bytes": n}, ...]`` for the ops that ask for one.
    """
    parsed = parse(model)
    graph = parsed.model.subgraphs[0]
    rows = []
    for index, op in enumerate(graph.operators):
        name = op_name(parsed.model, op)
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        inputs, outputs = _op_shapes(parsed.model, graph, op)
        x, filt, out = inputs[0], inputs[1], outputs[0]
        if name == "CONV_2D":
            kh, kw, cin = filt[1], filt[2], x[3]
            options = op.builtinOptions
            if kh == 1 and kw == 1:
                one_by_one_fast = options.strideH == 1 and options.strideW == 1
                size = 2 * cin * 2 if one_by_one_fast else 0
            else:
                size = max(2 * _align4(kh * kw * cin) * 2, 4 * 16 * -(-(kh * kw * cin) // 16))
        elif name == "DEPTHWISE_CONV_2D":
            kh, kw, cin, cout = filt[1], filt[2], x[3], out[3]
            mve = 4 * 124 * kh * kw if cin == cout else 0
            # A 3x3 filter pads at most 1 (SAME) or 0 (VALID): CMSIS-NN's 3x3 kernel.
            dsp = 0 if cin != cout or kh == kw == 3 else cin * kh * kw * 2
            size = max(dsp, mve)
        else:
            size = filt[0] * 4
        if size:
            rows.append({"op": index, "name": name, "bytes": int(size)})
    return rows


def fit_section(*, flash_bytes, arena_bytes, int8, invoke_seconds=None, kernels=None):
    """The manifest's ``fit`` certificate.

    Args:
      flash_bytes: bytes of the C array the firmware stores (the packed file).
      arena_bytes: the packed file's TFLM arena, measured.
      int8: the int8 model (MACs and CMSIS-NN scratch are counted on it; a split
        packed file has the same MACs).
      invoke_seconds: host CPU seconds of one TFLM invoke (relative use only).
      kernels: what the arena was measured with (text).
    """
    import tflite_micro  # pylint: disable=import-outside-toplevel

    scratch = cmsis_nn_scratch_bytes(int8)
    largest = max((r["bytes"] for r in scratch), default=0)
    return {
        "flash_bytes": int(flash_bytes),
        "ram_bytes": int(arena_bytes),
        "ram_bytes_upper_bound": int(arena_bytes) + largest,
        "macs": macs(int8),
        "tflm_invoke_seconds_host": invoke_seconds,
        "tflm_version": getattr(tflite_micro, "__version__", "unknown"),
        "arena_measured_with": kernels or "tflite-micro Python interpreter: TFLM reference "
                                          "kernels, 64-bit host build",
        "cmsis_nn_scratch": {"per_op": scratch, "largest_bytes": largest,
                             "note": "ram_bytes_upper_bound = ram_bytes + the largest "
                                     "CMSIS-NN scratch buffer (one op's scratch lives at "
                                     "a time)"},
    }
