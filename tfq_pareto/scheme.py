"""DualPrecision: the QuantizeRegistry, the QuantizeScheme, ``apply`` and ``quantize_scope``.

DualPrecision (Sec. 6): depthwise convs get ``dw_bits``, all other convs and
dense layers ``conv_bits``, the first and the last conv/dense layer
``first_last_bits``; activations ``act_bits``. The layout transforms are
tfmot's n-bit ones (Conv+BN and Conv+BN+ReLU keep BN unfolded during training,
the converter folds it; SeparableConv2D is split into a depthwise and a 1x1
conv), so ``act_bits`` reaches the fake-quant ops that actually run: the
ReLU/BN/Add outputs.
"""

import copy

from tensorflow_model_optimization.python.core.quantization.keras.experimental.default_n_bit import (  # noqa: E501
    default_n_bit_quantize_configs as n_bit_configs,
    default_n_bit_quantize_registry as n_bit_registry,
    default_n_bit_transforms as n_bit_transforms,
)
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer
from tensorflow_model_optimization.python.core.quantization.keras import utils as tfmot_utils
from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import (
    model_transformer,
    transforms as tfmot_transforms,
)

from tfq_pareto import graph, keras3
from tfq_pareto.checks import ConfigMixin, check_int
from tfq_pareto.backend import keras, tfmot
from tfq_pareto.configs import (
    ACTIVATION_BITS,
    CONFIG_FOR_LAYER,
    CUSTOM_OBJECTS,
    OutputQuantizeConfig,
    ReLUQuantizeConfig,
    is_relu,
)
from tfq_pareto.quantizers import (
    SUPPORTED_BITS,
    TERNARY_SCALES,
    ActivationQuantizer,
    InputQuantizer,
    check_bits,
)

#: Bits of the fake-quant right after the model input: images are 8-bit data.
INPUT_BITS = 8

#: Bits of the last layers' output (the logits), whatever act_bits is.
OUTPUT_BITS = 8

#: Layers quantized at their output only, beyond tfmot's n-bit registry.
_EXTRA_OUTPUT_LAYERS = (
    keras.layers.BatchNormalization,
    keras.layers.Multiply,
    keras.layers.Subtract,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)

#: tfmot configs its transforms put on a conv/dense layer to drop its output fake-quant.
_TFMOT_CONFIGS = (n_bit_configs.NoOpQuantizeConfig, n_bit_registry.DefaultNBitQuantizeConfig)

#: Layers with depthwise kernels (separable convs are split into depthwise + 1x1).
_DEPTHWISE_LAYERS = (
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.SeparableConv1D,
)

#: Layers that the layout transforms rewrite into supported layers.
_TRANSFORMED_LAYERS = (keras.layers.SeparableConv2D, keras.layers.SeparableConv1D)

# tfmot's n-bit transforms, in the order tfmot applies them, after the input one.
_N_BIT_TRANSFORMS = (
    n_bit_transforms.SeparableConv1DQuantize,
    n_bit_transforms.SeparableConvQuantize,
    n_bit_transforms.Conv2DReshapeBatchNormReLUQuantize,
    n_bit_transforms.Conv2DReshapeBatchNormActivationQuantize,
    n_bit_transforms.Conv2DBatchNormReLUQuantize,
    n_bit_transforms.Conv2DBatchNormActivationQuantize,
    n_bit_transforms.Conv2DReshapeBatchNormQuantize,
    n_bit_transforms.Conv2DBatchNormQuantize,
    n_bit_transforms.ConcatTransform6Inputs,
    n_bit_transforms.ConcatTransform5Inputs,
    n_bit_transforms.ConcatTransform4Inputs,
    n_bit_transforms.ConcatTransform3Inputs,
    n_bit_transforms.ConcatTransform,
    n_bit_transforms.LayerReLUQuantize,
    n_bit_transforms.LayerReluActivationQuantize,
    n_bit_transforms.DenseBatchNormQuantize,
    n_bit_transforms.DenseBatchNormReLUQuantize,
    n_bit_transforms.DenseBatchNormActivationQuantize,
)


def _check_optional_bits(name, value):
    return None if value is None else check_bits(name, value)


def _own_output_config(config):
    """tfmot's output-only n-bit config -> :class:`OutputQuantizeConfig` at the same bits.

    Our config's quantizer starts its range from the first training batch
    instead of tfmot's [-6, 6]; any other config is returned unchanged.
    """
    # pylint: disable=protected-access
    if type(config) is n_bit_configs.DefaultNBitOutputQuantizeConfig:  # noqa: E721
        return OutputQuantizeConfig(config._num_bits_activation)
    if (type(config) is n_bit_registry.DefaultNBitQuantizeConfig  # noqa: E721
            and config.quantize_output and not config.weight_attrs
            and not config.activation_attrs):
        return OutputQuantizeConfig(config._num_bits_activation)
    return config


class _InputLayerQuantize(tfmot_transforms.Transform):
    """InputLayer -> QuantizeLayer(:class:`InputQuantizer` at ``num_bits``).

    tfmot's own transform uses its ``AllValuesQuantizer``, whose range starts
    at [-6, 6] and only ever grows: normalised images (|x| ~ 2) would keep an
    8-bit input step 3x coarser than needed. Ours starts from the first batch
    and then follows the EMA, like every other activation, and zeroes
    non-finite pixels.
    """

    def __init__(self, num_bits):
        self._num_bits = num_bits

    def pattern(self):
        return tfmot_transforms.LayerPattern("InputLayer")

    def replacement(self, match_layer):
        layer = quantize_layer.QuantizeLayer(InputQuantizer(self._num_bits))
        config = tfmot_utils.serialize_layer(layer, use_legacy_format=True)
        config["name"] = layer.name
        return tfmot_transforms.LayerNode(config, input_layers=[match_layer])

    def custom_objects(self):
        return {"QuantizeLayer": quantize_layer.QuantizeLayer,
                "ActivationQuantizer": ActivationQuantizer, "InputQuantizer": InputQuantizer}


class DualPrecisionQuantizeRegistry(n_bit_registry.DefaultNBitQuantizeRegistry):
    """Per-layer configs: the precision of each conv/dense layer, tfmot's n-bit for the rest.

    Args:
      conv_bits: bits of standard convs and dense layers, 1..8.
      dw_bits: bits of depthwise convs, 1..8, or None for models without them.
      first_last_bits: bits of the layers named in ``first_last_layers``, or None
        to treat them like the others.
      act_bits: activation bits, 2..8.
      first_last_layers: names of the first and last conv/dense layers.
      last_layers: names of the last conv/dense layers; their output (the
        logits) is quantized at 8 bits whatever ``act_bits`` is.
      no_activation_layers: names of conv/dense layers whose output a following
        ReLU or Concatenate quantizes: their weights only are quantized.
      ternary_scale: 2-bit scale rule, see :func:`tfq_pareto.quantizers.quantize_weights`.
    """

    def __init__(
        self,
        conv_bits,
        dw_bits=None,
        first_last_bits=8,
        act_bits=8,
        first_last_layers=(),
        ternary_scale="mean_abs",
        last_layers=(),
        no_activation_layers=(),
    ):
        super().__init__(num_bits_weight=8, num_bits_activation=act_bits)
        # tfmot's base class shares its _QuantizeInfo objects between instances
        # (a class attribute mutated in __init__): keep copies of our own.
        self._layer_quantize_map = {
            cls: copy.copy(info) for cls, info in self._layer_quantize_map.items()
        }
        self.conv_bits = check_bits("conv_bits", conv_bits)
        self.dw_bits = _check_optional_bits("dw_bits", dw_bits)
        self.first_last_bits = _check_optional_bits("first_last_bits", first_last_bits)
        self.act_bits = check_bits("act_bits", act_bits, ACTIVATION_BITS)
        self.first_last_layers = frozenset(first_last_layers)
        self.last_layers = frozenset(last_layers)
        self.no_activation_layers = frozenset(no_activation_layers)
        self.ternary_scale = ternary_scale

    def layer_bits(self, layer):
        """Weight bits for a Conv2D, DepthwiseConv2D or Dense layer."""
        if self.first_last_bits is not None and layer.name in self.first_last_layers:
            return self.first_last_bits
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            if self.dw_bits is None:
                raise ValueError(
                    f"layer {layer.name!r} is a DepthwiseConv2D but dw_bits is None; "
                    f"give dw_bits, one of {SUPPORTED_BITS}"
                )
            return self.dw_bits
        return self.conv_bits

    def supports(self, layer):
        cls = layer.__class__
        return cls in CONFIG_FOR_LAYER or cls in _EXTRA_OUTPUT_LAYERS or super().supports(layer)

    def get_quantize_config(self, layer):
        cls = layer.__class__
        if cls in CONFIG_FOR_LAYER:
            act_bits = OUTPUT_BITS if layer.name in self.last_layers else self.act_bits
            if layer.name in self.no_activation_layers:
                act_bits = None
            return CONFIG_FOR_LAYER[cls](
                self.layer_bits(layer), act_bits=act_bits, ternary_scale=self.ternary_scale
            )
        if is_relu(layer):
            return ReLUQuantizeConfig(self.act_bits)
        if cls in _EXTRA_OUTPUT_LAYERS:
            return OutputQuantizeConfig(self.act_bits)
        return _own_output_config(super().get_quantize_config(layer))


class _DualPrecisionLayoutTransform(tfmot.quantization.keras.QuantizeLayoutTransform):
    """tfmot's n-bit transforms at ``act_bits`` (input at 8 bits); then finds first/last layers."""

    def __init__(self, scheme):
        self._scheme = scheme

    def apply(self, model, layer_quantize_map):
        act_bits = self._scheme.act_bits
        transforms = [_InputLayerQuantize(INPUT_BITS)] + [
            t(num_bits_weight=8, num_bits_activation=act_bits) for t in _N_BIT_TRANSFORMS]
        transformed, quantize_map = model_transformer.ModelTransformer(
            model, transforms, set(layer_quantize_map.keys()), layer_quantize_map
        ).transform()
        first, last = graph.first_and_last_layers(transformed)
        self._scheme._first_layers = frozenset(first)  # pylint: disable=protected-access
        self._scheme._last_layers = frozenset(last)  # pylint: disable=protected-access
        # tfmot's ReLU and Concatenate transforms give the conv/dense layer feeding
        # them a NoOp (or a per-tensor n-bit) config to keep a fake-quant off its
        # output; that would also leave its weights float. Ask our registry for the
        # layer's config instead, without output fake-quant.
        no_activation = set()
        for layer in transformed.layers:
            entry = quantize_map.get(layer.name)
            config = entry.get("quantize_config") if entry else None
            if config is not None:  # e.g. BN after Conv+BN: ranges that start from the data
                config = entry["quantize_config"] = _own_output_config(config)
            if type(layer) in CONFIG_FOR_LAYER and isinstance(config, _TFMOT_CONFIGS):
                entry["quantize_config"] = None
                no_activation.add(layer.name)
        self._scheme._no_activation_layers = frozenset(no_activation)  # pylint: disable=protected-access
        return transformed, quantize_map


@keras.utils.register_keras_serializable(package="tfq_pareto")
class DualPrecisionScheme(ConfigMixin, tfmot.quantization.keras.QuantizeScheme):
    """The paper's DualPrecision quantization scheme (Sec. 6), a tfmot ``QuantizeScheme``.

    Use it with ``tfmot.quantization.keras.quantize_apply``, or call
    :func:`apply`, which also checks the model first.

    Args:
      conv_bits: weight bits of every conv and dense layer that is not depthwise
        and not first/last, 1..8.
      dw_bits: weight bits of depthwise convs, 1..8; None for models that have none.
      first_last_bits: weight bits of the first conv/dense layer the input reaches
        and of the conv/dense layer producing the output, 1..8, or None to give
        them ``conv_bits``/``dw_bits`` like the rest. Default 8, as in the paper.
      act_bits: activation bits, 2..8 (4 for CIFAR, 8 for ImageNet in the paper).
        The model input and the last layers' outputs (logits) are quantized at 8 bits.
      ternary_scale: scale of 2-bit filters, ``"mean_abs"`` (Eq. 3) or ``"twn"``.
    """

    def __init__(self, conv_bits, dw_bits, first_last_bits=8, act_bits=8, ternary_scale="mean_abs"):
        self.conv_bits = check_bits("conv_bits", conv_bits)
        self.dw_bits = _check_optional_bits("dw_bits", dw_bits)
        self.first_last_bits = _check_optional_bits("first_last_bits", first_last_bits)
        self.act_bits = check_bits("act_bits", act_bits, ACTIVATION_BITS)
        if ternary_scale not in TERNARY_SCALES:
            raise ValueError(
                f"ternary_scale must be one of {TERNARY_SCALES}; received {ternary_scale!r}"
            )
        self.ternary_scale = ternary_scale
        # Filled by the layout transform, which sees the model first.
        self._first_layers = frozenset()
        self._last_layers = frozenset()
        self._no_activation_layers = frozenset()

    def get_layout_transformer(self):
        return _DualPrecisionLayoutTransform(self)

    def get_quantize_registry(self):
        return DualPrecisionQuantizeRegistry(
            self.conv_bits,
            self.dw_bits,
            self.first_last_bits,
            self.act_bits,
            first_last_layers=self._first_layers | self._last_layers,
            ternary_scale=self.ternary_scale,
            last_layers=self._last_layers,
            no_activation_layers=self._no_activation_layers,
        )

    def get_config(self):
        return {
            "conv_bits": self.conv_bits,
            "dw_bits": self.dw_bits,
            "first_last_bits": self.first_last_bits,
            "act_bits": self.act_bits,
            "ternary_scale": self.ternary_scale,
        }


def quantize_scope(*args):
    """tfmot's ``quantize_scope`` plus every custom object of this package.

    Load a saved QAT model inside it::

        with tfq_pareto.quantize_scope():
            model = tf_keras.models.load_model("model.h5")
    """
    objects = dict(CUSTOM_OBJECTS)
    objects["DualPrecisionScheme"] = DualPrecisionScheme
    objects["FanInPrecisionScheme"] = FanInPrecisionScheme
    return tfmot.quantization.keras.quantize_scope(*(args + (objects,)))


def _check_model(model, registry):
    """Raises a clear error for models and layers ``quantize_apply`` cannot handle."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"model must be a tf_keras Model (or a Keras 3 functional model); "
            f"received {type(model).__name__}"
        )
    if not graph.is_graph_model(model):
        raise ValueError(
            f"model {model.name!r} is a subclassed model ({type(model).__name__}); "
            "tfq_pareto.apply needs a Functional or Sequential model: rebuild it with "
            "the functional API (tf_keras.Input -> layers -> tf_keras.Model)"
        )
    nested = [l.name for l in model.layers if isinstance(l, keras.Model)]
    if nested:
        raise ValueError(
            f"model {model.name!r} contains nested models {nested}; tfmot cannot quantize "
            "a model inside a model: rebuild it flat, e.g. "
            "tf_keras.Model(inner.input, head(inner.output)) instead of nesting `inner`"
        )
    unsupported = [
        f"{l.name} ({type(l).__name__})"
        for l in model.layers
        if not isinstance(l, (keras.layers.InputLayer,) + _TRANSFORMED_LAYERS)
        and not registry.supports(l)
    ]
    if unsupported:
        raise ValueError(
            f"model {model.name!r} has layers tfq_pareto cannot quantize: {unsupported}. "
            "Replace them with built-in layers, or annotate them with "
            "tfmot.quantization.keras.quantize_annotate_layer(layer, quantize_config) and "
            "call tfmot.quantization.keras.quantize_apply(model, DualPrecisionScheme(...)) "
            "inside tfq_pareto.quantize_scope()"
        )


def apply(model, conv_bits=1, dw_bits=4, first_last_bits=8, act_bits=8, *, scheme=None):
    """Makes a float tf_keras CNN quantization-aware with per-filter low-bit weights.

    Example::

        qat = tfq_pareto.apply(model, conv_bits=1, dw_bits=4, act_bits=4)
        qat.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
        qat.fit(x, y)

    Args:
      model: a built Functional or Sequential tf_keras model. A Keras 3
        functional model is rebuilt as tf_keras first (same outputs).
      conv_bits: weight bits of standard convs and dense layers, 1..8.
      dw_bits: weight bits of depthwise convs, 1..8; ignored (may be None) when
        the model has no depthwise convs.
      first_last_bits: weight bits of the first and last conv/dense layer, 1..8,
        or None for no exception. Default 8, as in the paper.
      act_bits: activation bits, 2..8 (fake-quant ops support no fewer).
      scheme: a tfmot ``QuantizeScheme`` to use instead of
        ``DualPrecisionScheme(conv_bits, dw_bits, first_last_bits, act_bits)``.

    Returns:
      A new tf_keras QAT model (the input model is left untouched).

    Raises:
      ValueError: bad bit widths, subclassed or nested models, unsupported layers.
    """
    if scheme is None:
        scheme = DualPrecisionScheme(conv_bits, dw_bits, first_last_bits, act_bits)
    elif not isinstance(scheme, tfmot.quantization.keras.QuantizeScheme):
        raise TypeError(
            f"scheme must be a tfmot QuantizeScheme; received {type(scheme).__name__}"
        )
    if keras3.is_keras3_model(model):
        model = keras3.to_tf_keras(model)
    registry = scheme.get_quantize_registry()
    _check_model(model, registry)
    depthwise = [l.name for l in model.layers if isinstance(l, _DEPTHWISE_LAYERS)]
    if depthwise and getattr(scheme, "dw_bits", 0) is None:
        raise ValueError(
            f"model {model.name!r} has depthwise convs ({depthwise[0]!r}, ...) but dw_bits "
            f"is None; give dw_bits, one of {SUPPORTED_BITS}"
        )
    with quantize_scope():
        annotated = tfmot.quantization.keras.quantize_annotate_model(model)
        return tfmot.quantization.keras.quantize_apply(annotated, scheme)


def layer_fan_in(layer):
    """d = C_in * K_w * K_h of a Conv2D/DepthwiseConv2D/Dense layer's filters (depthwise: K_w * K_h)."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.depthwise_kernel.shape[:2]
        return int(kh) * int(kw)
    shape = [int(d) for d in layer.kernel.shape[:-1]]
    d = 1
    for dim in shape:
        d *= dim
    return d


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


class FanInPrecisionQuantizeRegistry(DualPrecisionQuantizeRegistry):
    """Bits from each layer's fan-in d: the first ``(limit, bits)`` with d < limit, else default."""

    def __init__(self, thresholds, default_bits, first_last_bits=8, act_bits=8,
                 first_last_layers=(), ternary_scale="mean_abs", last_layers=(),
                 no_activation_layers=()):
        super().__init__(default_bits, default_bits, first_last_bits, act_bits,
                         first_last_layers=first_last_layers, ternary_scale=ternary_scale,
                         last_layers=last_layers, no_activation_layers=no_activation_layers)
        self.thresholds = _check_thresholds(thresholds)

    def layer_bits(self, layer):
        if self.first_last_bits is not None and layer.name in self.first_last_layers:
            return self.first_last_bits
        d = layer_fan_in(layer)
        for limit, bits in self.thresholds:
            if d < limit:
                return bits
        return self.conv_bits


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

    def get_quantize_registry(self):
        return FanInPrecisionQuantizeRegistry(
            self.thresholds, self.default_bits, self.first_last_bits, self.act_bits,
            first_last_layers=self._first_layers | self._last_layers,
            ternary_scale=self.ternary_scale, last_layers=self._last_layers,
            no_activation_layers=self._no_activation_layers,
        )

    def get_config(self):
        return {
            "thresholds": [list(t) for t in self.thresholds],
            "default_bits": self.default_bits,
            "first_last_bits": self.first_last_bits,
            "act_bits": self.act_bits,
            "ternary_scale": self.ternary_scale,
        }
