"""QuantizeConfigs: serialization and equality."""

import pytest

from tfq_pareto import ConvQuantizeConfig, DenseQuantizeConfig, DepthwiseConvQuantizeConfig, keras

CONFIGS = (ConvQuantizeConfig, DepthwiseConvQuantizeConfig, DenseQuantizeConfig)


@pytest.mark.parametrize("cls", CONFIGS)
@pytest.mark.parametrize("num_bits,act_bits", [(1, 4), (2, 8), (8, None)])
def test_round_trip(cls, num_bits, act_bits):
    config = cls(num_bits, act_bits=act_bits, ternary_scale="twn")
    clone = cls.from_config(config.get_config())
    assert clone == config
    assert clone.weight_quantizer == config.weight_quantizer
    restored = keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(config))
    assert restored == config


def test_inequality():
    assert ConvQuantizeConfig(1) != ConvQuantizeConfig(2)
    assert ConvQuantizeConfig(1) != ConvQuantizeConfig(1, act_bits=4)
    assert ConvQuantizeConfig(1) != DenseQuantizeConfig(1)


def test_depthwise_config_quantizes_per_channel():
    assert DepthwiseConvQuantizeConfig(4).weight_quantizer.depthwise
    assert not ConvQuantizeConfig(4).weight_quantizer.depthwise


def test_config_applies_to_layer():
    layer = keras.layers.DepthwiseConv2D(3)
    layer.build((None, 8, 8, 4))
    config = DepthwiseConvQuantizeConfig(2, act_bits=4)
    ((weight, quantizer),) = config.get_weights_and_quantizers(layer)
    assert weight is layer.depthwise_kernel and quantizer.num_bits == 2
    assert config.get_activations_and_quantizers(layer)[0][1].num_bits == 4
    assert DepthwiseConvQuantizeConfig(2, act_bits=None).get_activations_and_quantizers(layer) == []


@pytest.mark.parametrize("bad", [{"num_bits": 0}, {"num_bits": 1, "act_bits": 1}, {"num_bits": 9}])
def test_bad_bits(bad):
    with pytest.raises(ValueError, match="received"):
        ConvQuantizeConfig(**bad)


def test_relu_config_round_trip_and_quantizer():
    from tfq_pareto import ActivationQuantizer, ReLUQuantizeConfig

    config = ReLUQuantizeConfig(4)
    assert ReLUQuantizeConfig.from_config(config.get_config()) == config != ReLUQuantizeConfig(8)
    restored = keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(config))
    assert restored == config
    layer = keras.layers.ReLU(6.0)
    assert config.get_output_quantizers(layer) == [ActivationQuantizer(4, non_negative=True)]
    assert config.get_weights_and_quantizers(layer) == config.get_activations_and_quantizers(layer) == []
    with pytest.raises(ValueError, match="received 1"):
        ReLUQuantizeConfig(1)


def test_relu_layers_get_the_non_negative_quantizer_others_do_not():
    import tfq_pareto
    from tfq_pareto import ActivationQuantizer, ReLUQuantizeConfig

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(6.0, name="relu6")(x)
    x = keras.layers.Conv2D(4, 3, name="c2")(x)
    x = keras.layers.Activation("relu", name="act_relu")(x)
    x = keras.layers.Conv2D(4, 3, name="c3")(x)
    x = keras.layers.LeakyReLU(0.1, name="leaky")(x)
    x = keras.layers.ReLU(negative_slope=0.2, name="relu_sloped")(x)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    qat = tfq_pareto.apply(keras.Model(inputs, outputs), conv_bits=2, dw_bits=None, act_bits=4)
    configs = {layer.layer.name: layer.quantize_config for layer in qat.layers
               if hasattr(layer, "quantize_config")}
    assert configs["relu6"] == configs["act_relu"] == ReLUQuantizeConfig(4)
    for name in ("leaky", "relu_sloped"):
        quantizers = configs[name].get_output_quantizers(None)
        assert quantizers and not any(isinstance(q, ActivationQuantizer) and q.non_negative
                                      for q in quantizers)
    minimums = {v.name: float(v) for v in qat.weights if v.name.endswith("output_min:0")}
    assert minimums["quant_relu6/output_min:0"] == 0.0
    assert minimums["quant_leaky/output_min:0"] == -6.0


@pytest.mark.parametrize("check,args,message", [
    ("check_int", ("batch_size", 0), "batch_size must be an int >= 1; received 0"),
    ("check_int", ("batch_size", True), "batch_size must be an int >= 1; received True"),
    ("check_int", ("batch_size", 2.0), "batch_size must be an int >= 1; received 2.0"),
    ("check_int", ("samples", -1, 0), "samples must be an int >= 0; received -1"),
    ("check_positive", ("width", 0), "width must be a number > 0; received 0"),
    ("check_positive", ("width", float("nan")), "width must be a number > 0; received nan"),
    ("check_positive", ("width", "1"), "width must be a number > 0; received '1'"),
    ("check_fraction", ("fraction", 1.5), "fraction must be a number in \\(0, 1\\]; received 1.5"),
])
def test_argument_checks_name_the_value_and_what_is_allowed(check, args, message):
    from tfq_pareto import checks

    with pytest.raises(ValueError, match=message):
        getattr(checks, check)(*args)


def test_argument_checks_return_what_they_accept():
    import numpy as np

    from tfq_pareto import checks

    assert checks.check_int("n", np.int64(3)) == 3 and type(checks.check_int("n", np.int64(3))) is int
    assert checks.check_int("n", 0, minimum=0) == 0
    assert checks.check_positive("w", 0.5) == 0.5
    assert checks.check_fraction("f", 1) == 1
    with pytest.raises(ValueError, match="a finite number > 0; received inf"):
        checks.check_positive("w", float("inf"), finite=True)
