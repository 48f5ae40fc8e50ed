"""widen, width_for_size and align_widths."""

import numpy as np
import pytest

import tfq_pareto
from tfq_pareto import keras
from tfq_pareto.models import resnet_cifar

from conftest import build_mobilenet_like, build_plain_cnn


def test_widen_plain_cnn_quadruples_and_keeps_output(plain_cnn):
    wide = tfq_pareto.widen(plain_cnn, 2.0)
    assert wide.output_shape == plain_cnn.output_shape
    assert wide.get_layer("conv1").filters == 16 and wide.get_layer("conv2").filters == 32
    assert wide.get_layer("logits").units == 10
    # conv2 and the flattened dense input grow 4x / 2x; conv1 (1 input channel) 2x.
    assert 2.5 < wide.count_params() / plain_cnn.count_params() < 4.2
    narrow = tfq_pareto.widen(plain_cnn, 0.5)
    assert narrow.get_layer("conv2").filters == 8


def test_widen_resnet_equals_the_family_at_that_width():
    base = resnet_cifar(20, 1.0, 10)
    wide = tfq_pareto.widen(base, 2.0)
    assert wide.count_params() == resnet_cifar(20, 2.0, 10).count_params()
    y = wide(np.zeros((2, 32, 32, 3), "float32"))
    assert y.shape == (2, 10)


def test_widen_depthwise_follows_input_and_separable_scales(mobilenet_like):
    wide = tfq_pareto.widen(mobilenet_like, 1.5)
    assert wide.get_layer("expand").filters == 24
    assert wide.get_layer("dw").output_shape[-1] == 24  # follows its input
    assert wide.get_layer("project").filters == 12 and wide.get_layer("stem").filters == 12
    assert wide.get_layer("sep").filters == 18
    assert wide.get_layer("hidden").units == 24 and wide.get_layer("logits").units == 10
    wide(np.zeros((1, 16, 16, 3), "float32"))


def test_widen_tf_keras_application_with_concat_and_add():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), alpha=1.0)
    narrow = tfq_pareto.widen(model, 0.5)
    assert narrow.output_shape == model.output_shape
    assert narrow.count_params() < 0.5 * model.count_params()


def _se_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv")(inputs)
    s = keras.layers.GlobalAveragePooling2D(name="squeeze")(x)
    s = keras.layers.Dense(4, activation="relu", name="reduce")(s)
    s = keras.layers.Dense(16, activation="sigmoid", name="expand")(s)
    s = keras.layers.Reshape((1, 1, 16), name="se_reshape")(s)
    x = keras.layers.Multiply(name="excite")([x, s])
    y = keras.layers.Concatenate(name="cat")([x, keras.layers.Conv2D(8, 1, name="side")(x)])
    y = keras.layers.Flatten()(y)
    y = keras.layers.Dropout(0.1)(y)
    return keras.Model(inputs, keras.layers.Dense(5, name="out")(y))


def test_widen_squeeze_excitation_concat_flatten():
    wide = tfq_pareto.widen(_se_model(), 2.0)
    assert wide.get_layer("se_reshape").target_shape == (1, 1, 32)
    assert wide.get_layer("cat").output_shape[-1] == 48
    assert wide.output_shape == (None, 5)
    wide(np.zeros((1, 8, 8, 3), "float32"))


def test_widen_then_apply_then_fit(plain_cnn):
    wide = tfq_pareto.widen(plain_cnn, 2.0)
    qat = tfq_pareto.apply(wide, conv_bits=1)
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")
    history = qat.fit(x, np.arange(16) % 10, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_widen_refuses_layers_it_cannot_scale():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Lambda(lambda t: t * 2, name="double")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match=r"double \(Lambda\)"):
        tfq_pareto.widen(model, 2.0)
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Reshape((-1, 2), name="odd_reshape")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match=r"odd_reshape \(Reshape to \(-1, 2\)"):
        tfq_pareto.widen(model, 2.0)


def test_widen_keep_first_last_with_identity_shortcut_is_refused_naming_the_add():
    with pytest.raises(ValueError, match="stage1_block1_add"):
        tfq_pareto.widen(resnet_cifar(20, 1.0, 10), 2.0, keep_first_last=True)


def test_widen_keep_first_last_keeps_the_stem(plain_cnn):
    wide = tfq_pareto.widen(plain_cnn, 2.0, keep_first_last=True)
    assert wide.get_layer("conv1").filters == 8 and wide.get_layer("conv2").filters == 32


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "2", True])
def test_widen_bad_width(plain_cnn, bad):
    with pytest.raises(ValueError, match="width_multiplier must be"):
        tfq_pareto.widen(plain_cnn, bad)


def _builder(width):
    return tfq_pareto.widen(build_mobilenet_like(), width)


@pytest.mark.parametrize("conv_bits", [1, 2, pytest.param(4, marks=pytest.mark.slow),
                                       pytest.param(8, marks=pytest.mark.slow)])
def test_width_for_size_hits_random_reachable_targets(conv_bits):
    rng = np.random.default_rng(conv_bits)
    for width in rng.uniform(0.5, 4.0, size=2):
        target = tfq_pareto.model_size(_builder(width), conv_bits=conv_bits, dw_bits=4)
        found = tfq_pareto.width_for_size(_builder, target, conv_bits=conv_bits, dw_bits=4)
        size = tfq_pareto.model_size(_builder(found), conv_bits=conv_bits, dw_bits=4)
        assert abs(size - target) <= 0.01 * target


@pytest.mark.slow  # whole-model work: ~20 s of the fast suite
def test_width_for_size_refuses_unreachable_targets():
    with pytest.raises(ValueError, match="outside what widths"):
        tfq_pareto.width_for_size(_builder, 10, conv_bits=1, dw_bits=4)
    with pytest.raises(ValueError, match="outside what widths"):
        tfq_pareto.width_for_size(_builder, 1e12, conv_bits=1, dw_bits=4, max_width=4)
    # Channel counts are integers: a target between two consecutive sizes is unreachable.
    def size(width):
        return tfq_pareto.model_size(_builder(width), conv_bits=1, dw_bits=4)

    low = size(1.0)
    width = 1.0
    while size(width) == low:
        width += 0.01
    high = size(width)
    target = (low + high) / 2
    with pytest.raises(ValueError, match=f"nearest reachable sizes are {low:,} bits .* and {high:,} bits"):
        tfq_pareto.width_for_size(_builder, target, conv_bits=1, dw_bits=4,
                                  tolerance=(high - low) / (4 * target))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"target_bits": 0}, "target_bits"), ({"target_bits": 1e4, "tolerance": 0}, "tolerance")],
)
def test_width_for_size_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tfq_pareto.width_for_size(_builder, conv_bits=1, **kwargs)


@pytest.mark.slow  # whole-model work: ~20 s of the fast suite
def test_align_widths_to_the_4bit_resnet20():
    builder = lambda w: resnet_cifar(20, w, 10)  # noqa: E731
    widths = tfq_pareto.align_widths(builder, [1, 2, 4], reference_conv_bits=4)
    target = widths.pop("target_bits")
    assert target == tfq_pareto.model_size(builder(1.0), conv_bits=4)
    assert widths[4] == pytest.approx(1.0, abs=0.02)
    assert widths[1] > widths[2] > widths[4]
    assert widths[1] == pytest.approx(2.0, rel=0.1)  # conv weights grow with width^2
    for bits, width in widths.items():
        size = tfq_pareto.model_size(builder(width), conv_bits=bits)
        assert abs(size - target) <= 0.01 * target


def test_align_widths_with_dual_precision_pairs():
    widths = tfq_pareto.align_widths(_builder, [(1, 4), (4, 8)], reference_conv_bits=8,
                                     reference_dw_bits=8)
    assert widths[(1, 4)] > widths[(4, 8)] > 1.0
