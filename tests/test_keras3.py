"""Keras 3 models through to_tf_keras -> apply -> export: ops, activations, nested models.

The reference for every rebuilt model is the Keras 3 model itself (Keras 3 computes
it, not the converter); activation values are also checked against numbers computed
by hand from Keras 3's definitions.
"""

import numpy as np
import pytest

import tflite_export
import tfq_pareto
from tfq_pareto import keras, keras3, rewrite

from conftest import assert_qat_near_float

k3 = pytest.importorskip("keras")
if not k3.__version__.startswith("3"):  # pragma: no cover - depends on the environment
    pytest.skip("Keras 3 is not installed", allow_module_level=True)

SHAPE = (8, 8, 3)


def _images(n=16, seed=0, spread=4.0):
    """Inputs wide enough (about -4..4 after the first layers) to reach every clipping region."""
    return (spread * np.random.default_rng(seed).normal(size=(n, *SHAPE))).astype("float32")


def _head(x, name="logits"):
    x = k3.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    return k3.layers.Dense(4, name=name)(x)


def hard_swish_model():
    """Keras 3 MobileNetV3's forms: ``Activation("hard_silu")``, ``relu6(x + 3) * (1/6)`` as ops."""
    inputs = k3.Input(SHAPE)
    x = k3.layers.Conv2D(8, 3, padding="same", activation="hard_silu", name="stem")(inputs)
    gate = k3.layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    gate = k3.layers.Conv2D(8, 1, name="se_conv")(gate)
    gate = k3.layers.ReLU(6.0, name="se_relu6")(gate + 3.0) * (1.0 / 6.0)
    x = k3.layers.Multiply(name="se_mul")([x, gate])
    x = k3.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = k3.layers.Activation("hard_swish", name="dw_hard_swish")(x)
    return k3.Model(inputs, _head(x), name="k3_hard_swish")


def convnext_model(activation="relu"):
    """Keras 3 ConvNeXt's forms: a nested Sequential stem, LayerScale, ``x + y`` as an op."""
    from keras.src.applications.convnext import LayerScale  # pylint: disable=import-outside-toplevel

    inputs = k3.Input(SHAPE)
    stem = k3.Sequential([k3.Input(SHAPE), k3.layers.Conv2D(8, 2, strides=2, name="stem_conv"),
                          k3.layers.LayerNormalization(epsilon=1e-6, name="stem_ln")],
                         name="stem")
    x = stem(inputs)
    y = k3.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = k3.layers.LayerNormalization(epsilon=1e-6, name="block_ln")(y)
    y = k3.layers.Dense(16, name="pw1")(y)
    y = k3.layers.Activation(activation, name="block_act")(y)
    y = k3.layers.Dense(8, name="pw2")(y)
    y = LayerScale(0.5, 8, name="layer_scale")(y)
    return k3.Model(inputs, _head(x + y), name="k3_convnext")


def custom_scale_model():
    """Keras 3 InceptionResNetV2's residual, ``CustomScaleLayer(scale)([x, r])``."""
    from keras.src.applications.inception_resnet_v2 import (  # pylint: disable=import-outside-toplevel
        CustomScaleLayer,
    )

    inputs = k3.Input(SHAPE)
    x = k3.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    r = k3.layers.Conv2D(8, 3, padding="same", name="branch")(x)
    x = CustomScaleLayer(0.17, name="scaled_residual")([x, r])
    return k3.Model(inputs, _head(k3.layers.ReLU(name="out_relu")(x)), name="k3_irv2")


def nested_functional_model():
    """A functional sub-model called twice-nested: Keras 3 numbers its call node 0."""
    block_in = k3.Input((8, 8, 8))
    block_out = k3.layers.Conv2D(8, 1, activation="hard_sigmoid", name="block_conv")(block_in)
    block = k3.Model(block_in, block_out, name="block")
    inputs = k3.Input(SHAPE)
    x = k3.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = block(x) - x  # tensor - tensor, from a nested model's output
    return k3.Model(inputs, _head(x), name="k3_nested")


MODELS = {"hard_swish": hard_swish_model, "convnext": convnext_model,
          "custom_scale": custom_scale_model, "nested": nested_functional_model}


def _classes(model):
    return {type(l).__name__ for l in model.layers}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_the_tf_keras_rebuild_computes_what_keras3_computes(kind):
    k3.utils.set_random_seed(0)
    model = MODELS[kind]()
    rebuilt = tfq_pareto.to_tf_keras(model)
    assert isinstance(rebuilt, keras.Model)
    for seed in (1, 2):
        x = _images(seed=seed)
        np.testing.assert_allclose(rebuilt(x).numpy(), np.asarray(model(x)), rtol=1e-5,
                                   atol=1e-5)
    # After the rewrite apply starts with, nothing tfmot cannot wrap is left.
    flat = rewrite.for_quantization(rebuilt)
    assert not {"TFOpLambda", "CustomScaleLayer", "Functional", "Sequential"} & _classes(flat)


def test_keras3_activations_keep_their_keras3_meaning():
    """hard_sigmoid is relu6(x + 3) / 6 in Keras 3 (tf_keras's is 0.2 x + 0.5, clipped)."""
    x_values = np.array([-4.0, -3.0, -1.5, 0.0, 1.5, 2.7, 3.0, 4.0], np.float32)
    inputs = k3.Input((8,))
    outputs = [k3.layers.Activation(a, name=a)(inputs)
               for a in ("hard_sigmoid", "hard_silu", "hard_swish", "relu6", "leaky_relu")]
    rebuilt = tfq_pareto.to_tf_keras(k3.Model(inputs, outputs))
    got = [np.asarray(o)[0] for o in rebuilt(x_values[None])]
    hard_sigmoid = [0.0, 0.0, 0.25, 0.5, 0.75, 0.95, 1.0, 1.0]  # by hand: clip(x/6 + 1/2, 0, 1)
    np.testing.assert_allclose(got[0], hard_sigmoid, atol=1e-6)
    np.testing.assert_allclose(got[1], x_values * hard_sigmoid, atol=1e-6)
    np.testing.assert_allclose(got[2], x_values * hard_sigmoid, atol=1e-6)
    np.testing.assert_allclose(got[3], [0, 0, 0, 0, 1.5, 2.7, 3.0, 4.0], atol=1e-6)
    np.testing.assert_allclose(got[4], [-0.8, -0.6, -0.3, 0, 1.5, 2.7, 3.0, 4.0], atol=1e-6)


def test_keras3_scalar_ops_become_scalar_affine_with_hand_computed_constants():
    inputs = k3.Input((4,))
    outputs = [inputs + 3.0, 3.0 - inputs, inputs - 1.0, inputs * (1 / 6), 2.0 * inputs,
               inputs / 4.0, -inputs, k3.ops.multiply(inputs, inputs)]
    rebuilt = tfq_pareto.to_tf_keras(k3.Model(inputs, outputs))
    affine = [(l.scale, l.offset) for l in rebuilt.layers if isinstance(l, rewrite.ScalarAffine)]
    assert affine == [(1.0, 3.0), (-1.0, 3.0), (1.0, -1.0), (pytest.approx(1 / 6), 0.0),
                      (2.0, 0.0), (0.25, 0.0), (-1.0, 0.0)]
    assert sum(isinstance(l, keras.layers.Multiply) for l in rebuilt.layers) == 1
    x = np.array([[-2.0, 0.0, 1.5, 7.0]], np.float32)
    expected = [x + 3, 3 - x, x - 1, x / 6, 2 * x, x / 4, -x, x * x]
    for value, want in zip(rebuilt(x), expected):
        np.testing.assert_allclose(np.asarray(value), want, rtol=1e-6)


def test_weights_go_to_the_layer_of_the_same_name():
    model = convnext_model()
    rebuilt = tfq_pareto.to_tf_keras(model)
    inner = rebuilt.get_layer("stem").get_layer("stem_conv")
    np.testing.assert_array_equal(inner.kernel.numpy(),
                                  np.asarray(model.get_layer("stem").get_layer("stem_conv").kernel))
    np.testing.assert_array_equal(rebuilt.get_layer("layer_scale").get_weights()[0],
                                  np.asarray(model.get_layer("layer_scale").get_weights()[0]))
    # A conv whose activation was split off keeps its weights under the new name.
    hard = hard_swish_model()
    stem = tfq_pareto.to_tf_keras(hard).get_layer("stem_linear")
    np.testing.assert_array_equal(stem.kernel.numpy(), np.asarray(hard.get_layer("stem").kernel))


def test_an_op_without_a_layer_is_refused_naming_it():
    inputs = k3.Input(SHAPE)
    x = k3.layers.Conv2D(4, 3, name="conv")(inputs)
    model = k3.Model(inputs, _head(k3.ops.sin(x)))
    with pytest.raises(ValueError, match=r"operation 'sin.*Sin.*has no tf_keras layer"):
        tfq_pareto.to_tf_keras(model)
    ratio = k3.Model(inputs, _head(x / k3.layers.ReLU(name="relu")(x)))
    with pytest.raises(ValueError, match=r"Divide.*received arguments \['tensor', 'tensor'\]"):
        tfq_pareto.to_tf_keras(ratio)


def test_an_activation_tf_keras_lacks_is_refused_naming_the_layer():
    with pytest.raises(ValueError):
        keras.activations.get("squareplus")  # the premise: tf_keras has no squareplus
    inputs = k3.Input(SHAPE)
    x = k3.layers.Conv2D(4, 3, activation="squareplus", name="odd_conv")(inputs)
    with pytest.raises(ValueError, match=r"'odd_conv' \(Conv2D\).*'squareplus'"):
        tfq_pareto.to_tf_keras(k3.Model(inputs, _head(x)))


def test_a_rebuild_that_computes_something_else_is_an_error(monkeypatch):
    """Without the negative_slope -> alpha rename, LeakyReLU(0.1) would silently become 0.3."""
    inputs = k3.Input(SHAPE)
    x = k3.layers.LeakyReLU(negative_slope=0.1, name="leaky")(k3.layers.Conv2D(4, 3)(inputs))
    model = k3.Model(inputs, _head(x))
    rebuilt = tfq_pareto.to_tf_keras(model)
    assert rebuilt.get_layer("leaky").alpha == pytest.approx(0.1)
    monkeypatch.setattr(keras3, "_RENAMED_ARGS", {})
    with pytest.raises(ValueError, match="computes a different function"):
        tfq_pareto.to_tf_keras(model)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_apply_quantizes_keras3_models_near_the_float_model(kind):
    k3.utils.set_random_seed(1)
    model = MODELS[kind]()
    qat = tfq_pareto.apply(model, conv_bits=8, dw_bits=8, act_bits=8)
    x = _images(32, spread=1.0)
    assert_qat_near_float(qat, model, x)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_keras3_models_export_within_the_export_tolerance(kind, tmp_path):
    k3.utils.set_random_seed(2)
    qat = tfq_pareto.apply(MODELS[kind](), conv_bits=1, dw_bits=4, act_bits=8)
    x = _images(64, spread=1.0)
    y = (x.mean(axis=(1, 2, 3)) > x.mean()).astype(int)
    qat.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=2, batch_size=32, verbose=0)
    result = tflite_export.export(qat, x, str(tmp_path))
    assert result.manifest["verification"]["keras_max_output_steps"] <= 8  # export's tolerance
    packed = open(result.files["packed"], "rb").read()
    assert len(packed) < len(open(result.files["int8"], "rb").read())  # 1-bit convs packed
