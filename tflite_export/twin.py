"""The float twin of a QAT model: same graph, each kernel replaced by its Q(W).

Converting a tfmot QAT model directly is fragile (per-channel fake-quant ops the
converter cannot lower, non-zero weight zero points). The twin sidesteps that: it
is the model the QAT wrappers wrap, with every quantized kernel overwritten by
the value its quantizer produces at inference, Q(W), BN left unfolded. The TFLite
converter then folds BN (one factor per output channel, which keeps the number of
distinct values per filter) and quantizes per channel to int8, so each int8 filter
holds the layer's b-bit codes.
"""

import copy
import dataclasses

import numpy as np

import tfq_pareto
from tfq_pareto import graph, rewrite
from tfq_pareto.backend import keras, tf
from tflite_export.errors import ExportError


@dataclasses.dataclass(frozen=True)
class QuantizedKernel:
    """One quantized kernel of the twin.

    Attributes:
      layer: the layer's name in the twin (the name of the original float layer).
      type: ``"Conv2D"``, ``"DepthwiseConv2D"`` or ``"Dense"``.
      bits: weight bits of the QAT quantizer.
      filters: number of output filters (c_out; c * depth_multiplier for depthwise).
      fan_in: weights per filter (kh * kw * c_in; kh * kw for depthwise).
      values: Q(W) as written into the twin, the kernel's own shape.
    """

    layer: str
    type: str
    bits: int
    filters: int
    fan_in: int
    values: np.ndarray

    @property
    def depthwise(self):
        return self.type == "DepthwiseConv2D"

    @property
    def size_bits(self):
        """Eq. (6) term: filters x fan-in x bits."""
        return self.filters * self.fan_in * self.bits

    def filter_matrix(self):
        """Q(W) as ``(filters, fan_in)``: conv/dense filters on the last axis, depthwise on the last two."""
        if self.depthwise:
            kh, kw, c, m = self.values.shape
            return self.values.reshape(kh * kw, c * m).T
        return self.values.reshape(-1, self.values.shape[-1]).T


class PointwiseDense(keras.layers.Dense):
    """A Dense layer on a flat input (or on feature maps) computed as a 1x1 convolution.

    Same weights as ``Dense``. It converts to RESHAPE -> CONV_2D -> RESHAPE rather
    than FULLY_CONNECTED: LiteRT's FULLY_CONNECTED rounds the requantization once
    while TFLite Micro's rounds twice, so their outputs differ by one step on some
    inputs; their CONV_2D kernels agree bit for bit, which lets export verify the
    int8 file on both interpreters. The reshapes carry no weights.

    On a ``(batch, h, w, c)`` input (ConvNeXt's pointwise Dense layers) it is one
    CONV_2D with no reshapes: a Dense on feature maps otherwise converts to
    shape arithmetic (REDUCE_PROD, for the open batch size) that TFLM cannot run.
    """

    def call(self, inputs):
        fan_in = int(inputs.shape[-1])
        kernel = tf.reshape(self.kernel, [1, 1, fan_in, self.units])
        if inputs.shape.rank == 4:
            outputs = tf.nn.conv2d(inputs, kernel, 1, "VALID")
            if self.use_bias:
                outputs = tf.nn.bias_add(outputs, self.bias)
            return self.activation(outputs) if self.activation is not None else outputs
        outputs = tf.nn.conv2d(tf.reshape(inputs, [-1, 1, 1, fan_in]), kernel, 1, "VALID")
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        outputs = tf.reshape(outputs, [-1, self.units])
        return self.activation(outputs) if self.activation is not None else outputs


class ActivationFakeQuant(keras.layers.Layer):
    """Fake-quantizes a tensor to a fixed range, as QAT did at this point.

    The TFLite converter reads the range of a FakeQuant op as the tensor's
    quantization parameters, so the int8 model uses the activation ranges learned
    in QAT instead of calibrated ones. Activations of fewer than 8 bits are
    exported at 8 bits over the same range (TFLite has no int4 activations).

    Args:
      minimum, maximum: the range (tfmot's moving-average min/max variables).
      num_bits: bits of the exported activation (8).
    """

    def __init__(self, minimum, maximum, num_bits=8, **kwargs):
        super().__init__(**kwargs)
        self.minimum = float(minimum)
        self.maximum = float(maximum)
        self.num_bits = int(num_bits)

    def call(self, inputs):
        return tf.quantization.fake_quant_with_min_max_args(
            inputs, min=self.minimum, max=self.maximum, num_bits=self.num_bits)

    def get_config(self):
        config = super().get_config()
        config.update({"minimum": self.minimum, "maximum": self.maximum,
                       "num_bits": self.num_bits})
        return config


#: tfmot variable names holding a wrapper's (or the QuantizeLayer's) activation range.
_RANGE_VARIABLES = (("post_activation_min", "post_activation_max"),
                    ("output_min", "output_max"),
                    ("quantize_layer_min", "quantize_layer_max"))


#: Layers whose TFLite ops (AVERAGE_POOL_2D, MAX_POOL_2D, RESHAPE) must keep the
#: input's quantization: a QAT output range of their own would break conversion.
_SAME_SCALE_LAYERS = (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D,
                      keras.layers.Reshape, keras.layers.Flatten)


def activation_ranges(model):
    """``{layer name: (min, max)}`` of every fake-quantized output of a QAT model.

    Reads tfmot's moving-average range variables of the QuantizeLayer (the input)
    and of each wrapper that quantizes its activation or output. Empty ranges
    (never trained) are left out, so the converter calibrates those tensors.
    """
    ranges = {}
    for layer in model.layers:
        if isinstance(graph.unwrap(layer), _SAME_SCALE_LAYERS):
            continue  # TFLite requires their output scale to equal the input's
        wanted = {name for pair in _RANGE_VARIABLES for name in pair}
        values = {_short_name(w): float(np.asarray(w)) for w in layer.weights
                  if _short_name(w) in wanted and np.asarray(w).size == 1}
        for low, high in _RANGE_VARIABLES:
            # A range never updated by training (min >= max, e.g. the input
            # QuantizeLayer's [0, 0] before the first step) is left to calibration.
            if low in values and high in values and values[high] > values[low]:
                ranges[layer.name] = (values[low], values[high])
                break
    return ranges


def max_levels(bits):
    """Largest number of distinct values a b-bit filter may hold: 2, 3, then 2^b - 1."""
    return 2 if bits == 1 else 2 ** bits - 1


def _supported_kernel(layer):
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "DepthwiseConv2D"
    if type(layer) is keras.layers.Conv2D:  # pylint: disable=unidiomatic-typecheck
        return "Conv2D"
    if type(layer) is keras.layers.Dense:  # pylint: disable=unidiomatic-typecheck
        return "Dense"
    return None


def _check_qat(model):
    if not isinstance(model, keras.Model) or not graph.is_graph_model(model):
        raise ExportError(
            f"export needs a Functional or Sequential tf_keras QAT model made by "
            f"tfq_pareto.apply; received {type(model).__name__}"
        )
    wrappers = [l for l in model.layers if hasattr(l, "quantize_config")]
    if not wrappers:
        raise ExportError(
            f"model {model.name!r} is a float model (no QuantizeWrapper layers): make it "
            "quantization-aware with tfq_pareto.apply(model, conv_bits=..., dw_bits=...) "
            "and train it before exporting"
        )
    for layer in model.layers:
        inner = graph.unwrap(layer)
        if graph.is_weighted(inner) and not hasattr(layer, "quantize_config"):
            raise ExportError(
                f"layer {layer.name!r} ({type(inner).__name__}) of model {model.name!r} is "
                "not quantization-aware: its weights are float; quantize the whole model "
                "with tfq_pareto.apply"
            )
        if hasattr(layer, "quantize_config") and graph.is_weighted(inner):
            if _supported_kernel(inner) is None:
                raise ExportError(
                    f"layer {inner.name!r} is a {type(inner).__name__}; export supports "
                    "Conv2D, DepthwiseConv2D and Dense kernels (SeparableConv2D is split "
                    "into those by tfq_pareto.apply)"
                )


def _rename_inbound(nodes, rename):
    """Inbound node lists with layer names replaced through ``rename``."""
    nodes = copy.deepcopy(nodes)
    for node in nodes:
        for entry in node:
            while entry[0] in rename:
                entry[0] = rename[entry[0]]
    return nodes


def _fake_quant_entry(name, source, value_range):
    return {"class_name": "ActivationFakeQuant", "name": name,
            "config": {"name": name, "trainable": False, "dtype": "float32",
                       "minimum": value_range[0], "maximum": value_range[1], "num_bits": 8},
            "inbound_nodes": [[[source, 0, 0, {}]]]}


def _twin_config(model, dense_as_conv, ranges):
    """The functional config of ``model`` without its tfmot wrappers and QuantizeLayers.

    With ``ranges`` (:func:`activation_ranges`), an :class:`ActivationFakeQuant`
    follows each layer QAT fake-quantized, and replaces the QuantizeLayer.
    """
    flat_dense = {
        graph.unwrap(l).name for l in model.layers
        if type(graph.unwrap(l)) is keras.layers.Dense  # pylint: disable=unidiomatic-typecheck
        and len(l.input_shape) in (2, 4)
    } if dense_as_conv else set()
    config = copy.deepcopy(model.get_config())
    if "layers" not in config or "input_layers" not in config:
        # A Sequential model: rebuild its config as functional through a Model.
        functional = keras.Model(model.inputs, model.outputs, name=model.name)
        config = copy.deepcopy(functional.get_config())
    # Leading preprocessing layers stay out of the file (the manifest folds them
    # into the input's quantization): their readers read the input instead.
    preprocessing = {l.name for l in tfq_pareto.preprocessing.leading_preprocessing(model)}
    rename = {}
    layers = []
    for entry in config["layers"]:
        wrapper_name = entry["config"]["name"]
        if wrapper_name in preprocessing:
            rename[wrapper_name] = entry["inbound_nodes"][0][0][0]
            continue
        if entry["class_name"] == "QuantizeLayer":
            inbound = entry["inbound_nodes"]
            if wrapper_name in ranges:
                layers.append(_fake_quant_entry(wrapper_name, inbound[0][0][0], ranges[wrapper_name]))
            else:
                rename[wrapper_name] = inbound[0][0][0]
            continue
        fake_quant = None
        if entry["class_name"] in ("QuantizeWrapperV2", "QuantizeWrapper"):
            inner = entry["config"]["layer"]
            rename[wrapper_name] = inner["config"]["name"]
            if wrapper_name in ranges:
                fake_quant = _fake_quant_entry(inner["config"]["name"] + "_act_quant",
                                               inner["config"]["name"], ranges[wrapper_name])
                rename[wrapper_name] = fake_quant["name"]
            entry = {
                "class_name": inner["class_name"],
                "config": inner["config"],
                "name": inner["config"]["name"],
                "inbound_nodes": entry["inbound_nodes"],
            }
            if "module" in inner:
                entry["module"] = inner["module"]
            if "registered_name" in inner:
                entry["registered_name"] = inner["registered_name"]
            if inner["config"]["name"] in flat_dense:
                entry["class_name"] = "PointwiseDense"
                entry.pop("module", None)
                entry.pop("registered_name", None)
        layers.append(entry)
        if fake_quant is not None:
            layers.append(fake_quant)
    for entry in layers:
        entry["inbound_nodes"] = _rename_inbound(entry["inbound_nodes"], rename)
    config["layers"] = layers
    for key in ("input_layers", "output_layers"):
        config[key] = _rename_inbound([config[key]], rename)[0]
    return config


def _is_tfmot_variable(weight):
    """tfmot's bookkeeping (step counter, range min/max), not a weight of the wrapped layer."""
    short = _short_name(weight)
    return short == "optimizer_step" or short.endswith("_min") or short.endswith("_max")


def _short_name(weight):
    """``"kernel"`` for ``"stem/kernel:0"``."""
    return weight.name.split("/")[-1].split(":")[0]


def quantized_value(weight, quantizer, quantizer_vars):
    """Q(W) of one weight variable, as the quantizer computes it at inference."""
    return np.asarray(quantizer(tf.convert_to_tensor(weight), training=False, weights=quantizer_vars))


def float_twin(model, dense_as_conv=True, activation_ranges_from="qat"):
    """The float model with Q(W) written into every quantized kernel.

    Args:
      model: a QAT model made by :func:`tfq_pareto.apply` (or loaded in
        :func:`tfq_pareto.quantize_scope`).
      dense_as_conv: compute Dense layers on flat inputs and on feature maps as 1x1 convolutions
        (:class:`PointwiseDense`), so that LiteRT and TFLM agree bit for bit.
      activation_ranges_from: ``"qat"`` puts the ranges QAT learned into the twin
        as :class:`ActivationFakeQuant` layers; ``"calibration"`` leaves all ranges
        to the converter's calibration.

    Returns:
      ``(twin, kernels)``: a float tf_keras model with the same graph and outputs
      (BN unfolded, no fake-quant), and a list of :class:`QuantizedKernel` in layer
      order.

    Raises:
      ExportError: for a float model, a partly float model, or kernels export
        cannot handle (each named).
    """
    _check_qat(model)
    if activation_ranges_from not in ("qat", "calibration"):
        raise ValueError(f"activation_ranges_from must be 'qat' or 'calibration'; received "
                         f"{activation_ranges_from!r}")
    ranges = activation_ranges(model) if activation_ranges_from == "qat" else {}
    config = _twin_config(model, dense_as_conv, ranges)
    objects = dict(rewrite.custom_layer_classes(model), PointwiseDense=PointwiseDense,
                   ActivationFakeQuant=ActivationFakeQuant)
    with tfq_pareto.quantize_scope(), keras.utils.custom_object_scope(objects):
        twin = keras.Model.from_config(config)
    plan = tfq_pareto.plan_of(model)
    kernels = []
    for wrapper in model.layers:
        if not hasattr(wrapper, "quantize_config"):
            continue
        inner = wrapper.layer
        target = twin.get_layer(inner.name)
        quantized = {}
        for weight, quantizer, quantizer_vars in getattr(wrapper, "_weight_vars", []):
            quantized[id(weight)] = (quantizer, quantized_value(weight, quantizer, quantizer_vars))
        # tfmot takes the quantized kernels out of the inner layer's weights: find
        # every weight of the twin's layer among the wrapper's by its short name.
        own = {_short_name(w): w for w in wrapper.weights if not _is_tfmot_variable(w)}
        values = []
        for slot in target.weights:
            weight = own.get(_short_name(slot))
            if weight is None:
                raise ExportError(f"layer {inner.name!r}: no weight {slot.name!r} in its QAT wrapper")
            if id(weight) in quantized:
                _, q = quantized[id(weight)]
                if not np.all(np.isfinite(q)):
                    raise ExportError(
                        f"layer {inner.name!r}: its quantized kernel holds NaN or inf; the "
                        "model diverged in training and cannot be exported"
                    )
                values.append(q)
                kind = _supported_kernel(inner)
                entry = plan.get(inner.name)
                if kind is not None and entry is not None and entry.weighted:
                    kernels.append(QuantizedKernel(inner.name, kind, entry.weight_bits,
                                                   entry.filters, entry.fan_in, q))
            else:
                values.append(np.asarray(weight))
        target.set_weights(values)
    return twin, kernels


def check_grid(kernels):
    """Raises :class:`ExportError` naming the first kernel whose filters leave the b-bit grid.

    A b-bit filter may hold at most 2 (1 bit), 3 (2 bits) or 2^b - 1 (b > 2)
    distinct values.
    """
    for kernel in kernels:
        limit = max_levels(kernel.bits)
        for index, row in enumerate(kernel.filter_matrix()):
            distinct = np.unique(row)
            if distinct.size > limit:
                raise ExportError(
                    f"layer {kernel.layer!r} ({kernel.type}, {kernel.bits}-bit): filter "
                    f"{index} holds {distinct.size} distinct weight values, more than the "
                    f"{limit} a {kernel.bits}-bit filter may hold; its weights are not on a "
                    f"{kernel.bits}-bit grid (was the quantizer replaced or the model "
                    "edited after quantization?)"
                )
