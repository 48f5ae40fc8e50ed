"""DualPrecisionScheme and apply(): bit assignment, activations, training, bad input."""

import subprocess
import sys

import numpy as np
import pytest

import tfq_pareto
from tfq_pareto import (
    ConvQuantizeConfig,
    DenseQuantizeConfig,
    DepthwiseConvQuantizeConfig,
    DualPrecisionScheme,
    keras,
)
from tfq_pareto import graph
from tfq_pareto.backend import tf, tfmot

from conftest import build_mobilenet_like


def _weight_configs(qat):
    """{inner layer name: quantize_config} for every conv/dense wrapper."""
    configs = {}
    for layer in qat.layers:
        config = getattr(layer, "quantize_config", None)
        if isinstance(config, (ConvQuantizeConfig, DepthwiseConvQuantizeConfig, DenseQuantizeConfig)):
            configs[layer.layer.name] = config
    return configs


def test_scheme_assigns_dw_conv_and_first_last_bits(mobilenet_like):
    qat = tfq_pareto.apply(mobilenet_like, conv_bits=1, dw_bits=4, first_last_bits=8, act_bits=8)
    configs = _weight_configs(qat)
    assert configs["stem"].num_bits == 8  # first layer
    assert configs["logits"].num_bits == 8  # last layer
    assert configs["expand"].num_bits == 1
    assert configs["project"].num_bits == 1
    assert configs["hidden"].num_bits == 1
    assert configs["dw"].num_bits == 4
    assert isinstance(configs["dw"], DepthwiseConvQuantizeConfig)
    # The separable conv is split: its depthwise half gets dw_bits, its 1x1 half conv_bits.
    depthwise = [c for n, c in configs.items() if isinstance(c, DepthwiseConvQuantizeConfig)]
    pointwise = [c for n, c in configs.items() if isinstance(c, ConvQuantizeConfig)]
    assert len(depthwise) == 2 and all(c.num_bits == 4 for c in depthwise)
    assert len(pointwise) == 4
    assert sorted(c.num_bits for c in pointwise) == [1, 1, 1, 8]


@pytest.mark.parametrize("conv_bits,dw_bits", [(2, 8), (4, 1), (8, 2)])
def test_scheme_other_pairs(mobilenet_like, conv_bits, dw_bits):
    qat = tfq_pareto.apply(mobilenet_like, conv_bits=conv_bits, dw_bits=dw_bits)
    configs = _weight_configs(qat)
    assert configs["dw"].num_bits == dw_bits
    assert configs["expand"].num_bits == conv_bits
    assert configs["stem"].num_bits == 8


def test_first_last_bits_none_gives_everyone_their_kind(mobilenet_like):
    qat = tfq_pareto.apply(mobilenet_like, conv_bits=2, dw_bits=4, first_last_bits=None)
    configs = _weight_configs(qat)
    assert configs["stem"].num_bits == 2 and configs["logits"].num_bits == 2


def test_quantized_weights_have_the_assigned_levels(mobilenet_like):
    qat = tfq_pareto.apply(mobilenet_like, conv_bits=1, dw_bits=2)
    for layer in qat.layers:
        config = getattr(layer, "quantize_config", None)
        if not isinstance(config, (ConvQuantizeConfig, DepthwiseConvQuantizeConfig, DenseQuantizeConfig)):
            continue
        kernel = [w for w in layer.trainable_weights if "kernel" in w.name][0]
        q = config.weight_quantizer(kernel, training=False, weights={}).numpy()
        if isinstance(config, DepthwiseConvQuantizeConfig):
            rows = q.reshape(-1, q.shape[-2] * q.shape[-1]).T
        else:
            rows = q.reshape(-1, q.shape[-1]).T
        limit = {1: 2, 2: 3}.get(config.num_bits, 2**config.num_bits - 1)
        assert max(len(np.unique(r)) for r in rows) <= limit


def _output_levels(qat, layer_name, x):
    probe = keras.Model(qat.input, qat.get_layer(layer_name).output)
    return len(np.unique(probe(x, training=False).numpy()))


@pytest.mark.parametrize("act_bits,at_most", [(4, 16), (2, 4)])
def test_low_bit_activations_reach_the_fake_quant_that_runs(
    plain_cnn, act_bits, at_most
):
    # A wide input range so that activations spread over the whole +-6 initial range.
    x = np.random.default_rng(0).uniform(0, 50, size=(16, 8, 8, 1)).astype("float32")
    qat = tfq_pareto.apply(plain_cnn, conv_bits=1, act_bits=act_bits)
    qat(x, training=True)  # let the moving averages see data once
    # Conv -> BN -> ReLU: the ReLU's output quantizer is the one that runs.
    for name in ("quant_relu1", "quant_relu2"):
        assert _output_levels(qat, name, x) <= at_most
    reference = tfq_pareto.apply(plain_cnn, conv_bits=1, act_bits=8)
    reference(x, training=True)
    assert _output_levels(reference, "quant_relu2", x) > 16  # 8 bits really differs


def test_4bit_activations_on_bn_add_and_relu6(mobilenet_like, images16):
    qat = tfq_pareto.apply(mobilenet_like, conv_bits=1, dw_bits=4, act_bits=4)
    qat(images16, training=True)
    for name in ("quant_stem_relu", "quant_expand_relu", "quant_dw_relu", "quant_project_bn", "quant_add"):
        assert _output_levels(qat, name, images16) <= 16, name


def test_input_and_logits_stay_8bit(plain_cnn):
    qat = tfq_pareto.apply(plain_cnn, conv_bits=1, act_bits=4)
    assert _weight_configs(qat)["logits"].act_bits == 8
    quantize_layer = [l for l in qat.layers if type(l).__name__ == "QuantizeLayer"]
    assert quantize_layer[0].quantizer.num_bits == 8


def test_conv_bn_keeps_bn_unfolded_and_unquantized_between(plain_cnn):
    qat = tfq_pareto.apply(plain_cnn, conv_bits=1, act_bits=8)
    bn = qat.get_layer("quant_bn1")
    assert isinstance(bn.layer, keras.layers.BatchNormalization)
    conv = qat.get_layer("quant_conv1")
    # tfmot's Conv+BN transform: no fake-quant between the conv and its BN.
    assert "NoOp" in type(conv.layer.activation.activation).__name__


def test_apply_leaves_the_float_model_untouched(plain_cnn):
    before = [w.copy() for w in plain_cnn.get_weights()]
    tfq_pareto.apply(plain_cnn, conv_bits=1)
    for a, b in zip(before, plain_cnn.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_dw_bits_none_is_accepted_without_depthwise(plain_cnn):
    qat = tfq_pareto.apply(plain_cnn, conv_bits=2, dw_bits=None)
    assert _weight_configs(qat)["conv2"].num_bits == 2


def test_dw_bits_none_with_depthwise_is_refused(mobilenet_like):
    with pytest.raises(ValueError, match="dw_bits is None"):
        tfq_pareto.apply(mobilenet_like, conv_bits=1, dw_bits=None)


def test_scheme_works_with_tfmot_quantize_apply(plain_cnn):
    with tfq_pareto.quantize_scope():
        annotated = tfmot.quantization.keras.quantize_annotate_model(plain_cnn)
        qat = tfmot.quantization.keras.quantize_apply(annotated, DualPrecisionScheme(2, None))
    assert _weight_configs(qat)["conv2"].num_bits == 2
    assert _weight_configs(qat)["conv1"].num_bits == 8


def test_scheme_config_round_trip():
    scheme = DualPrecisionScheme(1, 4, first_last_bits=8, act_bits=4, ternary_scale="twn")
    assert DualPrecisionScheme.from_config(scheme.get_config()) == scheme
    assert DualPrecisionScheme(1, 4) != DualPrecisionScheme(1, 8)


def test_configs_holding_lists_hash_by_value():
    # FanInPrecisionScheme's config holds its thresholds as a list of lists.
    a = tfq_pareto.FanInPrecisionScheme(((10, 4), (64, 2)), default_bits=1)
    b = tfq_pareto.FanInPrecisionScheme([[10, 4], [64, 2]], default_bits=1)
    c = tfq_pareto.FanInPrecisionScheme(((10, 8),), default_bits=1)
    assert isinstance(a.get_config()["thresholds"], list)
    assert a == b and hash(a) == hash(b)
    assert len({a, b, c}) == 2


@pytest.mark.slow
def test_loss_falls_when_training():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images[..., None] / 16.0).astype("float32")
    y = digits.target
    model = tfq_pareto.apply(
        build_mobilenet_like(input_shape=(8, 8, 1)), conv_bits=1, dw_bits=4, act_bits=4
    )
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(x, y, batch_size=64, epochs=4, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert history["accuracy"][-1] > 0.3  # well above chance (0.1)


def test_a_few_fit_steps_reduce_the_loss(plain_cnn):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(64, 8, 8, 1)).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype("int64")
    model = tfq_pareto.apply(plain_cnn, conv_bits=1, act_bits=8)
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=5, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before


# ---- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,name,value",
    [
        ({"conv_bits": 0}, "conv_bits", "0"),
        ({"conv_bits": 9}, "conv_bits", "9"),
        ({"conv_bits": 1.5}, "conv_bits", "1.5"),
        ({"conv_bits": "4"}, "conv_bits", "'4'"),
        ({"conv_bits": True}, "conv_bits", "True"),
        ({"dw_bits": 16}, "dw_bits", "16"),
        ({"first_last_bits": 0}, "first_last_bits", "0"),
        ({"act_bits": 1}, "act_bits", "1"),
        ({"act_bits": 32}, "act_bits", "32"),
    ],
)
def test_bad_bits_raise_before_any_work(plain_cnn, kwargs, name, value):
    with pytest.raises(ValueError, match=rf"{name} must be .*received {value}"):
        tfq_pareto.apply(plain_cnn, **kwargs)


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    net = Net()
    net(np.zeros((1, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match="subclassed.*functional API"):
        tfq_pareto.apply(net)


def test_a_nested_functional_model_is_inlined_and_a_subclassed_one_refused(plain_cnn):
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(3, name="head")(plain_cnn(inputs))
    qat = tfq_pareto.apply(keras.Model(inputs, outputs))
    assert not any(isinstance(graph.unwrap(l), keras.Model) for l in qat.layers)
    assert {l.name for l in plain_cnn.layers if graph.is_weighted(l)} <= {
        graph.unwrap(l).name for l in qat.layers}

    class Inner(keras.Model):  # subclassed: no layer graph to inline
        def __init__(self):
            super().__init__(name="inner_sub")
            self.conv = keras.layers.Conv2D(2, 3)

        def call(self, x):  # pylint: disable=arguments-differ
            return self.conv(x)

    inner = Inner()
    x = keras.layers.Flatten()(inner(inputs))
    with pytest.raises(ValueError, match="nested models \\['inner_sub'\\]"):
        tfq_pareto.apply(keras.Model(inputs, keras.layers.Dense(3)(x)))


def test_unsupported_layer_is_named(plain_cnn):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Lambda(lambda t: t * t, name="my_square")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match="my_square \\(Lambda\\).*quantize_annotate_layer"):
        tfq_pareto.apply(model)


def test_not_a_model_is_refused():
    with pytest.raises(TypeError, match="Model"):
        tfq_pareto.apply("resnet")


def test_bad_scheme_is_refused(plain_cnn):
    with pytest.raises(TypeError, match="QuantizeScheme"):
        tfq_pareto.apply(plain_cnn, scheme="dual")


# ---- Keras 3 -----------------------------------------------------------------


def _keras3_model():
    import keras as keras3

    inputs = keras3.Input((8, 8, 3))
    x = keras3.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras3.layers.BatchNormalization()(x)
    x = keras3.layers.ReLU()(x)
    y = keras3.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras3.layers.Add()([x, y])
    x = keras3.layers.GlobalAveragePooling2D()(x)
    outputs = keras3.layers.Dense(5, kernel_regularizer=keras3.regularizers.L2(1e-4))(x)
    return keras3.Model(inputs, outputs)


def test_keras3_model_is_rebuilt_with_the_same_outputs():
    model3 = _keras3_model()
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    rebuilt = tfq_pareto.to_tf_keras(model3)
    assert isinstance(rebuilt, keras.Model)
    np.testing.assert_allclose(rebuilt(x).numpy(), np.asarray(model3(x)), atol=1e-5)
    assert rebuilt.layers[-1].kernel_regularizer is not None


def test_apply_accepts_a_keras3_model():
    qat = tfq_pareto.apply(_keras3_model(), conv_bits=1, dw_bits=4)
    assert isinstance(qat, keras.Model)
    assert sorted(c.num_bits for c in _weight_configs(qat).values()) == [4, 8, 8]


def test_keras3_subclassed_model_is_refused_with_advice():
    import keras as keras3

    class Net(keras3.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="tf_keras"):
        tfq_pareto.to_tf_keras(Net())


# ---- A Conv2D with one input channel per group is a depthwise conv ----------


def _channelwise_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", groups=8, name="channelwise")(x)  # C_in/g = 1
    x = keras.layers.Conv2D(8, 3, padding="same", groups=2, name="grouped")(x)  # C_in/g = 4
    x = keras.layers.Conv2D(8, 1, name="pointwise")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))


def test_a_conv_with_one_input_channel_per_group_gets_dw_bits():
    """Prop. 5.1 is about fan-in: groups == C_in gives K x K weights per filter, as depthwise."""
    qat = tfq_pareto.apply(_channelwise_model(), conv_bits=1, dw_bits=4)
    plan = tfq_pareto.plan.plan_of(qat)
    assert plan.get("channelwise").kind == "depthwise"
    assert plan.get("channelwise").weight_bits == 4
    assert plan.get("channelwise").fan_in == 9  # 1 x 3 x 3, by hand
    assert plan.get("grouped").kind == "conv" and plan.get("grouped").weight_bits == 1
    assert plan.get("grouped").fan_in == 36  # (8 / 2) x 3 x 3
    assert plan.get("pointwise").weight_bits == 1
    # The float model's size report counts it the same way.
    sizes = {r.name: r for r in tfq_pareto.layer_sizes(_channelwise_model(), conv_bits=1,
                                                       dw_bits=4)}
    assert sizes["channelwise"].bits == 4 and sizes["grouped"].bits == 1
    assert sizes["channelwise"].filters * sizes["channelwise"].fan_in == 8 * 9
    with pytest.raises(ValueError, match="channelwise.*dw_bits"):
        tfq_pareto.apply(_channelwise_model(), conv_bits=1, dw_bits=None)


def test_new_layer_names_skip_the_names_a_model_already_uses():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="dense_9999")(inputs)
    x = keras.layers.Conv2D(4, 3, name="sep_block")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(keras.layers.Flatten()(x)))
    graph.reserve_layer_names(model)
    fresh = keras.layers.Dense(1).name
    assert fresh not in {l.name for l in model.layers}
    assert fresh == "dense_10000"  # the counter moved past the highest number in use


_FRESH_SESSION_APPLY = """
import tfq_pareto
from tfq_pareto import keras
inputs = keras.Input((8, 8, 3))
x = keras.layers.Conv2D(8, 3, name="conv2d")(inputs)
x = keras.layers.SeparableConv2D(8, 3, padding="same", name="separable_conv2d")(x)
x = keras.layers.Conv2D(8, 1, name="conv2d_1")(x)
x = keras.layers.DepthwiseConv2D(3, name="depthwise_conv2d")(x)
x = keras.layers.GlobalAveragePooling2D()(x)
model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(x))
keras.backend.clear_session()  # as in a new process that loaded the model from a file
qat = tfq_pareto.apply(model, conv_bits=1, dw_bits=4)
names = [l.name for l in qat.layers]
assert len(names) == len(set(names)), names
print("applied", len(names))
"""


def test_apply_works_on_a_model_whose_names_tf_keras_would_hand_out_again():
    """tfmot splits the SeparableConv2D into new, automatically named layers; in a
    fresh session those names ("conv2d", "depthwise_conv2d") were the model's own,
    and the duplicate made tf_keras's from_config loop forever (Keras 3 Xception)."""
    done = subprocess.run([sys.executable, "-c", _FRESH_SESSION_APPLY], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "applied" in done.stdout
