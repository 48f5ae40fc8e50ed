"""Model size, Eq. (6), and the per-layer summary."""

import pytest

import tfq_pareto
from tfq_pareto import keras
from tfq_pareto.models import resnet_cifar

# Hand-computed Eq. (6) terms of conftest.build_mobilenet_like: (filters, fan-in).
MOBILENET_LIKE = {
    "stem": (8, 3 * 3 * 3),  # first layer
    "expand": (16, 8),
    "dw": (16, 3 * 3),  # depthwise: C_in = 1 per filter
    "project": (8, 16),
    "sep/depthwise": (8, 3 * 3),
    "sep/pointwise": (12, 8),
    "hidden": (16, 12),  # dense: K = 1
    "logits": (10, 16),  # last layer
}


def _hand_size(conv_bits, dw_bits, first_last_bits):
    bits = {
        "stem": first_last_bits,
        "logits": first_last_bits,
        "dw": dw_bits,
        "sep/depthwise": dw_bits,
    }
    return sum(f * d * bits.get(name, conv_bits) for name, (f, d) in MOBILENET_LIKE.items())


@pytest.mark.parametrize("conv_bits,dw_bits", [(1, 4), (2, 8), (8, 8), (4, 1)])
def test_model_size_matches_hand_computed_eq6(mobilenet_like, conv_bits, dw_bits):
    expected = _hand_size(conv_bits, dw_bits, 8)
    assert tfq_pareto.model_size(mobilenet_like, conv_bits=conv_bits, dw_bits=dw_bits) == expected
    qat = tfq_pareto.apply(mobilenet_like, conv_bits=conv_bits, dw_bits=dw_bits)
    assert tfq_pareto.model_size(qat) == expected  # bits read from the QAT model


def test_hand_computed_value(mobilenet_like):
    # 8*27*8 + 16*8 + 16*9*4 + 8*16 + 8*9*4 + 12*8 + 16*12 + 10*16*8
    assert tfq_pareto.model_size(mobilenet_like, conv_bits=1, dw_bits=4) == 4416


def test_float_model_without_bits_counts_float32(mobilenet_like):
    weights = sum(f * d for f, d in MOBILENET_LIKE.values())
    assert tfq_pareto.model_size(mobilenet_like) == 32 * weights


def test_dw_bits_default_to_conv_bits_and_first_last_none(mobilenet_like):
    assert tfq_pareto.model_size(mobilenet_like, conv_bits=4) == _hand_size(4, 4, 8)
    # first_last_bits=None: the stem and the logits get conv_bits like the rest.
    no_exception = tfq_pareto.model_size(mobilenet_like, conv_bits=2, dw_bits=4, first_last_bits=None)
    assert no_exception == _hand_size(2, 4, 2)
    assert no_exception < _hand_size(2, 4, 8)


def test_tfmot_default_8bit_model_counts_8_bits(plain_cnn):
    import tensorflow_model_optimization as tfmot

    qat = tfmot.quantization.keras.quantize_model(plain_cnn)
    assert tfq_pareto.model_size(qat) == tfq_pareto.model_size(plain_cnn, conv_bits=8)


def test_resnet20_size_at_1_bit():
    model = resnet_cifar(depth=20, num_classes=10)
    rows = tfq_pareto.layer_sizes(model, conv_bits=1)
    assert rows[0].name == "stem_conv" and rows[0].bits == 8
    assert rows[-1].name == "classifier" and rows[-1].bits == 8
    weights = sum(r.weights for r in rows)
    stem, head = 16 * 27, 10 * 64
    assert tfq_pareto.model_size(model, conv_bits=1) == 8 * (stem + head) + (weights - stem - head)


def test_summary_table_and_totals(mobilenet_like):
    printed = []
    result = tfq_pareto.summary(mobilenet_like, conv_bits=1, dw_bits=4, print_fn=printed.append)
    assert result.total_bits == 4416
    assert result.total_kib == pytest.approx(4416 / 8192)
    weights = sum(f * d for f, d in MOBILENET_LIKE.values())
    assert result.weights == weights
    assert result.float32_bits == 32 * weights and result.int8_bits == 8 * weights
    assert result.compression_ratio == pytest.approx(32 * weights / 4416)
    assert [r.name for r in result.layers] == list(MOBILENET_LIKE)
    assert sum(r.size_bits for r in result.layers) == result.total_bits
    text = printed[0]
    assert text == str(result)
    for name in MOBILENET_LIKE:
        assert name in text
    assert "4,416 bits" in text and "KiB" in text and "compression" in text
    data = result.as_dict()
    assert data["total_bits"] == 4416 and len(data["layers"]) == len(MOBILENET_LIKE)


def test_qat_model_rejects_given_bits(plain_cnn):
    qat = tfq_pareto.apply(plain_cnn, conv_bits=1)
    with pytest.raises(ValueError, match="already quantization-aware.*received 4"):
        tfq_pareto.model_size(qat, conv_bits=4)


@pytest.mark.parametrize("kwargs", [{"conv_bits": 0}, {"conv_bits": 1, "dw_bits": 12}, {"conv_bits": 2, "first_last_bits": 2.5}])
def test_bad_bits(plain_cnn, kwargs):
    with pytest.raises(ValueError, match="received"):
        tfq_pareto.model_size(plain_cnn, **kwargs)


def test_sequential_model():
    model = keras.Sequential(
        [keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 3), keras.layers.Flatten(), keras.layers.Dense(5)]
    )
    # conv: 3 filters of 18 (first, 8 bits); dense: 5 of 12 (last, 8 bits).
    assert tfq_pareto.model_size(model, conv_bits=1) == 8 * (3 * 18 + 5 * 12)
