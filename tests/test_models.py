"""Model families: parameter counts, conv counts per table, widths, forward passes."""

import numpy as np
import pytest

from tfq_pareto import keras
from tfq_pareto.models import (
    FAMILIES,
    inv_resnet26,
    mobilenet_v2,
    mobilenet_v2_cifar,
    resnet50,
    resnet_cifar,
    vgg11,
)


def _counts(model):
    depthwise = sum(isinstance(l, keras.layers.DepthwiseConv2D) for l in model.layers)
    standard = sum(type(l) is keras.layers.Conv2D for l in model.layers)
    dense = sum(isinstance(l, keras.layers.Dense) for l in model.layers)
    return standard, depthwise, dense


CIFAR_FAMILIES = {
    # name: (builder, standard convs, depthwise convs)
    "resnet20": (lambda w: resnet_cifar(20, w, 10), 21, 0),  # stem + 18 + 2 shortcuts
    "resnet56": (lambda w: resnet_cifar(56, w, 10), 57, 0),
    "vgg11": (lambda w: vgg11(w), 8, 0),
    "vgg11A": (lambda w: vgg11(w, "A"), 8, 2),  # 6 standard + 2 pointwise
    "vgg11B": (lambda w: vgg11(w, "B"), 8, 4),
    "vgg11C": (lambda w: vgg11(w, "C"), 8, 6),
    "mobilenet_v2_cifar": (mobilenet_v2_cifar, 35, 17),  # stem + 16 expand + 17 project + head
    "inv_resnet26": (inv_resnet26, 27, 12),  # stem + 12 expand + 12 project + 2 shortcuts
}


@pytest.mark.parametrize("name", sorted(CIFAR_FAMILIES))
@pytest.mark.parametrize("width", [0.25, 1.0, 2.0])
def test_cifar_families_build_and_run(name, width):
    build, standard, depthwise = CIFAR_FAMILIES[name]
    model = build(width)
    assert _counts(model) == (standard, depthwise, 1)
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    y = model(x, training=False).numpy()
    assert y.shape[0] == 2 and np.all(np.isfinite(y))
    assert model.name.endswith(f"_w{width:.2f}")


def test_width_scales_channels():
    narrow, wide = resnet_cifar(20, 1.0, 10), resnet_cifar(20, 2.0, 10)
    assert narrow.get_layer("stage3_block3_2_conv").filters == 64
    assert wide.get_layer("stage3_block3_2_conv").filters == 128
    assert wide.get_layer("classifier").units == 10
    # Conv weights grow ~4x; the 3-channel stem and the classifier ~2x.
    assert 3.5 < wide.count_params() / narrow.count_params() < 4.1


@pytest.mark.parametrize("depth,params", [(20, 0.27e6), (56, 0.85e6)])
def test_resnet_cifar_parameter_counts(depth, params):
    assert resnet_cifar(depth, num_classes=10).count_params() == pytest.approx(params, rel=0.03)


def test_resnet50_matches_tf_keras_application():
    reference = keras.applications.ResNet50(weights=None).count_params()
    assert resnet50().count_params() == reference == 25_636_712
    assert _counts(resnet50(input_shape=(64, 64, 3))) == (53, 0, 1)


def test_mobilenet_v2_matches_tf_keras_application():
    reference = keras.applications.MobileNetV2(weights=None, alpha=1.0)
    model = mobilenet_v2()
    assert model.count_params() == reference.count_params() == 3_538_984
    assert _counts(model) == _counts(reference) == (35, 17, 1)


@pytest.mark.parametrize("build", [resnet50, mobilenet_v2])
def test_imagenet_families_keep_first_and_last(build):
    model = build(0.25, input_shape=(64, 64, 3))
    assert model.get_layer("stem_conv").filters == (64 if build is resnet50 else 32)
    assert model.get_layer("classifier").units == 1000
    scaled = build(0.25, input_shape=(64, 64, 3), keep_first_last=False)
    assert scaled.get_layer("stem_conv").filters < model.get_layer("stem_conv").filters
    y = model(np.zeros((1, 64, 64, 3), "float32")).numpy()
    assert y.shape == (1, 1000) and np.allclose(y.sum(), 1.0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("build", [resnet50, mobilenet_v2])
def test_imagenet_families_at_width_2(build):
    model = build(2.0, input_shape=(32, 32, 3))
    assert model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 1000)


def test_mobilenet_v2_cifar_downsamples_twice():
    model = mobilenet_v2_cifar()
    assert model.get_layer("head_conv").output_shape[1:3] == (8, 8)


def test_every_family_is_registered():
    assert set(FAMILIES) == {
        "resnet_cifar", "vgg11", "mobilenet_v2_cifar", "inv_resnet26", "resnet50", "mobilenet_v2"
    }


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: resnet_cifar(21), "depth must be one of"),
        (lambda: resnet_cifar(20, 0), "width_multiplier must be a number > 0; received 0"),
        (lambda: vgg11(1.0, "D"), "variant must be one of .*received 'D'"),
        (lambda: mobilenet_v2_cifar(-1.0), "received -1.0"),
        (lambda: inv_resnet26(1.0, num_classes=0), "num_classes must be an int >= 1; received 0"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
