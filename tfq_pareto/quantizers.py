"""Per-filter weight quantizers of Sec. 3.1, and the activation quantizer.

Activations (:class:`ActivationQuantizer`) are fake-quantized per tensor with a
moving-average range (Jacob et al. 2018), as tfmot does; see its docstring for
where it departs from tfmot's quantizer and why.

Every quantizer works on one *filter* at a time: the weights that produce one
output channel.

* Conv2D kernel ``(kh, kw, c_in, c_out)``: one scale per ``c_out``.
* Dense kernel ``(c_in, units)``: one scale per unit.
* DepthwiseConv2D kernel ``(kh, kw, c, depth_multiplier)``: one scale per
  ``(c, m)`` pair, i.e. per output channel (a filter has only kh * kw weights).

Formulas, for a filter W_i with m_i = mean|W_i|:

* b = 1, Eq. (4): ``Q(W_i) = sign(W_i) * m_i`` with sign(0) = +1.
* b = 2, Eq. (3): ternary: ``0`` where ``|W_ij| < 0.7 m_i``, else
  ``sign(W_ij) * m_i``. With ``ternary_scale="twn"`` the non-zero value is the
  mean of |W_ij| over the kept entries (TWN, Li et al. 2016) instead.
* b in 3..8, Eq. (1): ``round(clamp(W_i, -a_i, a_i) / s_i) * s_i`` with
  ``a_i = m_i / c_b`` (Appendix B, :mod:`tfq_pareto.clipping`) and
  ``s_i = a_i / (2^(b-1) - 1)``: 2^b - 1 levels, symmetric, zero included.
* Backward, Eq. (5): straight-through, dQ/dW = identity for every precision.

All weight quantizers are scale invariant, so they are evaluated on ``W_i / max|W_i|``
and scaled back: no overflow for huge weights, and an all-zero filter
quantizes to zeros without dividing by zero.
"""

from tfq_pareto import checks
from tfq_pareto.backend import keras, tf, tfmot
from tfq_pareto.clipping import CLIPPING_CONSTANTS, uniform_levels

#: Weight precisions the package supports.
SUPPORTED_BITS = (1, 2, 3, 4, 5, 6, 7, 8)

#: Ternary threshold as a fraction of mean|W_i|, Eq. (3).
TERNARY_THRESHOLD = 0.7

#: Allowed values of ``ternary_scale``.
TERNARY_SCALES = ("mean_abs", "twn")


def check_bits(name, value, allowed=SUPPORTED_BITS):
    """Returns ``int(value)``; raises ValueError unless ``value`` is an int in ``allowed``."""
    return checks.check_bits(name, value, allowed)


def filter_axes(rank, depthwise=False):
    """Axes reduced to get one statistic per filter: all but the filter axes.

    Conv2D/Dense kernels have their filters on the last axis; depthwise kernels
    ``(kh, kw, c, m)`` on the last two.
    """
    return tuple(range(rank - 2)) if depthwise else tuple(range(rank - 1))


def _normalise(w, axes):
    """Returns (w / max|w|, max|w|) per filter, with max|w| = 1 for an all-zero filter."""
    max_abs = tf.reduce_max(tf.abs(w), axis=axes, keepdims=True)
    max_abs = tf.where(max_abs > 0, max_abs, tf.ones_like(max_abs))
    return w / max_abs, max_abs


def _binary(w, axes):
    """Eq. (4) on a normalised tensor."""
    mean_abs = tf.reduce_mean(tf.abs(w), axis=axes, keepdims=True)
    return tf.where(w >= 0, mean_abs, -mean_abs)


def _ternary(w, axes, ternary_scale):
    """Eq. (3) on a normalised tensor."""
    abs_w = tf.abs(w)
    mean_abs = tf.reduce_mean(abs_w, axis=axes, keepdims=True)
    keep = abs_w >= TERNARY_THRESHOLD * mean_abs
    if ternary_scale == "twn":
        kept = tf.cast(keep, w.dtype)
        count = tf.reduce_sum(kept, axis=axes, keepdims=True)
        scale = tf.reduce_sum(abs_w * kept, axis=axes, keepdims=True) / tf.maximum(count, 1.0)
    else:
        scale = mean_abs
    signed = tf.where(w >= 0, scale, -scale)
    return tf.where(keep, signed, tf.zeros_like(w))


def _uniform(w, axes, num_bits):
    """Eq. (1) on a normalised tensor, clip a_i = mean|W_i| / c_b (Appendix B)."""
    mean_abs = tf.reduce_mean(tf.abs(w), axis=axes, keepdims=True)
    clip = mean_abs / CLIPPING_CONSTANTS[num_bits]
    step = clip / uniform_levels(num_bits)
    safe_step = tf.where(step > 0, step, tf.ones_like(step))
    return tf.round(tf.clip_by_value(w, -clip, clip) / safe_step) * step


def quantize_weights(w, num_bits, *, depthwise=False, ternary_scale="mean_abs"):
    """Quantizes a kernel per filter to ``num_bits``; the gradient passes straight through.

    Args:
      w: kernel tensor; conv ``(kh, kw, c_in, c_out)``, dense ``(c_in, units)``, or
        depthwise ``(kh, kw, c, depth_multiplier)`` when ``depthwise`` is True.
      num_bits: 1 (Eq. 4), 2 (Eq. 3) or 3..8 (Eq. 1).
      depthwise: whether ``w`` is a depthwise kernel (filters on the last two axes).
      ternary_scale: ``"mean_abs"`` (Eq. 3 as printed, the default, so that 1- and
        2-bit filters share one scale rule) or ``"twn"``; used only at 2 bits.

    Returns:
      Q(w), same shape and dtype; d Q(w) / d w = identity (Eq. 5).
    """
    check_bits("num_bits", num_bits)
    if ternary_scale not in TERNARY_SCALES:
        raise ValueError(
            f"ternary_scale must be one of {TERNARY_SCALES}; received {ternary_scale!r}"
        )
    axes = filter_axes(w.shape.rank, depthwise)

    @tf.custom_gradient
    def _quantize(x):
        normalised, max_abs = _normalise(x, axes)
        if num_bits == 1:
            q = _binary(normalised, axes)
        elif num_bits == 2:
            q = _ternary(normalised, axes, ternary_scale)
        else:
            q = _uniform(normalised, axes, num_bits)
        q = q * max_abs
        if num_bits > 2:
            # The top level a_i may exceed max|W_i|: keep it finite at float32's edge.
            q = tf.clip_by_value(q, -q.dtype.max, q.dtype.max)

        def straight_through(dy):
            return dy

        return q, straight_through

    return _quantize(tf.convert_to_tensor(w))


@keras.utils.register_keras_serializable(package="tfq_pareto")
class PerFilterWeightQuantizer(checks.ConfigMixin, tfmot.quantization.keras.quantizers.Quantizer):
    """tfmot ``Quantizer`` applying :func:`quantize_weights` to a layer's kernel.

    It holds no variables: the scales are recomputed from the float weights at
    every call, as Sec. 3.1 prescribes.

    Args:
      num_bits: 1..8.
      depthwise: True for depthwise kernels ``(kh, kw, c, depth_multiplier)``.
      ternary_scale: ``"mean_abs"`` (default, Eq. 3) or ``"twn"``; 2 bits only.
    """

    def __init__(self, num_bits, depthwise=False, ternary_scale="mean_abs"):
        self.num_bits = check_bits("num_bits", num_bits)
        if ternary_scale not in TERNARY_SCALES:
            raise ValueError(
                f"ternary_scale must be one of {TERNARY_SCALES}; received {ternary_scale!r}"
            )
        self.depthwise = bool(depthwise)
        self.ternary_scale = ternary_scale

    def build(self, tensor_shape, name, layer):
        return {}

    # Not autograph-converted: every branch here is on Python values (tfmot's wrapper
    # calls quantizers with a Python ``training``), and skipping the conversion cut
    # building a QAT MobileNetV2-CIFAR from 26.5 s to 17.5 s and a 1-epoch trial
    # from 76 s to 68 s (measured, 2 cores); the ops built are the same.
    @tf.autograph.experimental.do_not_convert
    def __call__(self, inputs, training, weights, **kwargs):
        return quantize_weights(
            inputs, self.num_bits, depthwise=self.depthwise, ternary_scale=self.ternary_scale
        )

    def get_config(self):
        return {
            "num_bits": self.num_bits,
            "depthwise": self.depthwise,
            "ternary_scale": self.ternary_scale,
        }


#: Activation range before the first training batch, and EMA decay of the range:
#: tfmot's MovingAverageQuantizer's.
ACTIVATION_INIT_RANGE = (-6.0, 6.0)
ACTIVATION_EMA_DECAY = 0.999

#: Op types whose output a non-negative activation quantizer may fuse with, and the
#: op's upper clamp (None: unbounded). FakeQuant(x, 0, M) == FakeQuant(ReLU6(x), 0, M)
#: for M <= 6, in value and in its straight-through gradient mask.
_FUSABLE_RELU_OPS = {"Relu": None, "Relu6": 6.0}


def ramped_decay(updates):
    """EMA decay after ``updates`` range updates: 0 at the first, then min(0.999, (1+n)/(10+n)).

    The first training batch sets the range; then the decay ramps up as in TF's
    ``ExponentialMovingAverage(num_updates=...)``: 0.18 at the second step, 0.9 after
    ~80 steps, 0.99 after ~900 and 0.999 after ~9,000, so a range follows the fast
    early growth of activations (layers without BN, the logits) and is smoothed later.
    """
    n = tf.cast(updates, tf.float32)
    ramp = tf.minimum(ACTIVATION_EMA_DECAY, (1.0 + n) / (10.0 + n))
    return tf.where(n > 0.5, ramp, tf.zeros_like(ramp))


def nudged_range(minimum, maximum, num_bits):
    """The range TF's fake-quant ops really use: [min, max] moved so 0 is a level.

    As ``tf.quantization.fake_quant_with_min_max_vars`` with ``narrow_range=False``:
    scale = (max - min) / (2^b - 1), zero point = round(-min / scale) clamped
    to 0..2^b - 1, and the nudged range is ``(-zp * scale, (2^b - 1 - zp) * scale)``.
    """
    quant_max = float(2**num_bits - 1)
    scale = (maximum - minimum) / quant_max
    safe_scale = tf.where(scale > 0, scale, tf.ones_like(scale))
    zero_point = tf.clip_by_value(tf.floor(-minimum / safe_scale + 0.5), 0.0, quant_max)
    return -zero_point * scale, (quant_max - zero_point) * scale


def fake_quantize_activations(x, minimum, maximum, num_bits, *, non_negative=False):
    """Per-tensor asymmetric fake-quant of ``x`` to ``num_bits`` in ``[minimum, maximum]``.

    Forward: ``tf.quantization.fake_quant_with_min_max_vars`` (Jacob et al. 2018),
    the op the TFLite converter reads. Backward: straight-through inside the
    nudged range, zero outside, and no gradient to the range (its variables are
    moving averages, not trained). TF's own gradient op also reduces the
    gradient for min and max in two extra passes over the tensor; here the mask
    is one ``Relu6Grad`` on ``x`` rescaled so the range maps to (0, 6).

    Args:
      x: float32 tensor, any shape.
      minimum, maximum: scalar tensors with minimum <= 0 <= maximum.
      num_bits: 2..8.
      non_negative: ``minimum`` is 0 (after a ReLU): skips one subtraction.

    Returns:
      The fake-quantized tensor, shape and dtype of ``x``.
    """
    low, high = nudged_range(minimum, maximum, num_bits)
    to_relu6 = 6.0 / tf.maximum(high - low, 1e-30)

    @tf.custom_gradient
    def _fake_quantize(inputs):
        y = tf.quantization.fake_quant_with_min_max_vars(
            inputs, minimum, maximum, num_bits=num_bits, narrow_range=False
        )

        def straight_through(dy):
            features = inputs * to_relu6 if non_negative else (inputs - low) * to_relu6
            return tf.raw_ops.Relu6Grad(gradients=dy, features=features)

        return y, straight_through

    return _fake_quantize(x)


def _relu_input(tensor):
    """(input, upper clamp) of the Relu/Relu6 op that produced ``tensor`` in a graph, else None."""
    if tf.executing_eagerly() or not hasattr(tensor, "op"):
        return None
    op = tensor.op
    if op.type not in _FUSABLE_RELU_OPS or op.inputs[0].dtype != tensor.dtype:
        return None
    return op.inputs[0], _FUSABLE_RELU_OPS[op.type]


@keras.utils.register_keras_serializable(package="tfq_pareto")
class ActivationQuantizer(checks.ConfigMixin, tfmot.quantization.keras.quantizers.Quantizer):
    """Activation fake-quant with a moving-average range, for any layer output.

    The range follows tfmot's ``MovingAverageQuantizer`` (which the export and
    the TFLite converter read): variables ``<name>_min`` and ``<name>_max``,
    updated in training to an EMA (decay 0.999) of the batch range extended to
    include 0; the op is :func:`fake_quantize_activations`. It departs from
    tfmot's quantizer in three ways:

    * **the range starts from the data** (``init_from_batch=True``, the
      default): the first training batch sets the range to that batch's range,
      and the EMA runs from there with a decay that ramps up to 0.999
      (:func:`ramped_decay`; a third variable, ``<name>_updates``, counts the
      updates and is saved with the model). tfmot starts at [-6, 6] and moves by
      0.1% a step, so a run shorter than a few thousand steps keeps a range many
      times wider than the data: a 4-bit grid over [-6, 6] has a step of 0.8,
      coarser than most activations. The ramp matters as much as the start: with
      a fixed 0.999 from a first-batch range, ranges that must grow (logits,
      layers without BN) stay clamped near the untrained model's small values,
      the straight-through mask zeroes the gradient beyond them, and the loss
      stalls (measured: digits, 4 epochs, loss 2.25 -> 1.9 instead of 1.1).
      Before the first training step (and with ``init_from_batch=False``,
      tfmot's behaviour) the range is [-6, 6];
    * the straight-through gradient skips the range's (unused) gradient;
    * with ``non_negative=True`` (the input is a ReLU's output, never negative)
      the minimum is 0 from the start, so no level is spent on negative values;
      and when, in a traced graph, the input is a ``Relu``/``Relu6`` op's
      output, the fake-quant reads the op's input instead: its clamp to
      [0, max <= 6] is the ReLU, and its mask the ReLU's gradient, so neither is
      computed twice.

    Args:
      num_bits: 2..8.
      non_negative: True only for the outputs of ReLU-like ops (values >= 0).
      init_from_batch: set the range from the first training batch (default);
        False keeps tfmot's fixed [-6, 6] start.
    """

    def __init__(self, num_bits, non_negative=False, init_from_batch=True):
        self.num_bits = check_bits("num_bits", num_bits, range(2, 9))
        self.non_negative = bool(non_negative)
        self.init_from_batch = bool(init_from_batch)

    def build(self, tensor_shape, name, layer):
        low = 0.0 if self.non_negative else ACTIVATION_INIT_RANGE[0]
        minimum = layer.add_weight(
            name + "_min", initializer=keras.initializers.Constant(low), trainable=False
        )
        maximum = layer.add_weight(
            name + "_max",
            initializer=keras.initializers.Constant(ACTIVATION_INIT_RANGE[1]),
            trainable=False,
        )
        variables = {"min_var": minimum, "max_var": maximum}
        if self.init_from_batch:
            variables["updates_var"] = layer.add_weight(
                name + "_updates", initializer=keras.initializers.Constant(0.0),
                trainable=False,
            )
        return variables

    @tf.autograph.experimental.do_not_convert
    def __call__(self, inputs, training, weights, **kwargs):
        min_var, max_var = weights["min_var"], weights["max_var"]
        if not training:
            return tf.quantization.fake_quant_with_min_max_vars(
                inputs, min_var, max_var, num_bits=self.num_bits, narrow_range=False
            )
        fused = _relu_input(inputs) if self.non_negative else None
        x = inputs if fused is None else fused[0]
        batch_max = tf.reduce_max(x)
        if fused is not None and fused[1] is not None:
            batch_max = tf.minimum(batch_max, fused[1])
        updates = weights.get("updates_var")
        decay = ACTIVATION_EMA_DECAY if updates is None else ramped_decay(updates)
        maximum = tf.__internal__.train.assign_moving_average(
            max_var, tf.maximum(batch_max, 0.0), decay, zero_debias=False
        )
        if self.non_negative:
            minimum = tf.zeros_like(maximum)
        else:
            minimum = tf.__internal__.train.assign_moving_average(
                min_var, tf.minimum(tf.reduce_min(x), 0.0), decay, zero_debias=False,
            )
        if updates is not None:
            with tf.control_dependencies([maximum, minimum]):
                updates.assign_add(1.0)
        return fake_quantize_activations(
            x, minimum, maximum, self.num_bits, non_negative=self.non_negative
        )

    def get_config(self):
        return {"num_bits": self.num_bits, "non_negative": self.non_negative,
                "init_from_batch": self.init_from_batch}


@keras.utils.register_keras_serializable(package="tfq_pareto")
class InputQuantizer(ActivationQuantizer):
    """The model input's fake-quant: an :class:`ActivationQuantizer` that zeroes non-finite values.

    A NaN or infinite pixel (a corrupt image) would otherwise reach the range,
    the loss and, through one optimizer step, every weight. Here it becomes 0
    (the data mean, after normalisation) before the range and the fake-quant
    see it; finite inputs are unchanged. One elementwise pass over the input.
    """

    @tf.autograph.experimental.do_not_convert
    def __call__(self, inputs, training, weights, **kwargs):
        inputs = tf.where(tf.math.is_finite(inputs), inputs, tf.zeros_like(inputs))
        return super().__call__(inputs, training, weights, **kwargs)


def activation_quantizer(num_bits, non_negative=False, init_from_batch=True):
    """:class:`ActivationQuantizer` at ``num_bits`` (2..8), its range set by the first batch."""
    return ActivationQuantizer(num_bits, non_negative=non_negative, init_from_batch=init_from_batch)
