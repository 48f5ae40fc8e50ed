"""Rebuilding a Keras 3 functional model as a tf_keras model (config + weights).

tfmot works only with Keras 2 (``tf_keras``); most users now build models with
Keras 3. A Keras 3 Functional or Sequential model made of built-in layers is
translated layer by layer: its JSON config is rewritten into tf_keras's format
(dtype policies to names, ``batch_shape`` to ``batch_input_shape``, Keras 3 node
records to tf_keras ones, arguments tf_keras does not know dropped), rebuilt
with ``tf_keras.Model.from_config`` and given the same weights.
"""

import inspect
import json

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

_HOW_TO_CONVERT = (
    "build the model with `import tf_keras as keras` (tfmot supports only Keras 2), "
    "or save it as a Keras 3 functional model made of built-in layers"
)


def is_keras3_model(model):
    """True when ``model`` is a Keras 3 model (``import keras`` with Keras >= 3)."""
    return type(model).__module__.startswith("keras.") and not isinstance(model, keras.Model)


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
    return None


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
        names, takes_kwargs = _accepted_args(cls)
        allowed = names | (_BASE_LAYER_ARGS if takes_kwargs else set())
        out["config"] = {k: v for k, v in out["config"].items() if k in allowed}
        out.pop("module", None)
        out.pop("registered_name", None)
        out.pop("build_config", None)
    return out


def _translate_layer(layer):
    layer = dict(layer)
    nodes = []
    for node in layer.get("inbound_nodes", []):
        args = node["args"] if isinstance(node, dict) else node
        flat = []
        for arg in args:
            if isinstance(arg, list) and arg and isinstance(arg[0], list):
                flat.extend(arg)
            else:
                flat.append(arg)
        nodes.append(flat)
    layer["inbound_nodes"] = nodes
    return layer


def _io_refs(refs):
    """Keras 3 writes a single input/output as [name, node, tensor]; tf_keras wants a list of them."""
    if refs and not isinstance(refs[0], list):
        return [refs]
    return refs


def to_tf_keras(model):
    """Rebuilds a Keras 3 Functional/Sequential ``model`` as a tf_keras model with the same weights.

    Args:
      model: a built Keras 3 model made of built-in layers.

    Returns:
      A tf_keras ``Model`` computing the same function.

    Raises:
      ValueError: when the model is subclassed, uses layers tf_keras does not
        have, or cannot be rebuilt; the message says how to convert it by hand.
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
    config = json.loads(model.to_json())["config"]
    config = _translate(config)
    config["layers"] = [_translate_layer(layer) for layer in config["layers"]]
    config["input_layers"] = _io_refs(config["input_layers"])
    config["output_layers"] = _io_refs(config["output_layers"])
    unknown = sorted(
        {l["class_name"] for l in config["layers"] if not hasattr(keras.layers, l["class_name"])}
    )
    if unknown:
        raise ValueError(
            f"Keras 3 model {model.name!r} uses layers tf_keras does not have: {unknown}; "
            f"{_HOW_TO_CONVERT}"
        )
    try:
        rebuilt = keras.Model.from_config(config)
        rebuilt.set_weights([w.numpy() if hasattr(w, "numpy") else w for w in model.get_weights()])
    except Exception as err:  # pylint: disable=broad-except
        raise ValueError(
            f"could not rebuild Keras 3 model {model.name!r} as tf_keras ({err}); {_HOW_TO_CONVERT}"
        ) from err
    return rebuilt
