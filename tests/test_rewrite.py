"""Graph rewrites before quantizing: TF-op arithmetic, CustomScaleLayer, nested models, LayerScale."""

import re

import numpy as np
import pytest
import tensorflow as tf

import tflite_export
import tfq_pareto
from tfq_pareto import keras, rewrite

from conftest import assert_qat_near_float

SHAPE = (8, 8, 3)


def _images(n=16, seed=0):
    return np.random.default_rng(seed).random((n, *SHAPE)).astype("float32")


def _head(x, name="logits"):
    x = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    return keras.layers.Dense(4, name=name)(x)


def hard_swish_model():
    """MobileNetV3's hard-swish, as tf_keras.applications writes it: x * relu6(x + 3) * (1/6)."""
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    gate = keras.layers.ReLU(6.0, name="gate_relu6")(x + 3.0) * (1.0 / 6.0)
    x = keras.layers.Multiply(name="hard_swish")([x, gate])
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.ReLU(name="dw_relu")(x)
    return keras.Model(inputs, _head(x), name="hard_swish_net")


def regnet_model():
    """RegNetY's block: squeeze-and-excitation ``x * se`` and residual ``shortcut + x`` as TF ops."""
    inputs = keras.Input(SHAPE)
    shortcut = keras.layers.ReLU(name="stem_relu")(
        keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs))
    x = keras.layers.Conv2D(8, 3, padding="same", groups=2, name="grouped")(shortcut)
    x = keras.layers.ReLU(name="grouped_relu")(x)
    se = keras.layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    se = keras.layers.Conv2D(8, 1, activation="sigmoid", name="se_conv")(se)
    x = x * se
    x = shortcut + x
    return keras.Model(inputs, _head(keras.layers.ReLU(name="out_relu")(x)), name="regnet_net")


def custom_scale_model():
    """InceptionResNetV2's residual: ``CustomScaleLayer(scale)([x, r])`` = x + r * scale."""
    from tf_keras.src.applications.inception_resnet_v2 import (  # pylint: disable=import-outside-toplevel
        CustomScaleLayer,
    )

    inputs = keras.Input(SHAPE)
    x = keras.layers.ReLU(name="stem_relu")(
        keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs))
    r = keras.layers.Conv2D(8, 3, padding="same", name="branch")(x)
    x = CustomScaleLayer(0.17, name="scaled_residual")([x, r])
    return keras.Model(inputs, _head(keras.layers.ReLU(name="out_relu")(x)), name="irv2_net")


def nested_model():
    """ConvNeXt's form: Sequential and functional sub-models called inside the model."""
    stem = keras.Sequential([keras.layers.Conv2D(8, 3, padding="same", name="inner_conv"),
                             keras.layers.BatchNormalization(name="inner_bn")], name="stem")
    block_in = keras.Input((8, 8, 8))
    block_out = keras.layers.ReLU(name="block_relu")(
        keras.layers.Conv2D(8, 1, name="block_conv")(block_in))
    block = keras.Model(block_in, block_out, name="block")
    inputs = keras.Input(SHAPE)
    x = block(keras.layers.ReLU(name="stem_relu")(stem(inputs)))
    return keras.Model(inputs, _head(x), name="nested_net")


def convnext_model(activation="relu"):
    """ConvNeXt's block: LayerNormalization, Dense on feature maps, LayerScale, ``x + y``."""
    from tf_keras.src.applications.convnext import LayerScale  # pylint: disable=import-outside-toplevel

    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(8, 2, strides=2, name="stem")(inputs)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="stem_ln")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", groups=8, name="dw_as_grouped")(x)
    y = keras.layers.LayerNormalization(epsilon=1e-6, name="block_ln")(y)
    y = keras.layers.Dense(16, name="pw1")(y)
    y = keras.layers.Activation(activation, name="block_act")(y)
    y = keras.layers.Dense(8, name="pw2")(y)
    y = LayerScale(0.5, 8, name="layer_scale")(y)
    x = x + y
    return keras.Model(inputs, _head(x), name="convnext_net")


MODELS = {"hard_swish": hard_swish_model, "regnet": regnet_model,
          "custom_scale": custom_scale_model, "nested": nested_model,
          "convnext": convnext_model}


def _classes(model):
    return [type(l).__name__ for l in model.layers]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_the_rewritten_model_computes_the_same_function(kind):
    keras.utils.set_random_seed(0)
    model = MODELS[kind]()
    rewritten = rewrite.for_quantization(model)
    assert rewritten is not model
    classes = _classes(rewritten)
    assert not {"TFOpLambda", "CustomScaleLayer", "Sequential", "Functional"} & set(classes)
    x = _images()
    np.testing.assert_allclose(np.asarray(rewritten(x)), np.asarray(model(x)), rtol=1e-6,
                               atol=1e-6)
    # Unchanged layers are the model's own (weights shared, not copied).
    if kind == "nested":
        assert rewritten.get_layer("inner_conv") is model.get_layer("stem").get_layer("inner_conv")
    else:
        assert rewritten.get_layer("stem") is model.get_layer("stem")


def test_scalar_ops_become_scalar_affine_layers_with_the_hand_computed_constants():
    inputs = keras.Input((4,))
    outputs = [inputs + 3.0, 3.0 - inputs, inputs - 1.0, inputs * (1 / 6), 2.0 * inputs,
               inputs / 4.0, -inputs, inputs + np.float32(0.5)]
    rewritten = rewrite.for_quantization(keras.Model(inputs, outputs))
    affine = [(l.scale, l.offset) for l in rewritten.layers
              if isinstance(l, rewrite.ScalarAffine)]
    assert affine == [(1.0, 3.0), (-1.0, 3.0), (1.0, -1.0), (pytest.approx(1 / 6), 0.0),
                      (2.0, 0.0), (0.25, 0.0), (-1.0, 0.0), (1.0, 0.5)]
    x = np.array([[-2.0, 0.0, 1.5, 7.0]], np.float32)
    got = rewritten(x)
    for value, expected in zip(got, [x + 3, 3 - x, x - 1, x / 6, 2 * x, x / 4, -x, x + 0.5]):
        np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-6)


def test_a_model_without_anything_to_rewrite_is_returned_as_is():
    model = hard_swish_model()
    plain = rewrite.for_quantization(rewrite.for_quantization(model))
    assert rewrite.for_quantization(plain) is plain


def test_ops_without_a_rewrite_are_still_named_by_apply():
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = tf.math.sin(x) + x / keras.layers.ReLU(name="relu")(x)  # sin, tensor / tensor: kept
    model = keras.Model(inputs, _head(x))
    with pytest.raises(ValueError, match=r"tf\.math\.sin(_\d+)? \(TFOpLambda\)") as error:
        tfq_pareto.apply(model, conv_bits=4)
    assert re.search(r"tf\.math\.truediv(_\d+)? \(TFOpLambda\)", str(error.value))


def test_inlining_refuses_two_layers_of_one_name():
    inner = keras.Sequential([keras.layers.Conv2D(4, 3, name="conv")], name="inner")
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(3, 1, name="conv")(inputs)  # the same name as the inner conv
    model = keras.Model(inputs, _head(inner(x)))
    with pytest.raises(ValueError, match="two layers are named 'conv'"):
        rewrite.for_quantization(model)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_apply_quantizes_them_near_the_float_model_and_leaves_the_model_unchanged(kind):
    keras.utils.set_random_seed(1)
    model = MODELS[kind]()
    before = _classes(model)
    qat = tfq_pareto.apply(model, conv_bits=8, dw_bits=8, act_bits=8)
    assert _classes(model) == before  # apply works on its own copy
    x = _images(32)
    assert_qat_near_float(qat, model, x)


def test_a_rewritten_qat_model_saves_and_loads(tmp_path):
    for kind in ("hard_swish", "convnext"):
        qat = tfq_pareto.apply(MODELS[kind](), conv_bits=1, dw_bits=4)
        path = str(tmp_path / f"{kind}.h5")
        tfq_pareto.save_model(qat, path)
        loaded = tfq_pareto.load_model(path)
        x = _images(4)
        np.testing.assert_allclose(np.asarray(loaded(x, training=False)),
                                   np.asarray(qat(x, training=False)), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_export_matches_the_keras_model_within_the_export_tolerance(kind, tmp_path):
    keras.utils.set_random_seed(2)
    qat = tfq_pareto.apply(MODELS[kind](), conv_bits=1, dw_bits=4, act_bits=8)
    x = _images(64)
    y = (x.mean(axis=(1, 2, 3)) > x.mean()).astype(int)
    qat.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=2, batch_size=32, verbose=0)
    result = tflite_export.export(qat, x, str(tmp_path))
    manifest = result.manifest
    assert manifest["verification"]["keras_max_output_steps"] <= 8  # export's own tolerance
    packed = open(result.files["packed"], "rb").read()
    assert len(packed) < len(open(result.files["int8"], "rb").read())  # 1-bit convs packed


@pytest.mark.slow
def test_export_names_gelu_as_the_op_tflm_lacks(tmp_path):
    qat = tfq_pareto.apply(convnext_model("gelu"), conv_bits=1, dw_bits=4)
    x = _images(8)
    qat.compile(keras.optimizers.SGD(1e-3), "mse")
    qat.fit(x, np.zeros((8, 4)), verbose=0)  # training works
    with pytest.raises(tflite_export.ExportError, match=r"GELU.*block_act"):
        tflite_export.export(qat, x, str(tmp_path))
