"""Rescaling / Normalization at the input: float ahead of the input quantizer, folded in export."""

import numpy as np
import pytest

import tflite_export
import tfq_pareto
from tflite_export import convert, runtime
from tfq_pareto import keras, preprocessing

MEAN, VARIANCE = [0.5, 0.4, 0.3], [0.04, 0.05, 0.06]


def _body(x, num_classes=4):
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.ReLU(name="dw_relu")(x)
    x = keras.layers.Conv2D(8, 1, name="project")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


def _with_preprocessing(shape=(8, 8, 3)):
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = keras.layers.Normalization(axis=-1, mean=MEAN, variance=VARIANCE, name="norm")(x)
    return keras.Model(inputs, _body(x), name="with_preprocessing")


def _without_preprocessing(model):
    """The same network, weights shared, fed the preprocessed image directly."""
    inputs = keras.Input(model.input_shape[1:], name="normalised")
    x = inputs
    for layer in model.layers[3:]:  # input, rescale, norm; then a chain of one-input layers
        x = layer(x)
    return keras.Model(inputs, x, name="without_preprocessing")


def _raw(n=32, shape=(8, 8, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype("float32")


def test_the_leading_chain_is_found_and_a_later_one_is_refused():
    model = _with_preprocessing()
    assert [l.name for l in preprocessing.leading_preprocessing(model)] == ["rescale", "norm"]
    plain = _without_preprocessing(model)
    assert preprocessing.leading_preprocessing(plain) == []
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Rescaling(0.5, name="late_rescale")(x)
    late = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    assert preprocessing.leading_preprocessing(late) == []
    with pytest.raises(ValueError, match=r"late_rescale \(Rescaling\)"):
        tfq_pareto.apply(late, conv_bits=4)


def test_affine_is_what_the_keras_layers_compute():
    model = _with_preprocessing()
    chain = preprocessing.leading_preprocessing(model)
    a, b = preprocessing.affine(chain, 3)
    x = _raw()
    y = x
    for layer in chain:  # the layers themselves, not the module's maths
        y = np.asarray(layer(y))
    np.testing.assert_allclose(a * x + b, y, rtol=1e-5, atol=1e-5)
    # By hand: (x / 255 - mean) / sqrt(variance).
    np.testing.assert_allclose(a, 1 / (255 * np.sqrt(VARIANCE)), rtol=1e-6)
    np.testing.assert_allclose(b, -np.array(MEAN) / np.sqrt(VARIANCE), rtol=1e-6)


def test_apply_runs_the_preprocessing_in_float_ahead_of_the_input_quantizer():
    model = _with_preprocessing()
    qat = tfq_pareto.apply(model, conv_bits=8, dw_bits=8, act_bits=8)
    names = [l.name for l in qat.layers]
    assert names[1:3] == ["rescale", "norm"]
    assert not any(hasattr(qat.layers[i], "quantize_config") for i in (1, 2))  # float
    assert type(qat.layers[3]).__name__ == "QuantizeLayer"  # the input quantizer, after them
    assert tfq_pareto.plan_of(qat).get(names[3]).kind == "input"
    # The quantized network sees exactly what a QAT model without the layers sees
    # when it is fed the preprocessed image.
    plain_qat = tfq_pareto.apply(_without_preprocessing(model), conv_bits=8, dw_bits=8,
                                 act_bits=8)
    x = _raw()
    y = preprocessing.preprocess(qat, x)
    np.testing.assert_allclose(np.asarray(qat(x, training=False)),
                               np.asarray(plain_qat(y, training=False)), rtol=1e-5, atol=1e-5)
    # And 8-bit QAT stays near the float model once one step (learning rate 0: the
    # weights stay) has set the activation ranges from the data.
    qat.compile(keras.optimizers.SGD(0.0), "mse")
    qat.fit(x, np.zeros((len(x), 4)), batch_size=len(x), epochs=1, verbose=0)
    float_out = np.asarray(model(x))
    assert np.abs(np.asarray(qat(x, training=False)) - float_out).max() <= \
        0.1 * np.abs(float_out).max()
    assert tfq_pareto.model_size(qat) == tfq_pareto.model_size(plain_qat)


def test_a_sequential_model_with_rescaling_first_is_quantized():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 127.5, -1.0),
                              keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    qat = tfq_pareto.apply(model, conv_bits=1)
    assert type(qat.layers[2]).__name__ == "QuantizeLayer"
    assert qat(_raw(2), training=False).shape == (2, 2)


def test_saved_and_loaded_keeps_the_float_preprocessing(tmp_path):
    qat = tfq_pareto.apply(_with_preprocessing(), conv_bits=1, dw_bits=4)
    x = _raw(8)
    path = str(tmp_path / "model.h5")
    tfq_pareto.save_model(qat, path)
    loaded = tfq_pareto.load_model(path)
    assert [l.name for l in preprocessing.leading_preprocessing(loaded)] == ["rescale", "norm"]
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)),
                               np.asarray(qat(x, training=False)), rtol=1e-5, atol=1e-5)


def test_export_folds_the_preprocessing_into_the_input_quantization(tmp_path):
    keras.utils.set_random_seed(0)
    qat = tfq_pareto.apply(_with_preprocessing(), conv_bits=1, dw_bits=4, act_bits=8)
    x = _raw(96)
    y = (x.mean(axis=(1, 2, 3)) > x.mean()).astype(int)
    qat.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=2, batch_size=32, verbose=0)
    result = tflite_export.export(qat, x, str(tmp_path), validation_data=(x, y))
    manifest = result.manifest
    # Not in the file: no elementwise op for them, the input is the normalised image.
    assert not {"MUL", "SUB", "ADD", "DIV"} & set(manifest["ops"])
    assert [p["class"] for p in manifest["input"]["preprocessing"]] == ["Rescaling",
                                                                       "Normalization"]
    assert manifest["verification"]["keras_max_output_steps"] <= 8  # export's own tolerance
    assert manifest["accuracy"]["packed_tflm"] == manifest["accuracy"]["int8_litert"]
    # What the firmware does with a raw pixel, from the manifest alone: q = round(x / s + z).
    raw = manifest["input"]["raw_input_quantization"]
    q = np.clip(np.round(x / np.array(raw["scale"]) + np.array(raw["zero_point"])), -128, 127)
    # ... is the int8 input of the preprocessed image (up to float rounding at a tie).
    details, out_details = runtime.io_details(open(result.files["int8"], "rb").read())
    expected = convert.quantize_inputs(preprocessing.preprocess(qat, x), details)
    assert np.abs(q - expected).max() <= 1 and np.mean(q == expected) > 0.999
    # ... and the packed file run on it gives the Keras model's outputs within tolerance.
    packed = open(result.files["packed"], "rb").read()
    out = runtime.micro_outputs(packed, q.astype("int8")[:16],
                                manifest["totals"]["tflm_arena_bytes_packed"])
    keras_out = np.asarray(qat(x[:16], training=False))
    scale, zero_point = out_details["quantization"]
    steps = np.abs((out.astype("float32") - zero_point) * scale - keras_out) / scale
    assert steps.max() <= 8


def test_a_keras3_model_with_preprocessing_is_quantized_the_same_way():
    import keras as keras3  # pylint: disable=import-outside-toplevel

    inputs = keras3.Input((8, 8, 3))
    x = keras3.layers.Rescaling(1 / 255.0)(inputs)
    x = keras3.layers.Normalization(mean=MEAN, variance=VARIANCE)(x)
    x = keras3.layers.Conv2D(4, 3)(x)
    outputs = keras3.layers.Dense(2)(keras3.layers.GlobalAveragePooling2D()(x))
    model = keras3.Model(inputs, outputs)
    qat = tfq_pareto.apply(model, conv_bits=1)
    chain = preprocessing.leading_preprocessing(qat)
    assert [type(l).__name__ for l in chain] == ["Rescaling", "Normalization"]
    assert type(qat.layers[3]).__name__ == "QuantizeLayer"
    x = _raw(4)
    # The float layers compute what Keras 3's did.
    np.testing.assert_allclose(preprocessing.preprocess(qat, x),
                               np.asarray(keras3.Model(inputs, model.layers[2].output)(x)),
                               rtol=1e-5, atol=1e-5)
