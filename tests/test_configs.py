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
