"""Width scaling of any functional CNN, and the width that meets a size budget.

The paper compares precisions at equal model size (Eq. 6) by changing width:
:func:`widen` scales any built-in-layer tf_keras model, :func:`width_for_size`
finds the width multiplier of a model family that has a given size, and
:func:`align_widths` does that for a list of precisions at once (Sec. 4).
"""

import copy

import numpy as np

from tfq_pareto import checks, graph
from tfq_pareto.backend import keras
from tfq_pareto.size import model_size

#: Layers whose filters/units ``widen`` scales, with the config key holding them.
_SCALED = {
    keras.layers.Conv1D: "filters",
    keras.layers.Conv2D: "filters",
    keras.layers.Conv3D: "filters",
    keras.layers.Conv2DTranspose: "filters",
    keras.layers.SeparableConv1D: "filters",
    keras.layers.SeparableConv2D: "filters",
    keras.layers.Dense: "units",
}

#: Layers whose output has as many channels as their (first) input.
_CHANNEL_PRESERVING = (
    keras.layers.InputLayer,
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,
    keras.layers.Rescaling,
    keras.layers.ActivityRegularization,
)

#: Layers that need all their inputs to have the same channels.
_MERGES = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)


def _scale(channels, width_multiplier):
    return max(1, int(round(channels * width_multiplier)))


def _last_dim(shape):
    shape = shape[0] if isinstance(shape, list) else shape
    return shape[-1]


def _check_width(width_multiplier):
    checks.check_positive("width_multiplier", width_multiplier, finite=True)


def _new_channels(model, width_multiplier, keep):
    """Propagates channel counts through the graph: {layer name: (old, new)} and config edits."""
    parents, ordered = graph.layer_edges(model)
    channels = {}
    edits = {}
    cannot = []
    for layer in ordered:
        name = layer.name
        old = _last_dim(layer.output_shape)
        ins = [channels[p][1] for p in parents[name]]
        old_ins = [channels[p][0] for p in parents[name]]
        if type(layer) in _SCALED:
            key = _SCALED[type(layer)]
            new = old if name in keep else _scale(old, width_multiplier)
            groups = getattr(layer, "groups", 1) or 1
            if groups > 1 and (new % groups or (ins and ins[0] % groups)):
                cannot.append(f"{name} (groups={groups} must divide {new} filters and {ins[0]} inputs)")
            edits[name] = (key, new)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            new = ins[0] * layer.depth_multiplier
        elif isinstance(layer, keras.layers.Concatenate):
            axis = layer.axis
            rank = len(layer.output_shape)
            new = sum(ins) if axis in (-1, rank - 1) else ins[0]
        elif isinstance(layer, _MERGES):
            if len(set(ins)) > 1:
                cannot.append(
                    f"{name} ({type(layer).__name__} of {dict(zip(parents[name], ins))} channels "
                    "after scaling; keep_first_last=False keeps residual branches equal)"
                )
            new = ins[0]
        elif isinstance(layer, keras.layers.Flatten):
            new = old // old_ins[0] * ins[0] if old_ins[0] else old
        elif isinstance(layer, keras.layers.Reshape):
            target = tuple(layer.target_shape)
            if ins[0] == old_ins[0]:
                new = old
            elif len(layer.input_shape) == 2 and target[-1] == old_ins[0] and int(np.prod(target)) == old_ins[0]:
                # (None, C) -> (1, 1, C), as in squeeze-and-excitation blocks.
                new = ins[0]
                edits[name] = ("target_shape", target[:-1] + (new,))
            else:
                cannot.append(f"{name} (Reshape to {target} of a scaled tensor)")
                new = old
        elif isinstance(layer, _CHANNEL_PRESERVING):
            new = ins[0] if ins else old
        else:
            cannot.append(f"{name} ({type(layer).__name__})")
            new = old
        channels[name] = (old, new)
    return channels, edits, cannot


def widen(model, width_multiplier, keep_first_last=False):
    """Scales every conv filter count and hidden dense unit count by ``width_multiplier``.

    Works on any built Functional or Sequential tf_keras model made of standard
    layers (convs, depthwise and separable convs, dense, BN, activations,
    pooling, Add/Concatenate/Multiply, Flatten, Reshape of squeeze-and-excitation
    blocks, Dropout, padding, ...). Channel counts become ``round(c * m)``
    (at least 1), so residual branches of equal width stay equal; depthwise
    convs follow their input; the layer(s) producing the output keep their
    filters/units. The widened model is newly initialised (a different
    architecture cannot reuse the weights). tf_keras calls the multiplier ``alpha``.

    Args:
      model: a built tf_keras model (Keras 3 models are rebuilt first).
      width_multiplier: > 0; 2.0 roughly quadruples the conv weights.
      keep_first_last: also keep the first conv/dense layer(s) unscaled (Sec. 6).

    Returns:
      A new float tf_keras model named ``{model.name}_w{m:.2f}``.

    Raises:
      ValueError: for a subclassed model or layers it cannot scale (all named).
    """
    from tfq_pareto import keras3  # pylint: disable=import-outside-toplevel

    _check_width(width_multiplier)
    if keras3.is_keras3_model(model):
        model = keras3.to_tf_keras(model)
    if not graph.is_graph_model(model):
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} is not a Functional or Sequential tf_keras "
            "model; widen needs its layer graph: rebuild it with the functional API"
        )
    first, last = graph.first_and_last_layers(model)
    keep = set(last) | (set(first) if keep_first_last else set())
    _, edits, cannot = _new_channels(model, width_multiplier, keep)
    if cannot:
        raise ValueError(f"widen cannot scale these layers of model {model.name!r}: {cannot}")
    config = copy.deepcopy(model.get_config())
    for layer_config in config["layers"]:
        name = layer_config["config"]["name"]
        if name in edits:
            key, value = edits[name]
            layer_config["config"][key] = value
    config["name"] = f"{model.name}_w{width_multiplier:.2f}"
    if isinstance(model, keras.Sequential):
        return keras.Sequential.from_config(config)
    return keras.Model.from_config(config)


def _size_at(builder, width, conv_bits, dw_bits, first_last_bits, cache):
    if width not in cache:
        model = builder(width)
        cache[width] = model_size(model, conv_bits=conv_bits, dw_bits=dw_bits,
                                  first_last_bits=first_last_bits)
        del model
    return cache[width]


def width_for_size(builder, target_bits, *, conv_bits, dw_bits=None, first_last_bits=8,
                   tolerance=0.01, min_width=1 / 64, max_width=64.0):
    """The width multiplier at which ``builder``'s Eq. (6) size is ``target_bits`` (within tolerance).

    Size grows with width in steps (channel counts are integers), so the search
    brackets the target by doubling/halving from 1.0, then bisects.

    Args:
      builder: ``builder(width_multiplier)`` -> float tf_keras model, e.g.
        ``lambda w: tfq_pareto.models.resnet_cifar(20, w)``.
      target_bits: the Eq. (6) size to reach, in bits (> 0).
      conv_bits, dw_bits, first_last_bits: the precision the size is computed at,
        as in :func:`tfq_pareto.model_size`.
      tolerance: accepted relative error |size - target| / target.
      min_width, max_width: the search range.

    Returns:
      The width multiplier (float).

    Raises:
      ValueError: bad arguments, or a target no width reaches within tolerance;
        the message gives the nearest reachable sizes and their widths.
    """
    checks.check_positive("target_bits", target_bits)
    if not isinstance(tolerance, (int, float)) or not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1); received {tolerance!r}")
    if not callable(builder):
        raise TypeError(f"builder must be callable(width_multiplier) -> model; received {builder!r}")
    cache = {}

    def size(width):
        return _size_at(builder, width, conv_bits, dw_bits, first_last_bits, cache)

    def close(width):
        return abs(size(width) - target_bits) <= tolerance * target_bits

    lo = hi = 1.0
    if size(1.0) < target_bits:
        while size(hi) < target_bits and hi < max_width:
            lo, hi = hi, min(hi * 2, max_width)
    else:
        while size(lo) > target_bits and lo > min_width:
            lo, hi = max(lo / 2, min_width), lo
    for width in (lo, hi):
        if close(width):
            return width
    if not size(lo) <= target_bits <= size(hi):
        reachable = f"{size(min_width if size(lo) > target_bits else max_width):,}"
        raise ValueError(
            f"target_bits {target_bits:,} is outside what widths {min_width}..{max_width} reach "
            f"(nearest: {reachable} bits)"
        )
    for _ in range(60):
        mid = (lo + hi) / 2
        if close(mid):
            return mid
        if size(mid) < target_bits:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-6:
            break
    raise ValueError(
        f"no width reaches target_bits {target_bits:,} within tolerance {tolerance}: channel "
        f"counts are integers; nearest reachable sizes are {size(lo):,} bits (width {lo:.6f}) "
        f"and {size(hi):,} bits (width {hi:.6f}); raise tolerance or pick one of them"
    )


def _precision(entry):
    """``4`` or ``(4, 8)`` -> (conv_bits, dw_bits)."""
    if isinstance(entry, tuple):
        if len(entry) != 2:
            raise ValueError(f"a precision is conv_bits or (conv_bits, dw_bits); received {entry!r}")
        return entry
    return entry, None


def align_widths(builder, precisions, *, reference_width=1.0, reference_conv_bits,
                 reference_dw_bits=None, first_last_bits=8, tolerance=0.01):
    """Widths that give every precision the Eq. (6) size of a reference model (Sec. 4).

    Example: the 1-, 2- and 4-bit ResNet-20s of the size of the 4-bit 1x ResNet-20::

        align_widths(lambda w: resnet_cifar(20, w), [1, 2, 4], reference_conv_bits=4)

    Args:
      builder: ``builder(width_multiplier)`` -> float model.
      precisions: conv_bits values, or (conv_bits, dw_bits) pairs.
      reference_width, reference_conv_bits, reference_dw_bits: the reference model.
      first_last_bits, tolerance: as in :func:`width_for_size`.

    Returns:
      ``{precision: width_multiplier}`` in the order given, plus the target under
      the key ``"target_bits"``.
    """
    target = model_size(builder(reference_width), conv_bits=reference_conv_bits,
                        dw_bits=reference_dw_bits, first_last_bits=first_last_bits)
    widths = {}
    for entry in precisions:
        conv_bits, dw_bits = _precision(entry)
        widths[entry] = width_for_size(builder, target, conv_bits=conv_bits, dw_bits=dw_bits,
                                       first_last_bits=first_last_bits, tolerance=tolerance)
    widths["target_bits"] = target
    return widths
