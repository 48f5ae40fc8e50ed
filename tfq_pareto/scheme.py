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
import dataclasses
import types

from tensorflow_model_optimization.python.core.quantization.keras.experimental.default_n_bit import (  # noqa: E501
    default_n_bit_quantize_configs as n_bit_configs,
    default_n_bit_quantize_layout_transform as n_bit_layout,
    default_n_bit_quantize_registry as n_bit_registry,
    default_n_bit_transforms as n_bit_transforms,
)
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer
from tensorflow_model_optimization.python.core.quantization.keras import utils as tfmot_utils
from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import (
    model_transformer,
    transforms as tfmot_transforms,
)

from tfq_pareto import graph, keras3, preprocessing, rewrite
from tfq_pareto import plan as plan_lib
from tfq_pareto.checks import ConfigMixin
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

def _application_layers():
    """Custom layer classes of ``tf_keras.applications`` quantized at their output only.

    ConvNeXt's ``LayerScale`` (``x * gamma``, one trainable factor per channel;
    TFLite: one MUL by a constant vector). It lives in a private module of
    tf_keras; a release without it simply adds nothing.
    """
    try:
        from tf_keras.src.applications.convnext import LayerScale  # pylint: disable=import-outside-toplevel
    except ImportError:  # pragma: no cover - depends on the tf_keras release
        return ()
    return (LayerScale,)


#: Layers quantized at their output only, beyond tfmot's n-bit registry. Weights
#: they hold (BN's and LayerNormalization's gamma and beta, LayerScale's gamma)
#: stay float in QAT; the converter folds or quantizes them.
_EXTRA_OUTPUT_LAYERS = (
    keras.layers.LayerNormalization,
    keras.layers.BatchNormalization,
    keras.layers.Multiply,
    keras.layers.Subtract,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
    rewrite.ScalarAffine,
) + _application_layers()

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

class _Captured(Exception):
    """Raised by :func:`_tfmot_n_bit_transforms`'s stand-in for tfmot's ModelTransformer."""


def _tfmot_n_bit_transforms(act_bits):
    """tfmot's n-bit layout transforms at ``act_bits``, in tfmot's order, read from tfmot.

    ``DefaultNBitQuantizeLayoutTransform.apply`` builds its list inline and hands
    it to ``ModelTransformer``; a stand-in for that class records the list and
    stops, so the list follows tfmot's release instead of a copy of it.
    """
    captured = []

    class _Recorder:  # pylint: disable=too-few-public-methods
        def __init__(self, model, transforms, *args, **kwargs):
            del model, args, kwargs
            captured.extend(transforms)
            raise _Captured

    saved = n_bit_layout.model_transformer
    n_bit_layout.model_transformer = types.SimpleNamespace(ModelTransformer=_Recorder)
    try:
        n_bit_layout.DefaultNBitQuantizeLayoutTransform(8, act_bits).apply(None, {})
    except _Captured:
        pass
    finally:
        n_bit_layout.model_transformer = saved
    if not captured:
        raise RuntimeError("could not read tfmot's n-bit layout transforms (tfmot changed?)")
    return captured


def _layout_transforms(act_bits):
    """Our input quantizer, then tfmot's n-bit transforms (without its input one)."""
    return [_InputLayerQuantize(INPUT_BITS)] + [
        t for t in _tfmot_n_bit_transforms(act_bits)
        if not isinstance(t, n_bit_transforms.InputLayerQuantize)]


def _check_optional_bits(name, value):
    return None if value is None else check_bits(name, value)


#: Activations tfmot's n-bit registry has a config for (it raises for any other).
_TFMOT_ACTIVATIONS = ("relu", "relu6", "swish", "linear", "softmax", "sigmoid", "tanh")


def _other_activation(layer):
    """An ``Activation`` layer whose function tfmot has no config for (GELU, ELU, ...).

    Every Keras activation is elementwise, so it is quantized at its output like
    BN or Add; whether the exported op runs on TFLM is the exporter's check
    (ConvNeXt's GELU: TFLM has no kernel, and export says so).
    """
    return (type(layer) is keras.layers.Activation  # pylint: disable=unidiomatic-typecheck
            and getattr(layer.activation, "__name__", None) not in _TFMOT_ACTIVATIONS)


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


def config_for(layer_plan, layer_type, ternary_scale="mean_abs"):
    """The QuantizeConfig of a weighted layer from its :class:`~tfq_pareto.plan.LayerPlan`."""
    return CONFIG_FOR_LAYER[layer_type](layer_plan.weight_bits, act_bits=layer_plan.act_bits,
                                        ternary_scale=ternary_scale)


class DualPrecisionQuantizeRegistry(n_bit_registry.DefaultNBitQuantizeRegistry):
    """Per-layer configs: weighted layers from the plan, tfmot's n-bit rules for the rest.

    Args:
      plan: the :class:`~tfq_pareto.plan.QuantizationPlan` holding every
        Conv2D/DepthwiseConv2D/Dense layer's bits; None for a registry that
        serves output-only layers (asking it for a weighted layer is an error).
      act_bits: activation bits of output-only layers (ReLU, BN, Add, pooling), 2..8.
      ternary_scale: 2-bit scale rule, see :func:`tfq_pareto.quantizers.quantize_weights`.
    """

    def __init__(self, plan=None, act_bits=8, ternary_scale="mean_abs"):
        super().__init__(num_bits_weight=8, num_bits_activation=act_bits)
        # tfmot's base class shares its _QuantizeInfo objects between instances
        # (a class attribute mutated in __init__): keep copies of our own.
        self._layer_quantize_map = {
            cls: copy.copy(info) for cls, info in self._layer_quantize_map.items()
        }
        self.plan = plan
        self.act_bits = check_bits("act_bits", act_bits, ACTIVATION_BITS)
        self.ternary_scale = ternary_scale

    def supports(self, layer):
        cls = layer.__class__
        return cls in CONFIG_FOR_LAYER or cls in _EXTRA_OUTPUT_LAYERS or super().supports(layer)

    def get_quantize_config(self, layer):
        cls = layer.__class__
        if cls in CONFIG_FOR_LAYER:
            entry = self.plan.get(layer.name) if self.plan is not None else None
            if entry is None:
                raise ValueError(
                    f"layer {layer.name!r} ({cls.__name__}) is not in the quantization plan; "
                    "quantize models with tfq_pareto.apply, or with tfmot's quantize_apply "
                    "and a DualPrecisionScheme (whose layout transform plans every layer)")
            return config_for(entry, cls, self.ternary_scale)
        if is_relu(layer):
            return ReLUQuantizeConfig(self.act_bits)
        if cls in _EXTRA_OUTPUT_LAYERS or _other_activation(layer):
            return OutputQuantizeConfig(self.act_bits)
        return _own_output_config(super().get_quantize_config(layer))


def _output_bits(config, layer):
    """Bits of the fake-quant ``config`` puts on ``layer``'s output (or activation), or None."""
    if config is None:
        return None
    quantizers = list(config.get_output_quantizers(layer))
    quantizers += [q for _, q in config.get_activations_and_quantizers(layer)]
    bits = [q.num_bits for q in quantizers if getattr(q, "num_bits", None) is not None]
    return int(max(bits)) if bits else None


@dataclasses.dataclass(frozen=True)
class Layout:
    """The model after the layout transforms, as :func:`layout` made it.

    Attributes:
      source_layers: names of the layers of the model it was made from.
      model: the transformed model.
      quantize_map: tfmot's layer quantize map after the transforms (our
        output configs in place of tfmot's; weighted layers' configs None).
      no_activation_layers: weighted layers whose output a following ReLU or
        Concatenate quantizes (tfmot's transforms say so): no output fake-quant.
    """

    source_layers: tuple
    model: object
    quantize_map: dict
    no_activation_layers: frozenset


def _annotation_map(model):
    """The quantize map tfmot builds for a model annotated as :func:`_annotate` does.

    Every layer but the input, the leading preprocessing layers and a QuantizeLayer
    already in the model (the input quantizer after the preprocessing).
    """
    float_layers = {l.name for l in preprocessing.leading_preprocessing(model)}
    quantize_map = {l.name: {"quantize_config": None} for l in model.layers
                    if not isinstance(l, (keras.layers.InputLayer, quantize_layer.QuantizeLayer))
                    and l.name not in float_layers}
    for input_layer in model._input_layers:  # pylint: disable=protected-access
        if any(node.outbound_layer.name in quantize_map
               for node in input_layer._outbound_nodes):  # pylint: disable=protected-access
            quantize_map[input_layer.name] = {}
    return quantize_map


def layout(model, act_bits, layer_quantize_map=None):
    """Runs the layout transforms (ours for the input, tfmot's n-bit ones) on ``model``.

    tfmot's ReLU and Concatenate transforms give the conv/dense layer feeding
    them a NoOp (or a per-tensor n-bit) config to keep a fake-quant off its
    output; that would also leave its weights float. Such layers are recorded in
    ``no_activation_layers`` and get their config from the plan, without output
    fake-quant. tfmot's output-only configs become :class:`OutputQuantizeConfig`
    (ranges that start from the data).

    Returns:
      :class:`Layout`.
    """
    if layer_quantize_map is None:
        layer_quantize_map = _annotation_map(model)
    transformed, quantize_map = model_transformer.ModelTransformer(
        model, _layout_transforms(act_bits), set(layer_quantize_map.keys()), layer_quantize_map
    ).transform()
    no_activation = set()
    for layer in transformed.layers:
        entry = quantize_map.get(layer.name)
        config = entry.get("quantize_config") if entry else None
        if config is not None:  # e.g. BN after Conv+BN: ranges that start from the data
            config = entry["quantize_config"] = _own_output_config(config)
        if type(layer) in CONFIG_FOR_LAYER and isinstance(config, _TFMOT_CONFIGS):
            entry["quantize_config"] = None
            no_activation.add(layer.name)
    return Layout(tuple(l.name for l in model.layers), transformed, quantize_map,
                  frozenset(no_activation))


def make_plan(scheme, model_layout):
    """The :class:`~tfq_pareto.plan.QuantizationPlan` of ``scheme`` on a :class:`Layout`.

    Weighted layers: ``scheme.weight_bits(layer, first_or_last)``; output bits
    8 for the last layers (the logits), none for ``no_activation_layers``, else
    ``act_bits``. Output-only layers: the bits of the config they get.
    """
    transformed = model_layout.model
    first, last = graph.first_and_last_layers(transformed)
    registry = DualPrecisionQuantizeRegistry(None, scheme.act_bits, scheme.ternary_scale)
    layers = []
    for layer in transformed.layers:
        entry = model_layout.quantize_map.get(layer.name)
        kind = plan_lib.kind_of(layer) if type(layer) in CONFIG_FOR_LAYER else None
        if kind is not None:
            if entry is None:
                continue  # not annotated: tfmot leaves it float
            edge = layer.name in first or layer.name in last
            act = None if layer.name in model_layout.no_activation_layers else (
                OUTPUT_BITS if layer.name in last else scheme.act_bits)
            filters, fan_in = plan_lib.filters_and_fan_in(layer)
            layers.append(plan_lib.LayerPlan(
                layer.name, kind, scheme.weight_bits(layer, edge), act, layer.name in first,
                layer.name in last, filters, fan_in))
        elif isinstance(layer, quantize_layer.QuantizeLayer):
            layers.append(plan_lib.LayerPlan(layer.name, "input",
                                             act_bits=int(layer.quantizer.num_bits)))
        elif entry is not None and not isinstance(layer, keras.layers.InputLayer):
            config = entry.get("quantize_config")
            if config is None and registry.supports(layer):
                config = registry.get_quantize_config(layer)
            bits = _output_bits(config, layer)
            if bits is not None:
                layers.append(plan_lib.LayerPlan(layer.name, "activation", act_bits=bits))
    return plan_lib.QuantizationPlan(tuple(layers))


class _DualPrecisionLayoutTransform(tfmot.quantization.keras.QuantizeLayoutTransform):
    """The layout transforms, then every weighted layer's config from the plan.

    A scheme bound to a plan (:meth:`DualPrecisionScheme.bind`, as ``apply``
    does) hands over the plan and the layout it was made on; an unbound scheme
    (tfmot's ``quantize_apply`` called directly) plans here. Either way the
    configs reach tfmot's quantize step through the quantize map it returns.
    """

    def __init__(self, scheme):
        self._scheme = scheme

    def apply(self, model, layer_quantize_map):
        scheme = self._scheme
        prepared = scheme.bound_layout
        if prepared is None or prepared.source_layers != tuple(l.name for l in model.layers):
            prepared = layout(model, scheme.act_bits, layer_quantize_map)
        plan = scheme.bound_plan or make_plan(scheme, prepared)
        quantize_map = {name: dict(entry) for name, entry in prepared.quantize_map.items()}
        for layer in prepared.model.layers:
            entry = plan.get(layer.name)
            if entry is not None and entry.weighted and layer.name in quantize_map:
                quantize_map[layer.name]["quantize_config"] = config_for(
                    entry, type(layer), scheme.ternary_scale)
        return prepared.model, quantize_map


@keras.utils.register_keras_serializable(package="tfq_pareto")
class DualPrecisionScheme(ConfigMixin, tfmot.quantization.keras.QuantizeScheme):
    """The paper's DualPrecision quantization scheme (Sec. 6), a tfmot ``QuantizeScheme``.

    Use it with ``tfmot.quantization.keras.quantize_apply``, or call
    :func:`apply`, which also checks the model first and stores the plan with it.

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
        self.bound_plan = None
        self.bound_layout = None

    def weight_bits(self, layer, first_or_last):
        """Weight bits of a Conv2D/DepthwiseConv2D/Dense layer: the DualPrecision rule."""
        if first_or_last and self.first_last_bits is not None:
            return self.first_last_bits
        if graph.is_depthwise(layer):  # also a Conv2D with one input channel per group
            if self.dw_bits is None:
                raise ValueError(
                    f"layer {layer.name!r} is a depthwise conv but dw_bits is None; "
                    f"give dw_bits, one of {SUPPORTED_BITS}"
                )
            return self.dw_bits
        return self.conv_bits

    def plan(self, model):
        """``(plan, layout)`` of this scheme on a float functional ``model`` (layout run once)."""
        model_layout = layout(model, self.act_bits)
        return make_plan(self, model_layout), model_layout

    def bind(self, plan, model_layout=None):
        """A copy of this scheme that quantizes with ``plan`` (and reuses ``model_layout``)."""
        bound = copy.copy(self)
        bound.bound_plan = plan
        bound.bound_layout = model_layout
        return bound

    def get_layout_transformer(self):
        return _DualPrecisionLayoutTransform(self)

    def get_quantize_registry(self):
        return DualPrecisionQuantizeRegistry(self.bound_plan, self.act_bits, self.ternary_scale)

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
    from tfq_pareto.fan_in import FanInPrecisionScheme  # pylint: disable=import-outside-toplevel

    objects = dict(CUSTOM_OBJECTS)
    objects["ScalarAffine"] = rewrite.ScalarAffine
    objects.update({cls.__name__: cls for cls in _application_layers()})
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
    float_layers = {l.name for l in preprocessing.leading_preprocessing(model)}
    unsupported = [
        f"{l.name} ({type(l).__name__})"
        for l in model.layers
        if not isinstance(l, (keras.layers.InputLayer,) + _TRANSFORMED_LAYERS)
        and l.name not in float_layers and not registry.supports(l)
    ]
    if unsupported:
        raise ValueError(
            f"model {model.name!r} has layers tfq_pareto cannot quantize: {unsupported}. "
            "Replace them with built-in layers, or annotate them with "
            "tfmot.quantization.keras.quantize_annotate_layer(layer, quantize_config) and "
            "call tfmot.quantization.keras.quantize_apply(model, DualPrecisionScheme(...)) "
            "inside tfq_pareto.quantize_scope()"
        )


def _as_functional(model):
    """A Sequential model as a functional one (same layers), so its input layer is listed."""
    if isinstance(model, keras.Sequential) and model.built:
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def _with_input_quantizer_after_preprocessing(model):
    """``model``, or with leading preprocessing layers, a copy whose input quantizer follows them.

    tfmot would quantize the raw input and then run the preprocessing on the
    quantized values; here a QuantizeLayer(:class:`InputQuantizer`) reads the
    last preprocessing layer's output instead, so the quantized network sees
    the normalised image (see :mod:`tfq_pareto.preprocessing`).
    """
    functional = _as_functional(model)
    chain = preprocessing.leading_preprocessing(functional)
    if not chain:
        return model
    quantizer = quantize_layer.QuantizeLayer(InputQuantizer(INPUT_BITS),
                                             name=f"{chain[-1].name}_input_quant")
    with quantize_scope():
        return preprocessing.insert_after(
            functional, chain[-1], quantizer,
            custom_objects=_InputLayerQuantize(INPUT_BITS).custom_objects())


def _annotate(model):
    """``quantize_annotate_model`` for every layer but the leading preprocessing and input quantizer."""
    float_layers = {l.name for l in preprocessing.leading_preprocessing(model)}
    if not float_layers:
        return tfmot.quantization.keras.quantize_annotate_model(model)

    def annotate(layer):  # as tfmot's: the same layer, wrapped or not
        if layer.name in float_layers or isinstance(layer, quantize_layer.QuantizeLayer):
            return layer
        return tfmot.quantization.keras.quantize_annotate_layer(layer)

    return keras.models.clone_model(model, clone_function=annotate)


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
      A new tf_keras QAT model (the input model is left untouched), carrying its
      :class:`~tfq_pareto.plan.QuantizationPlan` (:func:`tfq_pareto.plan.plan_of`).

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
    model = rewrite.for_quantization(model)
    # tfmot rebuilds the model from its config several times: the model's own
    # custom layer classes (ConvNeXt's LayerScale, a user's) must resolve there.
    with keras.utils.custom_object_scope(rewrite.custom_layer_classes(model)):
        return _apply(model, scheme)


def _apply(model, scheme):
    """:func:`apply` on a tf_keras model that :func:`rewrite.for_quantization` has rewritten."""
    registry = scheme.get_quantize_registry()
    _check_model(model, registry)
    graph.reserve_layer_names(model)  # tfmot's new layers must not take a name in use
    model = _with_input_quantizer_after_preprocessing(model)
    depthwise = [l.name for l in model.layers
                 if isinstance(l, _DEPTHWISE_LAYERS) or graph.is_depthwise(l)]
    if depthwise and getattr(scheme, "dw_bits", 0) is None:
        raise ValueError(
            f"model {model.name!r} has depthwise convs ({depthwise[0]!r}, ...) but dw_bits "
            f"is None; give dw_bits, one of {SUPPORTED_BITS}"
        )
    planned = isinstance(scheme, DualPrecisionScheme)
    if planned:  # the plan, made once here, then handed to tfmot with the scheme
        plan, model_layout = scheme.plan(model)
        scheme = scheme.bind(plan, model_layout)
    with quantize_scope():
        annotated = _annotate(model)
        qat = tfmot.quantization.keras.quantize_apply(annotated, scheme)
    return plan_lib.attach(qat, plan if planned else plan_lib.derive_plan(qat))
