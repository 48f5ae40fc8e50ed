"""The layer graph of a built Functional or Sequential tf_keras model."""

import re

from tfq_pareto.backend import keras, tf

#: Layers that carry conv/dense filters (Eq. 6 counts their kernels).
WEIGHTED_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.Dense,
)


def unwrap(layer):
    """The layer inside a tfmot ``QuantizeWrapper``/``QuantizeAnnotate``, else the layer."""
    return getattr(layer, "layer", layer) if hasattr(layer, "quantize_config") else layer


def unwrapped_layers(model):
    """``model``'s layers, each tfmot wrapper replaced by the layer it wraps."""
    return [unwrap(layer) for layer in model.layers]


def is_weighted(layer):
    return isinstance(unwrap(layer), WEIGHTED_LAYERS)


def is_depthwise(layer):
    """True for a depthwise conv: each filter sees one input channel (fan-in K_w x K_h).

    That is a ``DepthwiseConv2D``, and also a grouped ``Conv2D`` with as many groups
    as input channels (``C_in / groups == 1``), the form ConvNeXt's depthwise convs
    take in ``keras.applications``. Prop. 5.1 is about the fan-in, not the layer
    class: both want ``dw_bits``.
    """
    layer = unwrap(layer)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return True
    if (type(layer) is keras.layers.Conv2D and (getattr(layer, "groups", 1) or 1) > 1
            and getattr(layer, "kernel", None) is not None):
        return int(layer.kernel.shape[-2]) == 1
    return False


def is_graph_model(model):
    """True for a Functional or Sequential model whose layer graph is known."""
    return isinstance(model, keras.Model) and getattr(model, "_is_graph_network", False)


def layer_edges(model):
    """``(parents, layers)``: ``parents[name]`` lists the names feeding layer ``name``.

    ``layers`` lists the model's layers from the inputs to the outputs.
    """
    parents = {}
    ordered = []
    for depth in sorted(model._nodes_by_depth, reverse=True):  # pylint: disable=protected-access
        for node in model._nodes_by_depth[depth]:  # pylint: disable=protected-access
            layer = node.layer
            if layer.name not in parents:
                parents[layer.name] = []
                ordered.append(layer)
            for parent in tf.nest.flatten(node.inbound_layers):
                if parent.name not in parents[layer.name]:
                    parents[layer.name].append(parent.name)
    return parents, ordered


def first_and_last_layers(model):
    """Names of the first and the last weighted layers of ``model``.

    First: conv/dense layers that no other conv/dense layer precedes on any path
    from an input (the layers the input reaches first). Last: conv/dense layers
    that no other conv/dense layer follows on any path to an output.

    Returns:
      (first, last): two sets of layer names.
    """
    parents, ordered = layer_edges(model)
    weighted = {layer.name for layer in ordered if is_weighted(layer)}
    children = {name: [] for name in parents}
    for name, ins in parents.items():
        for parent in ins:
            children.setdefault(parent, []).append(name)

    # `ordered` runs from the inputs to the outputs: one pass each way.
    before, after = {}, {}
    for layer in ordered:
        before[layer.name] = any(p in weighted or before.get(p, False) for p in parents[layer.name])
    for layer in reversed(ordered):
        after[layer.name] = any(c in weighted or after.get(c, False) for c in children[layer.name])
    first = {n for n in weighted if not before[n]}
    last = {n for n in weighted if not after[n]}
    return first, last


def reserve_layer_names(model):
    """Makes tf_keras's automatic layer names skip every name ``model`` already uses.

    tf_keras names a new layer ``conv2d``, ``conv2d_1``, ... from a per-session
    counter. A model whose layers got such names elsewhere (built by Keras 3,
    loaded from a file in a new process, built before ``clear_session``) can
    then meet a new layer of the same name, and tfmot's transforms create
    unnamed layers (a ``SeparableConv2D`` becomes a new ``DepthwiseConv2D`` and
    ``Conv2D``). Two layers of one name make tf_keras's ``from_config`` loop
    forever. This advances the counter of every ``<base>`` / ``<base>_<n>``
    name in ``model`` (nested models included) past ``n``.
    """
    from tf_keras.src import backend as tf_keras_backend  # pylint: disable=import-outside-toplevel

    counters = tf_keras_backend.get_default_graph_uid_map()
    pending = [model]
    while pending:
        for layer in pending.pop().layers:
            if isinstance(layer, keras.Model):
                pending.append(layer)
            found = re.fullmatch(r"(.+?)(?:_(\d+))?", unwrap(layer).name)
            base, number = found.group(1), int(found.group(2) or 0)
            counters[("", base)] = max(counters[("", base)], number + 1)
