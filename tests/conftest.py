"""Shared fixtures: small seeded models with every layer type the scheme handles."""

import numpy as np
import pytest

from tfq_pareto import keras
from tfq_pareto.backend import tf


# The longest tests (5-15 minutes of one worker each in CI; every parameter of a
# parametrized one): they start first.
_LONGEST = ("tests/test_readme.py::test_readme_shell_examples_of_the_cli_run",
            "tests/test_fit_budget.py::test_fit_budget_trains_what_fits_and_certifies_the_pick")


def pytest_configure(config):
    """Under xdist (``-n 2``), hand out tests one at a time (``--maxschedchunk 1``) unless
    the command line says otherwise; without xdist this does nothing."""
    if config.pluginmanager.hasplugin("xdist") and config.getoption("maxschedchunk",
                                                                    None) is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    """Longest first: the known longest tests, then the other ``slow`` ones, then the rest.

    :func:`pytest_configure` has xdist hand out tests one at a time (``--dist
    load --maxschedchunk 1``: each worker holds its current test and one more), so
    this order is the order in which the workers take them: the long tests start
    first and the short ones fill in at the end, instead of one worker finishing
    a 10-minute test alone. The first worker's two tests are positions 0 and 1,
    the second's 2 and 3, so a short slow test goes to position 1 and the long
    ones come first otherwise. The order is deterministic, as xdist requires of
    every worker's collection.
    """

    def rank(item):
        if item.nodeid.split("[")[0] in _LONGEST:
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)  # stable: file order within each rank
    longest = sum(rank(i) == 0 for i in items)
    if longest >= 2 and len(items) > 2:  # [A, B, x, ...] -> [A, x, B, ...]
        items.insert(1, items.pop(longest))


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    tf.random.set_seed(0)
    keras.utils.set_random_seed(0)


def trained_plain_cnn_qat(samples=64):
    """:func:`build_plain_cnn` (4 classes) at 2 bits, first and last layer 8, trained one
    epoch on seeded random images: ``(qat_model, x)`` for the exporter's stage tests."""
    from tfq_pareto import apply  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(0)
    model = apply(build_plain_cnn(num_classes=4), conv_bits=2, first_last_bits=8, act_bits=8)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (samples, 8, 8, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) * 8).astype(int) % 4
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    return model, x


def build_mobilenet_like(num_classes=10, input_shape=(16, 16, 3), separable=True):
    """Stem conv -> inverted residual (1x1, depthwise, 1x1 + add) -> separable conv -> dense.

    Layer names are fixed so tests can refer to them. ``separable=False`` puts a plain
    strided 3x3 conv ("sep") where the separable conv was: every layer then keeps its
    name through ``apply``.
    """
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    y = keras.layers.Conv2D(16, 1, use_bias=False, name="expand")(x)
    y = keras.layers.BatchNormalization(name="expand_bn")(y)
    y = keras.layers.ReLU(6.0, name="expand_relu")(y)
    y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(y)
    y = keras.layers.BatchNormalization(name="dw_bn")(y)
    y = keras.layers.ReLU(6.0, name="dw_relu")(y)
    y = keras.layers.Conv2D(8, 1, use_bias=False, name="project")(y)
    y = keras.layers.BatchNormalization(name="project_bn")(y)
    x = keras.layers.Add(name="add")([x, y])
    conv = keras.layers.SeparableConv2D if separable else keras.layers.Conv2D
    x = conv(12, 3, strides=2, padding="same", name="sep")(x)
    x = keras.layers.ReLU(name="sep_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="mobilenet_like")


def build_plain_cnn(num_classes=10, input_shape=(8, 8, 1)):
    """Conv -> BN -> ReLU -> conv -> BN -> ReLU -> flatten -> dense, no depthwise layers."""
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="plain_cnn")


@pytest.fixture
def mobilenet_like():
    return build_mobilenet_like()


@pytest.fixture
def plain_cnn():
    return build_plain_cnn()


@pytest.fixture
def images16():
    return np.random.default_rng(0).uniform(0, 1, size=(8, 16, 16, 3)).astype("float32")


def assert_qat_near_float(qat, model, x, rel=0.1):
    """8-bit QAT ``qat`` of ``model`` is within ``rel`` of the float output's maximum on ``x``.

    One step at learning rate 0 first sets every activation range from ``x``. Then
    every rewritten layer (``ScalarAffine``, ``LayerScale``) must carry an output
    fake-quant: the int8 rounding of the ADD/MUL it becomes in the file.
    """
    from tfq_pareto import rewrite  # pylint: disable=import-outside-toplevel

    qat.compile(keras.optimizers.SGD(0.0), "mse")
    qat.fit(x, np.zeros((len(x),) + tuple(qat.output_shape[1:])), batch_size=len(x), epochs=1,
            verbose=0)
    float_out = np.asarray(model(x))
    quantized = np.asarray(qat(x, training=False))
    assert np.abs(quantized - float_out).max() <= rel * np.abs(float_out).max()
    for layer in qat.layers:
        inner = getattr(layer, "layer", None)
        if isinstance(inner, rewrite.ScalarAffine) or type(inner).__name__ == "LayerScale":
            assert layer.quantize_config.get_output_quantizers(inner)
