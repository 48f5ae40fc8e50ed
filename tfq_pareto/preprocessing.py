"""Preprocessing layers at a model's input: kept in float, ahead of the input quantizer.

Many ``tf_keras.applications`` models start with ``Rescaling`` (pixels to
[0, 1] or [-1, 1]) and ``Normalization`` (per-channel mean and variance):
MobileNetV3, EfficientNet(V2), ResNetRS, RegNet. They are per-channel affine
maps ``y = a_c * x + b_c`` of the raw pixels, not something to quantize.
:func:`tfq_pareto.apply` leaves the chain of them that directly follows the
input in float and puts the input quantizer after it, so the quantized network
sees the normalised image as it does without them. The exporter
(``tflite_export``) leaves them out of the int8 file and folds them into the
input's quantization parameters: the manifest says which int8 value the
firmware feeds for a raw pixel (:func:`folded_input_quantization`).

Only the leading chain is handled: a preprocessing layer anywhere else (after a
conv) is refused by ``apply`` like any other unsupported layer.
"""

import collections
import copy

import numpy as np

from tfq_pareto import graph
from tfq_pareto.backend import keras

#: Layer classes that may precede the input quantizer in float.
PREPROCESSING_LAYERS = (keras.layers.Rescaling, keras.layers.Normalization)


def leading_preprocessing(model):
    """The chain of preprocessing layers that directly follows the model's one input.

    A layer joins the chain when it is a ``Rescaling`` or ``Normalization``
    (over the last axis), is called once in the model, reads only the previous
    member (the input first) and the previous member has no other reader. Only
    the model's own graph counts (a layer shared with another model may have
    other calls there).

    Returns:
      The layers in order (an empty list for models without them, models with
      several inputs, and Sequential models without an input layer).
    """
    if not graph.is_graph_model(model):
        return []
    parents, ordered = graph.layer_edges(model)
    calls = collections.Counter(
        node.layer.name for nodes in model._nodes_by_depth.values()  # pylint: disable=protected-access
        for node in nodes)
    children = collections.defaultdict(list)
    for layer in ordered:
        for parent in parents[layer.name]:
            children[parent].append(layer)
    inputs = [l for l in ordered if isinstance(l, keras.layers.InputLayer)]
    if len(inputs) != 1:
        return []
    chain, current = [], inputs[0]
    while len(children[current.name]) == 1:
        layer = children[current.name][0]
        if (not isinstance(layer, PREPROCESSING_LAYERS) or calls[layer.name] != 1
                or parents[layer.name] != [current.name] or not _last_axis(layer)):
            break
        chain.append(layer)
        current = layer
    return chain


def _last_axis(layer):
    """True when a Normalization normalises the channel (last) axis; Rescaling always."""
    if not isinstance(layer, keras.layers.Normalization):
        return True
    axis = layer.axis
    rank = len(layer.input_shape)
    return tuple(a % rank for a in axis) == (rank - 1,)


def affine(layers, channels):
    """``(a, b)``, arrays of ``channels``: the chain's map is ``x -> a * x + b`` per channel.

    ``Rescaling``: ``x * scale + offset`` (scalars or per-channel lists).
    ``Normalization``: ``(x - mean) / max(sqrt(variance), epsilon)``, as tf_keras
    computes it.
    """
    a = np.ones(channels, np.float64)
    b = np.zeros(channels, np.float64)
    for layer in layers:
        if isinstance(layer, keras.layers.Rescaling):
            scale = np.broadcast_to(np.asarray(layer.scale, np.float64), (channels,))
            offset = np.broadcast_to(np.asarray(layer.offset, np.float64), (channels,))
        else:
            mean = np.asarray(layer.mean, np.float64).reshape(-1)
            std = np.maximum(np.sqrt(np.asarray(layer.variance, np.float64).reshape(-1)),
                             keras.backend.epsilon())
            scale = np.broadcast_to(1.0 / std, (channels,))
            offset = np.broadcast_to(-mean / std, (channels,))
        a, b = a * scale, b * scale + offset
    return a, b


def preprocess(model, x):
    """``x`` (raw model inputs) through the model's leading preprocessing layers, as NumPy."""
    x = np.asarray(x, np.float32)
    for layer in leading_preprocessing(model):
        x = np.asarray(layer(x))
    return x


def describe(layers):
    """A JSON-able description of each preprocessing layer (class, name, parameters)."""
    out = []
    for layer in layers:
        if isinstance(layer, keras.layers.Rescaling):
            out.append({"layer": layer.name, "class": "Rescaling",
                        "scale": np.asarray(layer.scale, np.float64).tolist(),
                        "offset": np.asarray(layer.offset, np.float64).tolist()})
        else:
            out.append({"layer": layer.name, "class": "Normalization",
                        "mean": np.asarray(layer.mean, np.float64).reshape(-1).tolist(),
                        "variance": np.asarray(layer.variance, np.float64).reshape(-1).tolist()})
    return out


def folded_input_quantization(layers, scale, zero_point, channels):
    """Per-channel ``(raw_scale, raw_zero_point)`` that quantize a raw pixel directly.

    The int8 model's input is ``q = round(y / scale) + zero_point`` of the
    preprocessed ``y = a_c * x + b_c``; that is ``q = round(x / raw_scale_c +
    raw_zero_point_c)`` with ``raw_scale_c = scale / a_c`` and ``raw_zero_point_c =
    zero_point + b_c / scale`` (a real number: the preprocessing's offset need
    not fall on the int8 grid). The rounding is the same as quantizing ``y``
    whenever ``zero_point`` is an integer, as it is.
    """
    a, b = affine(layers, channels)
    return (scale / a).tolist(), (zero_point + b / scale).tolist()


def insert_after(model, layer, new_layer, custom_objects=None):
    """A new functional model with ``new_layer`` reading ``layer``'s output in place of its readers.

    Built from the model's config (weights copied by layer name), so ``model`` is
    left untouched. ``layer`` must be called once; ``custom_objects`` are those
    the config needs (``new_layer``'s class among them when it is not built in).
    """
    config = copy.deepcopy(model.get_config())
    name = layer.name
    entry = dict(keras.layers.serialize(new_layer), name=new_layer.name,
                 inbound_nodes=[[[name, 0, 0, {}]]])
    layers = []
    for item in config["layers"]:
        for node in item.get("inbound_nodes", []):
            for ref in node:
                if ref[0] == name:
                    ref[0] = new_layer.name
        layers.append(item)
        if item["config"]["name"] == name:
            layers.append(entry)
    config["layers"] = layers
    for ref in config["output_layers"]:
        if ref[0] == name:
            ref[0] = new_layer.name
    # The model's own layer classes first: custom ones (ConvNeXt's LayerScale, a
    # user's) need not be registered for the config to load.
    objects = {type(l).__name__: type(l) for l in model.layers}
    objects.update(custom_objects or {})
    rebuilt = keras.Model.from_config(config, custom_objects=objects)
    for old in model.layers:
        rebuilt.get_layer(old.name).set_weights(old.get_weights())
    return rebuilt
