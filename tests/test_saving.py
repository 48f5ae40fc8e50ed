"""Save -> load gives identical outputs; unsupported formats give a clear error."""

import os

import numpy as np
import pytest

import tfq_pareto
from tfq_pareto import keras


@pytest.fixture
def trained_qat(mobilenet_like, images16):
    qat = tfq_pareto.apply(mobilenet_like, conv_bits=1, dw_bits=2, act_bits=4)
    qat.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(images16, np.arange(8) % 10, epochs=1, verbose=0)  # moves weights and ranges
    return qat


@pytest.mark.parametrize("filename", ["model.h5",
                                      pytest.param("saved_model", marks=pytest.mark.slow)])
def test_save_load_same_outputs(tmp_path, trained_qat, images16, filename):
    path = os.path.join(tmp_path, filename)
    expected = trained_qat(images16, training=False).numpy()
    tfq_pareto.save_model(trained_qat, path)
    loaded = tfq_pareto.load_model(path)
    np.testing.assert_array_equal(loaded(images16, training=False).numpy(), expected)
    assert tfq_pareto.model_size(loaded) == tfq_pareto.model_size(trained_qat)


def test_keras_load_model_in_quantize_scope(tmp_path, trained_qat, images16):
    path = os.path.join(tmp_path, "model.h5")
    trained_qat.save(path)
    with tfq_pareto.quantize_scope():
        loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(
        loaded(images16, training=False).numpy(), trained_qat(images16, training=False).numpy()
    )


@pytest.mark.parametrize("filename", ["model.keras", "model.pb", "model.tflite"])
def test_unsupported_formats_are_refused_naming_the_supported(tmp_path, trained_qat, filename):
    path = os.path.join(tmp_path, filename)
    with pytest.raises(ValueError, match=r"supported: '\.h5'.*SavedModel"):
        tfq_pareto.save_model(trained_qat, path)
    assert not os.path.exists(path)
    with pytest.raises(ValueError, match="supported"):
        tfq_pareto.load_model(path)
