"""Rebuilding a Keras 3 functional model as a tf_keras model (config + weights).

tfmot works only with Keras 2 (``tf_keras``); most users now build models with
Keras 3. A Keras 3 Functional or Sequential model is translated layer by layer:
its JSON config is rewritten into tf_keras's format (dtype policies to names,
``batch_shape`` to ``batch_input_shape``, Keras 3 node records to tf_keras ones,
arguments tf_keras does not know dropped), rebuilt with
``tf_keras.Model.from_config`` and given the same weights, layer by layer.

What Keras 3 writes that tf_keras cannot read as is, and what it becomes:

- **Operations on tensors** (``keras.ops`` nodes such as ``x + 3.0`` or
  ``x * y``; Keras 3's MobileNetV3 writes its hard-sigmoid so): between two
  tensors, add / subtract / multiply become ``Add`` / ``Subtract`` /
  ``Multiply`` layers; with a scalar, add, subtract (either order), multiply,
  divide and negate become one :class:`~tfq_pareto.rewrite.ScalarAffine`.
  Other operations are refused, naming the node.
- **Activations tf_keras lacks or defines differently**: ``hard_silu`` /
  ``hard_swish`` become ``x * relu6(x + 3) / 6`` and Keras 3's ``hard_sigmoid``
  (``relu6(x + 3) / 6``, whereas tf_keras's is ``0.2 x + 0.5`` clipped) becomes
  ``relu6(x + 3) / 6``, both from ``ScalarAffine``, ``ReLU`` and ``Multiply``
  layers; on a conv or dense layer the activation is split off behind it.
  Other names tf_keras lacks (``squareplus``, ``celu``, ...) are refused,
  naming the layer. ``LeakyReLU``'s ``negative_slope`` is tf_keras's ``alpha``.
- **Nested models** (ConvNeXt's ``Sequential`` stem and downsampling blocks, a
  nested functional model) become nested tf_keras functional models, which
  :func:`tfq_pareto.rewrite.for_quantization` inlines.
- **Keras 3 application layers** (ConvNeXt's ``LayerScale``, InceptionResNetV2's
  ``CustomScaleLayer``) become their tf_keras twins, which compute the same.

The rebuilt model is checked against the Keras 3 model on a random batch; a
difference beyond float rounding is an error, so a layer whose meaning differs
between the two Keras versions cannot pass silently.
"""

import functools
import inspect
import json

import numpy as np

from tfq_pareto import rewrite
from tfq_pareto.backend import keras

#: Keras 3 module prefix -> tf_keras namespace used to look classes up.
_NAMESPACES = {
    "keras.initializers": keras.initializers,
    "keras.regularizers": keras.regularizers,
    "keras.constraints": keras.constraints,
    "keras.layers": keras.layers,
}

#: Arguments every tf_keras layer takes through ``**kwargs``.
_BASE_LAYER_ARGS = {"name", "trainable", "dtype", "batch_input_shape", "input_shape"}

#: Keras 3 argument names that tf_keras spells differently: class -> {Keras 3: tf_keras}.
_RENAMED_ARGS = {"LeakyReLU": {"negative_slope": "alpha"}}

#: Keras 3 ``keras.ops`` node classes and what they become (see the module docstring).
_OP_MERGE = {"Add": "Add", "Subtract": "Subtract", "Multiply": "Multiply"}
_OP_SCALAR = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Negative")

#: Largest |Keras 3 - tf_keras| output difference, relative to the output's range.
_REBUILD_TOLERANCE = 1e-4

_HOW_TO_CONVERT = (
    "build the model with `import tf_keras as keras` (tfmot supports only Keras 2), "
    "or save it as a Keras 3 functional model made of built-in layers"
)


def is_keras3_model(model):
    """True when ``model`` is a Keras 3 model (``import keras`` with Keras >= 3)."""
    return type(model).__module__.startswith("keras.") and not isinstance(model, keras.Model)


@functools.lru_cache(maxsize=None)
def _application_layers():
    """Keras 3 application layer classes -> their tf_keras twins (same call, same config).

    Built once: every serialized object of a model is looked up here.
    """
    twins = {}
    try:  # private tf_keras modules: a release without them simply adds nothing
        from tf_keras.src.applications import convnext  # pylint: disable=import-outside-toplevel

        twins[("keras.src.applications.convnext", "LayerScale")] = convnext.LayerScale
    except ImportError:  # pragma: no cover - depends on the tf_keras release
        pass
    try:
        from tf_keras.src.applications import inception_resnet_v2  # pylint: disable=import-outside-toplevel

        twins[("keras.src.applications.inception_resnet_v2", "CustomScaleLayer")] = (
            inception_resnet_v2.CustomScaleLayer)
    except ImportError:  # pragma: no cover
        pass
    return twins


def _accepted_args(cls):
    params = inspect.signature(cls.__init__).parameters
    names = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    names.discard("self")
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    return names, takes_kwargs


def _lookup(module, class_name):
    for prefix, namespace in _NAMESPACES.items():
        if module and module.startswith(prefix):
            return getattr(namespace, class_name, None)
    return _application_layers().get((module, class_name))


def _translate(obj):
    """Rewrites one Keras 3 serialized object (recursively) into tf_keras's format."""
    if isinstance(obj, list):
        return [_translate(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    class_name = obj.get("class_name")
    if class_name in ("DTypePolicy", "FloatDTypePolicy") and "config" in obj:
        return obj["config"]["name"]
    if class_name == "__keras_tensor__":
        history = obj["config"]["keras_history"]
        return [history[0], history[1], history[2], {}]
    out = {k: _translate(v) for k, v in obj.items()}
    if class_name == "InputLayer" and "batch_shape" in out.get("config", {}):
        out["config"]["batch_input_shape"] = out["config"].pop("batch_shape")
    cls = _lookup(obj.get("module"), class_name)
    if cls is not None and isinstance(out.get("config"), dict):
        config = out["config"]
        for old, new in _RENAMED_ARGS.get(class_name, {}).items():
            if old in config:
                config[new] = config.pop(old)
        names, takes_kwargs = _accepted_args(cls)
        allowed = names | (_BASE_LAYER_ARGS if takes_kwargs else set())
        out["config"] = {k: v for k, v in config.items() if k in allowed}
        out.pop("module", None)
        out.pop("registered_name", None)
        out.pop("build_config", None)
    return out


def _is_ref(value):
    """True for a translated tensor reference ``[layer name, node, tensor, kwargs]``."""
    return (isinstance(value, list) and len(value) == 4 and isinstance(value[0], str)
            and isinstance(value[3], dict))


def _flat_refs(node):
    """The tensor references and constants of one Keras 3 node record, in order, unnested."""
    args = node["args"] if isinstance(node, dict) else node
    flat = []

    def visit(value):
        if isinstance(value, list) and not _is_ref(value):
            for item in value:
                visit(item)
        else:
            flat.append(value)

    visit(args)
    return flat


class _Graph:
    """The layer records of one functional config, with fresh unique names."""

    def __init__(self, model_name, names):
        self.model_name = model_name
        self.names = names
        self.layers = []
        self.renamed = {}

    def unique(self, name):
        candidate, i = name, 1
        while candidate in self.names:
            candidate, i = f"{name}_{i}", i + 1
        self.names.add(candidate)
        return candidate

    def add(self, class_name, name, config, inputs):
        """Appends a layer record called on ``inputs`` (refs); returns its output ref."""
        self.layers.append({"class_name": class_name, "name": name,
                            "config": dict(config, name=name), "inbound_nodes": [inputs]})
        return [name, 0, 0, {}]

    def affine(self, name, scale, offset, ref):
        return self.add("ScalarAffine", name, {"scale": float(scale), "offset": float(offset)},
                        [ref])

    def activation(self, kind, ref, name, where):
        """Appends layers computing Keras 3 activation ``kind`` of ``ref``; the last is ``name``."""
        if kind in ("hard_sigmoid", "hard_silu", "hard_swish"):
            sigmoid_name = name if kind == "hard_sigmoid" else self.unique(f"{name}_hard_sigmoid")
            shifted = self.affine(self.unique(f"{name}_plus_3"), 1.0, 3.0, ref)
            clipped = self.add("ReLU", self.unique(f"{name}_relu6"), {"max_value": 6.0}, [shifted])
            sigmoid = self.affine(sigmoid_name, 1.0 / 6.0, 0.0, clipped)
            if kind == "hard_sigmoid":
                return sigmoid
            return self.add("Multiply", name, {}, [ref, sigmoid])
        raise ValueError(
            f"{where} of Keras 3 model {self.model_name!r} uses activation {kind!r}, which "
            f"tf_keras does not have; allowed: tf_keras's activations and hard_sigmoid, "
            f"hard_silu, hard_swish; {_HOW_TO_CONVERT}")


def _needs_expansion(activation):
    if not isinstance(activation, str):
        return False
    if activation in ("hard_sigmoid", "hard_silu", "hard_swish"):
        return True
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError):
        return True
    return False


def _op(graph, layer, refs):
    """Appends the tf_keras layer(s) for one Keras 3 ``keras.ops`` node."""
    op, name = layer["class_name"], layer["name"]
    where = f"operation {name!r} ({layer.get('module')}.{op})"
    tensors = [r for r in refs if _is_ref(r)]
    constants = [r for r in refs if not _is_ref(r)]
    if op in _OP_MERGE and len(tensors) == 2 and not constants:
        graph.add(_OP_MERGE[op], name, {}, tensors)
        return
    scalars = [c for c in constants if isinstance(c, (int, float)) and not isinstance(c, bool)]
    if op in _OP_SCALAR and len(tensors) == 1 and len(scalars) == len(constants) <= 1:
        c = float(scalars[0]) if scalars else None
        tensor_first = _is_ref(refs[0])
        if op == "Negative" and c is None:
            scale, offset = -1.0, 0.0
        elif op == "Add" and c is not None:
            scale, offset = 1.0, c
        elif op == "Subtract" and c is not None:
            scale, offset = (1.0, -c) if tensor_first else (-1.0, c)
        elif op == "Multiply" and c is not None:
            scale, offset = c, 0.0
        elif op in ("Divide", "TrueDivide") and c is not None and tensor_first and c != 0:
            scale, offset = 1.0 / c, 0.0
        else:
            scale = None
        if scale is not None:
            graph.affine(name, scale, offset, tensors[0])
            return
    raise ValueError(
        f"{where} of Keras 3 model {graph.model_name!r} has no tf_keras layer: supported are "
        f"add, subtract, multiply of two tensors, and add, subtract, multiply, divide by or "
        f"negate with a scalar constant; received arguments "
        f"{['tensor' if _is_ref(r) else type(r).__name__ for r in refs]}; {_HOW_TO_CONVERT}")


def _sequential_as_functional(config):
    """A (translated) Sequential config as a functional one with the same layers in a chain."""
    layers = [dict(layer) for layer in config["layers"]]
    if not layers or layers[0]["class_name"] != "InputLayer":
        shape = (config.get("build_input_shape")
                 or (config.get("build_config") or {}).get("input_shape"))
        if shape is None:
            raise ValueError(f"nested Sequential model {config.get('name')!r} has no input "
                             f"shape; give it an Input first")
        layers.insert(0, {"class_name": "InputLayer",
                          "config": {"batch_input_shape": list(shape),
                                     "name": f"{config.get('name')}_input"}})
    previous = None
    for layer in layers:
        layer["name"] = layer["config"]["name"]
        layer["inbound_nodes"] = [] if previous is None else [[[previous, 0, 0, {}]]]
        previous = layer["name"]
    return {"name": config.get("name"), "trainable": config.get("trainable", True),
            "layers": layers, "input_layers": [[layers[0]["name"], 0, 0]],
            "output_layers": [[previous, 0, 0]]}


def _io_refs(refs):
    """Keras 3 writes a single input/output as [name, node, tensor]; tf_keras wants a list of them."""
    if refs and not isinstance(refs[0], list):
        return [refs]
    return refs


def _functional(config, renamed):
    """Translates one (already :func:`_translate`-d) functional config, nested models included.

    ``renamed`` collects Keras 3 layer name -> tf_keras name for layers whose
    activation was split off (the split-off activation keeps the original name).
    """
    graph = _Graph(config.get("name"), {layer["name"] for layer in config["layers"]})
    for layer in config["layers"]:
        layer = dict(layer)
        nodes = [_flat_refs(node) for node in layer.get("inbound_nodes", [])]
        class_name = layer["class_name"]
        if class_name == "Sequential":
            layer["config"] = _functional(_sequential_as_functional(layer["config"]), renamed)
            layer["class_name"] = class_name = "Functional"
        elif class_name == "Functional":
            layer["config"] = _functional(layer["config"], renamed)
        if (layer.get("module") or "").startswith("keras.src.ops"):
            if len(nodes) != 1:
                raise ValueError(f"operation {layer['name']!r} is used {len(nodes)} times; "
                                 f"{_HOW_TO_CONVERT}")
            _op(graph, layer, nodes[0])
            continue
        activation = (layer.get("config") or {}).get("activation")
        if _needs_expansion(activation):
            if len(nodes) != 1:
                raise ValueError(f"layer {layer['name']!r} with activation {activation!r} is "
                                 f"shared ({len(nodes)} calls); {_HOW_TO_CONVERT}")
            where = f"layer {layer['name']!r} ({class_name})"
            ref = nodes[0][0]
            if class_name != "Activation":  # the layer itself, linear, then its activation
                linear = graph.unique(f"{layer['name']}_linear")
                renamed[layer["name"]] = linear
                graph.layers.append(dict(layer, name=linear, inbound_nodes=nodes,
                                         config=dict(layer["config"], name=linear,
                                                     activation="linear")))
                ref = [linear, 0, 0, {}]
            graph.activation(activation, ref, layer["name"], where)
            continue
        layer["inbound_nodes"] = nodes
        graph.layers.append(layer)
    # A tf_keras nested model's own call on its Input is its node 0, so the calls
    # Keras 3 numbers from 0 are tf_keras's nodes from 1.
    nested = {layer["name"] for layer in graph.layers if layer["class_name"] == "Functional"}
    for layer in graph.layers:
        layer["inbound_nodes"] = [[_shift(ref, nested) for ref in node]
                                  for node in layer["inbound_nodes"]]
    config = dict(config, layers=graph.layers)
    config["input_layers"] = _io_refs(config["input_layers"])
    config["output_layers"] = [_shift(ref, nested) for ref in _io_refs(config["output_layers"])]
    return config


def _shift(ref, nested):
    if isinstance(ref, list) and ref and ref[0] in nested:
        return [ref[0], ref[1] + 1] + list(ref[2:])
    return ref


def _unknown_layers(config, known):
    unknown = set()
    for layer in config["layers"]:
        if layer["class_name"] == "Functional":
            unknown |= _unknown_layers(layer["config"], known)
        elif layer["class_name"] not in known and not hasattr(keras.layers, layer["class_name"]):
            unknown.add(layer["class_name"])
    return unknown


def _copy_weights(source, target, renamed):
    """Sets every layer's weights of tf_keras ``target`` from Keras 3 ``source``, by layer name."""
    for layer in source.layers:
        weights = [np.asarray(w) for w in layer.get_weights()]
        if not weights:
            continue
        twin = target.get_layer(renamed.get(layer.name, layer.name))
        if type(layer).__name__ in ("Functional", "Sequential"):
            _copy_weights(layer, twin, renamed)
        else:
            twin.set_weights(weights)


def _check_same_function(model, rebuilt):
    """Raises when ``rebuilt`` does not compute what Keras 3 ``model`` does on a random batch."""
    shapes = [tuple(t.shape) for t in model.inputs]
    if any(d is None for shape in shapes for d in shape[1:]):
        return  # no fixed shape to probe with
    rng = np.random.default_rng(0)
    batch = [rng.normal(size=(2,) + shape[1:]).astype("float32") for shape in shapes]
    expected = model(batch if len(batch) > 1 else batch[0])
    actual = rebuilt(batch if len(batch) > 1 else batch[0])
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    actual = actual if isinstance(actual, (list, tuple)) else [actual]
    for i, (e, a) in enumerate(zip(expected, actual)):
        e, a = np.asarray(e), np.asarray(a)
        scale = max(float(np.max(np.abs(e))), 1.0)
        error = float(np.max(np.abs(e - a)))
        if error > _REBUILD_TOLERANCE * scale:
            raise ValueError(
                f"the tf_keras rebuild of Keras 3 model {model.name!r} computes a different "
                f"function: output {i} differs by {error:.3g} (largest |output| {scale:.3g}) on "
                f"a random batch; a layer means something else in tf_keras. {_HOW_TO_CONVERT}")


def to_tf_keras(model):
    """Rebuilds a Keras 3 Functional/Sequential ``model`` as a tf_keras model with the same weights.

    Args:
      model: a built Keras 3 model made of built-in layers, ``keras.ops``
        arithmetic, nested models and the application layers named in the
        module docstring.

    Returns:
      A tf_keras ``Model`` computing the same function (checked on a random batch).

    Raises:
      ValueError: when the model is subclassed, uses layers, operations or
        activations tf_keras does not have, cannot be rebuilt, or the rebuild
        computes something else; the message names what and says how to
        convert it by hand.
    """
    class_name = type(model).__name__
    if class_name == "Sequential":
        # A Keras 3 Sequential model has a functional twin through its inputs/outputs.
        import keras as keras3  # pylint: disable=import-outside-toplevel

        try:
            model = keras3.Model(model.inputs, model.outputs, name=model.name)
        except Exception as err:  # pylint: disable=broad-except
            raise ValueError(
                f"Keras 3 Sequential model {model.name!r} is not built; "
                f"call it on data or give it an Input first ({err})"
            ) from err
    elif class_name != "Functional":
        raise ValueError(
            f"model {model.name!r} is a subclassed Keras 3 model ({type(model).__name__}); "
            f"only functional models can be converted: {_HOW_TO_CONVERT}"
        )
    renamed = {}
    config = _functional(_translate(json.loads(model.to_json())["config"]), renamed)
    objects = {cls.__name__: cls for cls in _application_layers().values()}
    objects["ScalarAffine"] = rewrite.ScalarAffine
    unknown = sorted(_unknown_layers(config, objects))
    if unknown:
        raise ValueError(
            f"Keras 3 model {model.name!r} uses layers tf_keras does not have: {unknown}; "
            f"{_HOW_TO_CONVERT}"
        )
    try:
        with keras.utils.custom_object_scope(objects):
            rebuilt = keras.Model.from_config(config)
        _copy_weights(model, rebuilt, renamed)
    except Exception as err:  # pylint: disable=broad-except
        raise ValueError(
            f"could not rebuild Keras 3 model {model.name!r} as tf_keras ({err}); {_HOW_TO_CONVERT}"
        ) from err
    _check_same_function(model, rebuilt)
    return rebuilt
