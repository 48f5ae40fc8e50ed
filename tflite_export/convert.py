"""Representative data handling and the full-integer int8 TFLite conversion."""

import warnings

import numpy as np

from tfq_pareto import preprocessing
from tfq_pareto.backend import tf
from tflite_export.runtime import captured_stderr
from tflite_export.errors import ExportError

#: Calibration uses at most this many representative samples.
MAX_CALIBRATION_SAMPLES = 500


def _input_shape(model):
    if len(model.inputs) != 1:
        raise ExportError(
            f"model {model.name!r} has {len(model.inputs)} inputs; export supports one image input"
        )
    return tuple(int(d) for d in model.inputs[0].shape[1:])


def _first(element):
    if isinstance(element, dict):
        return next(iter(element.values()))
    if isinstance(element, (tuple, list)):
        return element[0]
    return element


def samples_array(representative_data, model=None, *, what="representative_data",
                  max_samples=MAX_CALIBRATION_SAMPLES, input_shape=None):
    """Representative inputs as one float32 array ``(n, *input_shape)``.

    Args:
      representative_data: a NumPy array of inputs ``(n, h, w, c)``; a
        ``tf.data.Dataset`` of inputs or ``(inputs, labels)``, batched or not;
        or what the TFLite converter takes: a callable returning (or an
        iterator over) lists ``[x]`` with ``x`` of shape ``(1, h, w, c)``.
      model: the model whose (single) input the samples feed.
      input_shape: the per-sample shape, when there is no ``model``.
      what: the argument's name, for error messages.
      max_samples: keep at most this many.

    Raises:
      ExportError: when the data is empty or its per-sample shape is not the
        model's input shape (both shapes named).
    """
    expected = _input_shape(model) if input_shape is None else tuple(int(d) for d in input_shape)
    target = (f"model {model.name!r} input {model.inputs[0].name.split(':')[0]!r}"
              if model is not None else "the model input")
    data = representative_data
    if isinstance(data, tf.data.Dataset):
        rows = []
        count = 0
        for element in data:
            x = np.asarray(_first(element))
            if x.ndim == len(expected):
                x = x[None]
            rows.append(x)
            count += len(x)
            if count >= max_samples:
                break
        data = np.concatenate(rows) if rows else np.zeros((0,) + expected, np.float32)
    elif callable(data) or (hasattr(data, "__next__") and not isinstance(data, np.ndarray)):
        iterator = data() if callable(data) else data
        rows = []
        for element in iterator:
            x = np.asarray(_first(element))
            if x.ndim == len(expected):
                x = x[None]
            rows.append(x)
            if sum(len(r) for r in rows) >= max_samples:
                break
        if not rows:
            raise ExportError(f"{what} yielded no samples")
        shapes = {r.shape[1:] for r in rows}
        if len(shapes) > 1:
            raise ExportError(f"{what} yields samples of different shapes {sorted(shapes)}")
        data = np.concatenate(rows)
    else:
        data = np.asarray(data)
    if data.dtype == object or not np.issubdtype(data.dtype, np.number):
        raise ExportError(f"{what} must hold numbers; received dtype {data.dtype}")
    if data.ndim == len(expected):
        data = data[None]
    if tuple(data.shape[1:]) != expected:
        raise ExportError(
            f"{what} has samples of shape {tuple(data.shape[1:])}, but {target} "
            f"expects {expected}; resize or "
            "reshape the data to the model's input"
        )
    if len(data) == 0:
        raise ExportError(f"{what} is empty; give at least one sample")
    data = data[:max_samples].astype(np.float32)
    if not np.all(np.isfinite(data)):
        raise ExportError(f"{what} holds NaN or inf; calibrate on finite inputs")
    return data


def labelled_arrays(validation_data, model, max_samples=10_000):
    """``(x, y)`` arrays from ``(x, y)`` or a Dataset of ``(x, y)`` (batched or not)."""
    expected = _input_shape(model)
    if isinstance(validation_data, tf.data.Dataset):
        xs, ys = [], []
        for x, y in validation_data:
            x, y = np.asarray(x), np.asarray(y)
            if x.ndim == len(expected):
                x, y = x[None], y[None]
            xs.append(x)
            ys.append(y)
            if sum(len(v) for v in xs) >= max_samples:
                break
        x, y = np.concatenate(xs), np.concatenate(ys)
    elif isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
        x, y = (np.asarray(v) for v in validation_data)
    else:
        raise ExportError(
            "validation_data must be (inputs, labels) arrays or a tf.data.Dataset of "
            f"(inputs, labels); received {type(validation_data).__name__}"
        )
    x = samples_array(x, model, what="validation_data inputs", max_samples=max_samples)
    y = np.asarray(y)[: len(x)]
    if y.ndim > 1 and y.shape[-1] > 1:  # one-hot
        y = np.argmax(y, axis=-1)
    y = y.reshape(-1).astype(np.int64)
    if len(y) != len(x):
        raise ExportError(f"validation_data has {len(x)} inputs but {len(y)} labels")
    return x, y


def _concrete_call(model):
    """``model``'s inference call (``training=False``) traced for its input, batch left open."""
    spec = tf.TensorSpec((None,) + _input_shape(model), model.inputs[0].dtype,
                         name=model.inputs[0].name.split(":")[0])
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)


def _converter(model, samples, frozen):
    if frozen:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([_concrete_call(model)])
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None]] for row in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter


def to_int8(model, samples, *, frozen=True):
    """Full-integer int8 TFLite bytes of a float model (per-channel weights, int8 I/O).

    The converter is given the model's traced inference function with its
    variables frozen (``from_concrete_functions``), not the Keras model:
    ``from_keras_model`` first saves the model as a SavedModel and loads it
    back, which serializes every layer's call: 13.0 s against 1.4 s frozen for
    a ResNet-20 twin (``benchmarks/results/convert_time.json``). The two files hold
    the same ops, weights and quantization and give the same outputs; they
    differ in tensor names (the input is named after the model's input layer)
    and in metadata. If the frozen conversion fails, the Keras path is tried
    before giving up.

    Args:
      model: a float tf_keras model (the float twin).
      samples: calibration inputs ``(n, *input_shape)``, float32.
      frozen: False converts through ``from_keras_model`` only.
    """
    error = None
    for frozen in ((True, False) if frozen else (False,)):
        try:
            # The converter's C++ side prints progress to fd 2 and warns that the
            # int8 input has no statistics (it gets them from the calibration).
            with warnings.catch_warnings(), captured_stderr():
                warnings.simplefilter("ignore")
                return bytes(_converter(model, samples, frozen).convert())
        except Exception as caught:  # the converter raises ConverterError and plain Exceptions
            error = caught
    lines = [l.strip() for l in str(error).splitlines() if "error:" in l] or \
        [l.strip() for l in str(error).splitlines() if l.strip()] or [repr(error)]
    reason = lines[0].split("error:", 1)[-1].strip()
    raise ExportError(
        f"the TFLite converter cannot make an int8 model of {model.name!r}: {reason[:400]}; "
        "replace the layer it names with one that has an int8 TFLite builtin op"
    ) from error


def model_inputs(samples, model):
    """Raw inputs -> what the int8 file's input holds (in float): ``samples`` after
    ``model``'s leading preprocessing layers, which the export leaves out of the
    file (:mod:`tfq_pareto.preprocessing`); ``samples`` unchanged without them
    or without a model."""
    if model is None or not preprocessing.leading_preprocessing(model):
        return samples
    return preprocessing.preprocess(model, samples)


def quantize_inputs(samples, details):
    """Float inputs -> the int8 values the model's input tensor expects."""
    scale, zero_point = details["quantization"]
    info = np.iinfo(details["dtype"])
    q = np.round(samples / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(details["dtype"])

