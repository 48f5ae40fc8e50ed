"""Activation ranges start from the data: every fake-quant range after one training step.

The expected maxima come from an independent computation: the float model (same
weights, BatchNorm in training mode) run on the same batch, its layer outputs read
directly; not from the quantizers under test.
"""

import numpy as np
import pytest

import tfq_pareto
from tflite_export import twin
from tfq_pareto import keras
from tfq_pareto.models import resnet_cifar

from conftest import build_mobilenet_like


def _ranges(model):
    """{(layer name, variable prefix): (min, max)} of every activation range variable."""
    values = {}
    for layer in model.layers:
        for weight in layer.weights:
            short = weight.name.split("/")[-1]
            if short.endswith("_max:0"):
                prefix = short[: -len("_max:0")]
                low = [w for w in layer.weights if w.name.split("/")[-1] == f"{prefix}_min:0"][0]
                values[(layer.name, prefix)] = (float(low.numpy()), float(weight.numpy()))
    return values


@pytest.mark.parametrize("build", [
    pytest.param(lambda: resnet_cifar(20, 0.25, 10, input_shape=(16, 16, 3)), id="resnet20",
                 marks=pytest.mark.slow),
    pytest.param(lambda: build_mobilenet_like(10, (16, 16, 3), separable=False),
                 id="inverted_residual"),
])
def test_every_range_is_the_first_batch_range_after_one_step(build, tmp_path):
    keras.utils.set_random_seed(0)
    float_model = build()
    qat = tfq_pareto.apply(float_model, conv_bits=8, dw_bits=8, act_bits=8)
    x = np.random.default_rng(0).uniform(0.0, 0.5, size=(32, 16, 16, 3)).astype("float32")
    # lr 0: the step moves only the ranges and BN statistics, not the weights.
    qat.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(True))
    qat.fit(x, np.zeros(32, "int64"), batch_size=32, epochs=1, verbose=0)

    # Independent: the float layers' outputs on the same batch, BN on batch statistics.
    probe = keras.Model(float_model.inputs, [l.output for l in float_model.layers[1:]])
    outputs = dict(zip([l.name for l in float_model.layers[1:]], probe(x, training=True)))
    ranges = _ranges(qat)
    assert len(ranges) >= 9
    checked = 0
    for (layer_name, _), (low, high) in ranges.items():
        if layer_name.startswith("quantize_layer"):
            true_max = float(x.max())
        else:
            true_max = float(np.max(outputs[layer_name[len("quant_"):]]))
        assert high == pytest.approx(true_max, rel=0.10), layer_name
        assert high < 5.5 or true_max > 5.0, layer_name  # tfmot's start (6) would fail here
        checked += 1
    assert checked == len(ranges)

    # Saving and loading keep every range; the export reads the same values.
    path = str(tmp_path / "qat.h5")
    tfq_pareto.save_model(qat, path)
    restored = tfq_pareto.load_model(path, compile=False)
    assert _ranges(restored) == ranges
    exported = twin.activation_ranges(restored)
    for (layer_name, _), (low, high) in ranges.items():
        if layer_name in exported:
            assert exported[layer_name] == pytest.approx((low, high))
    assert len(exported) >= len(ranges) // 2
    np.testing.assert_array_equal(qat.predict(x, verbose=0), restored.predict(x, verbose=0))


def test_ranges_before_any_training_step_are_tfmot_defaults():
    qat = tfq_pareto.apply(resnet_cifar(20, 0.25, 10, input_shape=(8, 8, 3)), conv_bits=1,
                           act_bits=4)
    for (layer_name, _), (low, high) in _ranges(qat).items():
        assert high == 6.0 and low in (0.0, -6.0), layer_name
