"""Graph rewrites made before quantizing: nested models inlined, TF-op arithmetic as layers.

tfmot's ``quantize_apply`` handles only a flat functional model of Keras layers
it has a config for. Several ``tf_keras.applications`` families are built
otherwise, and :func:`for_quantization` rewrites them into that form, computing
the same function with the same weights:

- **Nested models** (ConvNeXt's stem and downsampling blocks are Sequential
  models called inside the functional one) are inlined: their layers are called
  directly in one flat functional graph.
- **TF-op arithmetic** (a ``TFOpLambda`` layer, what ``x + 3.0`` or ``x * y``
  on Keras tensors records): between two tensors, add, subtract and multiply
  become ``Add``, ``Subtract`` and ``Multiply``; with a scalar constant, add,
  subtract, multiply, divide and negate become one :class:`ScalarAffine` layer.
  MobileNetV3's hard-swish ``x * relu6(x + 3) * (1/6)`` and RegNet's residual
  ``x + shortcut`` and squeeze-and-excitation ``x * se`` are written this way.
- **InceptionResNetV2's CustomScaleLayer** (``x + r * scale``) becomes
  ``Add([x, ScalarAffine(scale)(r)])``.

Each new layer carries its output fake-quant like ``Add``/``Multiply`` do, so
QAT models the int8 rounding that the exported ADD/MUL ops apply. TF ops other
than these (and constants that are not scalars) are left as they are, and
:func:`tfq_pareto.apply` names them as layers it cannot quantize.
"""

import numpy as np

from tfq_pareto import graph
from tfq_pareto.backend import keras, tf

#: TFOpLambda symbols of the binary ops rewritten, by operation.
_ADD = ("__operators__.add", "math.add")
_SUBTRACT = ("math.subtract", "__operators__.sub")
_MULTIPLY = ("math.multiply", "__operators__.mul")
_DIVIDE = ("math.truediv", "math.divide", "__operators__.truediv")
_NEGATE = ("math.negative",)
#: Keras merge layer of each binary op between two tensors.
_MERGE = {"add": keras.layers.Add, "subtract": keras.layers.Subtract,
          "multiply": keras.layers.Multiply}


@keras.utils.register_keras_serializable(package="tfq_pareto")
class ScalarAffine(keras.layers.Layer):
    """``y = x * scale + offset`` with scalar constants: one MUL and/or one ADD in TFLite.

    The multiply is left out when ``scale`` is 1 and the add when ``offset`` is 0,
    so ``x + 3.0`` exports as one ADD and ``x * (1/6)`` as one MUL.

    Args:
      scale: the multiplier, a finite number.
      offset: the constant added after the multiply, a finite number.
    """

    def __init__(self, scale=1.0, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("scale", scale), ("offset", offset)):
            if not np.isfinite(value):
                raise ValueError(f"ScalarAffine {name} must be a finite number; received {value!r}")
        self.scale = float(scale)
        self.offset = float(offset)

    def call(self, inputs):  # pylint: disable=arguments-differ
        outputs = inputs
        if self.scale != 1.0:
            outputs = outputs * self.scale
        if self.offset != 0.0:
            outputs = outputs + self.offset
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return dict(super().get_config(), scale=self.scale, offset=self.offset)


def _is_tensor(value):
    """True for a symbolic Keras tensor (a graph edge), False for constants."""
    try:
        return keras.backend.is_keras_tensor(value)
    except ValueError:  # raised for anything that is not a tensor at all
        return False


def _scalar(value):
    """``value`` as a float when it is a constant with one element, else None."""
    if _is_tensor(value):
        return None
    try:
        array = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        return None
    return float(array.reshape(-1)[0]) if array.size == 1 else None


def _operands(node):
    """The TF op's operands in order: positional arguments, then ``x``/``y`` keywords."""
    args = list(node.call_args)
    kwargs = node.call_kwargs or {}
    for key in ("x", "y"):
        if key in kwargs:
            args.append(kwargs[key])
    return args


def _op_replacement(layer, node):
    """``(kind, detail)`` of how a TFOpLambda call is rewritten, or None to keep it.

    kind ``"merge"``: detail is the merge layer class (both operands tensors);
    kind ``"affine"``: detail is ``(tensor_position, scale, offset)``.
    """
    symbol = getattr(layer, "symbol", None)
    operands = _operands(node)
    if symbol in _NEGATE and len(operands) == 1 and _is_tensor(operands[0]):
        return "affine", (0, -1.0, 0.0)
    if len(operands) != 2:
        return None
    operation = next((op for op, symbols in (("add", _ADD), ("subtract", _SUBTRACT),
                                             ("multiply", _MULTIPLY), ("divide", _DIVIDE))
                      if symbol in symbols), None)
    if operation is None:
        return None
    a, b = operands
    if _is_tensor(a) and _is_tensor(b):
        merge = _MERGE.get(operation)
        return None if merge is None else ("merge", merge)
    position = 0 if _is_tensor(a) else 1
    if not _is_tensor(operands[position]):
        return None
    constant = _scalar(operands[1 - position])
    if constant is None:
        return None
    affine = {
        "add": (1.0, constant),
        "multiply": (constant, 0.0),
        "subtract": (1.0, -constant) if position == 0 else (-1.0, constant),
        "divide": (1.0 / constant, 0.0) if position == 0 and constant != 0 else None,
    }[operation]
    return None if affine is None else ("affine", (position, *affine))


def _is_custom_scale(layer):
    """InceptionResNetV2's ``CustomScaleLayer``: ``inputs[0] + inputs[1] * scale``."""
    return type(layer).__name__ == "CustomScaleLayer" and hasattr(layer, "scale")


def _is_nested(layer):
    return isinstance(layer, keras.Model) and graph.is_graph_model(layer)


def custom_layer_classes(model):
    """``{class name: class}`` of ``model``'s layers that are not built-in tf_keras layers.

    For ``tf_keras.utils.custom_object_scope``, so that rebuilding the model from
    its config (tfmot does, as does the exporter's float twin) finds them.
    """
    classes = {}
    if not isinstance(model, keras.Model):  # apply names the bad argument itself
        return classes
    for layer in graph.unwrapped_layers(model):
        cls = type(layer)
        if getattr(keras.layers, cls.__name__, None) is not cls:
            classes[cls.__name__] = cls
    return classes


def needs_rewrite(model):
    """True when :func:`for_quantization` would change ``model``."""
    if not graph.is_graph_model(model):
        return False
    for depth in model._nodes_by_depth.values():  # pylint: disable=protected-access
        for node in depth:
            layer = node.layer
            if _is_nested(layer) or _is_custom_scale(layer):
                return True
            if type(layer).__name__ == "TFOpLambda" and _op_replacement(layer, node):
                return True
    return False


def _map(structure, tensors):
    """``structure`` with every Keras tensor replaced by its new tensor."""
    return tf.nest.map_structure(
        lambda t: tensors[id(t)] if _is_tensor(t) else t, structure)


def _run_graph(model, tensors, names):
    """Calls ``model``'s layers on the new tensors in ``tensors`` (by id of the old ones).

    Fills ``tensors`` with the new tensor of every old one the model computes;
    ``names`` collects the layer names used, to keep them unique.
    """
    depths = model._nodes_by_depth  # pylint: disable=protected-access
    for depth in sorted(depths, reverse=True):
        for node in depths[depth]:
            if node.is_input:
                continue
            layer = node.layer
            if _is_nested(layer):
                inner_inputs = tf.nest.flatten(_map(node.call_args, tensors))
                if len(inner_inputs) != len(layer.inputs):
                    raise ValueError(
                        f"nested model {layer.name!r} is called on {len(inner_inputs)} tensors "
                        f"but has {len(layer.inputs)} inputs; flatten it by hand")
                for old, new in zip(layer.inputs, inner_inputs):
                    tensors[id(old)] = new
                _run_graph(layer, tensors, names)
                outputs = [tensors[id(t)] for t in layer.outputs]
            else:
                outputs = tf.nest.flatten(_call(layer, node, tensors, names))
            for old, new in zip(tf.nest.flatten(node.outputs), outputs):
                tensors[id(old)] = new


def _unique(name, names, layer=None):
    """``name``, recorded in ``names`` (name -> owner); raises when another layer has it.

    ``layer`` is the existing layer that owns the name (it may be called more
    than once); None for a new layer, whose name must be free.
    """
    owner = id(layer) if layer is not None else object()
    if names.setdefault(name, owner) != owner:
        raise ValueError(
            f"two layers are named {name!r} once the nested models are inlined; "
            "rename one of them before calling tfq_pareto.apply")
    return name


def _call(layer, node, tensors, names):
    """One node of the rebuilt graph: the layer itself, or its replacement."""
    if _is_custom_scale(layer):
        x, residual = _map(node.call_args[0], tensors)
        scaled = ScalarAffine(scale=float(layer.scale), name=_unique(f"{layer.name}_scale", names))
        add = keras.layers.Add(name=_unique(layer.name, names))
        return add([x, scaled(residual)])
    if type(layer).__name__ == "TFOpLambda":
        replacement = _op_replacement(layer, node)
        if replacement is not None:
            operands = [_map(o, tensors) for o in _operands(node)]
            kind, detail = replacement
            name = _unique(layer.name, names)
            if kind == "merge":
                return detail(name=name)(operands)
            position, scale, offset = detail
            return ScalarAffine(scale=scale, offset=offset, name=name)(operands[position])
    _unique(layer.name, names, layer)
    args, kwargs = _map((node.call_args, node.call_kwargs or {}), tensors)
    return layer(*args, **kwargs)


def for_quantization(model):
    """``model`` as a flat functional model of layers tfmot can wrap (see the module doc).

    Returns ``model`` itself when nothing needs rewriting. Otherwise a new
    functional model with the same inputs' shapes, the same outputs and the same
    weights: unchanged layers are shared with ``model`` (not copied), as
    ``tf_keras.Model(inputs, outputs)`` shares them; :func:`tfq_pareto.apply`
    clones them before quantizing, so ``model`` itself is never changed.

    Raises:
      ValueError: inlining would give two layers one name, or a nested model is
        called on a different number of tensors than it has inputs.
    """
    if not needs_rewrite(model):
        return model
    tensors, names = {}, {}
    inputs = []
    for old, name in zip(model.inputs, model.input_names):
        new = keras.Input(shape=old.shape[1:], batch_size=old.shape[0], dtype=old.dtype,
                          name=_unique(name, names))
        tensors[id(old)] = new
        inputs.append(new)
    _run_graph(model, tensors, names)
    outputs = [tensors[id(t)] for t in model.outputs]
    return keras.Model(inputs if len(inputs) > 1 else inputs[0],
                       outputs if len(outputs) > 1 else outputs[0], name=model.name)
