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
from tfq_pareto.models.vgg import TABLE2_FAN_INS


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
    "vgg11A": (lambda w: vgg11(w, "A"), 8, 1),  # 7 standard + 1 pointwise (Table 6)
    "vgg11B": (lambda w: vgg11(w, "B"), 8, 4),
    "vgg11C": (lambda w: vgg11(w, "C"), 8, 7),
    "mobilenet_v2_cifar": (mobilenet_v2_cifar, 35, 17),  # stem + 16 expand + 17 project + head
    "inv_resnet26": (inv_resnet26, 25, 12),  # stem + 12 expand + 12 project (Table 5)
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


def _conv_sequence(model):
    """("conv"/"dw", output channels, kernel, stride) of every conv, in graph order; "M" pools."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.MaxPooling2D):
            out.append("M")
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            out.append(("dw", layer.output_shape[-1], layer.kernel_size[0], layer.strides[0]))
        elif isinstance(layer, keras.layers.Conv2D):
            out.append(("conv", layer.filters, layer.kernel_size[0], layer.strides[0]))
    return out


def _table6(variant):
    """Table 6 of the paper, transcribed: the layers of VGG-11 and of variants A, B, C."""
    conv = lambda c: [("conv", c, 3, 1)]  # noqa: E731
    dws = lambda c: [("conv", c, 1, 1), ("dw", c, 3, 1)]  # noqa: E731  Conv2d(C,1,1) -> DWConv2d(C,3,3)
    rows = {  # row of Table 6: (VGG11, A, B, C)
        2: (conv(128), dws(128), dws(128), dws(128)),
        3: (conv(256), conv(256), dws(256), dws(256)),
        4: (conv(256), conv(256), dws(256), dws(256)),
        5: (conv(512), conv(512), dws(512), dws(512)),
        6: (conv(512), conv(512), conv(512), dws(512)),
        7: (conv(512), conv(512), conv(512), dws(512)),
        8: (conv(512), conv(512), conv(512), dws(512)),
    }
    column = (None, "A", "B", "C").index(variant)
    r = {i: rows[i][column] for i in rows}
    return (conv(64) + ["M"] + r[2] + ["M"] + r[3] + r[4] + ["M"] + r[5] + r[6] + ["M"]
            + r[7] + r[8] + ["M"])


@pytest.mark.parametrize("variant", [None, "A", "B", "C"])
def test_vgg11_variants_follow_table_6(variant):
    assert _conv_sequence(vgg11(1.0, variant)) == _table6(variant)


def test_vgg11_table2_fan_ins():
    """Table 2: variant C at 0.5x with depthwise fan-in d = 1x3x3, 1x6x6, 4x3x3, 1x12x12, 16x3x3."""
    paper_d = [9, 36, 36, 144, 144]  # Sec. 5.2: growing channels matches the larger kernel's d
    for (group, kernel), d in zip(TABLE2_FAN_INS, paper_d):
        model = vgg11(0.5, "C", 10, dw_fan_in=(group, kernel))
        replaced = [l for l in model.layers if l.name.endswith("_dw")]
        assert len(replaced) == 7
        for layer in replaced:
            kernel_shape = (layer.depthwise_kernel if group == 1 else layer.kernel).shape
            fan_in = kernel_shape[0] * kernel_shape[1] * (1 if group == 1 else kernel_shape[2])
            assert fan_in == d
            assert layer.output_shape[-1] == layer.input_shape[-1]  # runs at width C
        assert model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 10)
    with pytest.raises(ValueError, match="multiple of its 16 input channels"):
        vgg11(0.3, "C", dw_fan_in=(16, 3))
    with pytest.raises(ValueError, match="dw_fan_in must be"):
        vgg11(0.5, "C", dw_fan_in=(0, 3))


def test_vgg11_refuses_images_its_five_poolings_cannot_halve():
    # 2^5 = 32: at 32 px the last pooling leaves 1 x 1; at 16 px it would have no pixel left.
    assert vgg11(0.25, "A", 10, input_shape=(32, 32, 1)).output_shape == (None, 10)
    with pytest.raises(ValueError, match=r"at least 32 pixels; received input_shape \(16, 16, 1\)"):
        vgg11(0.25, "A", 10, input_shape=(16, 16, 1))
    with pytest.raises(ValueError, match="at least 32 pixels"):
        vgg11(0.25, None, 10, input_shape=(32, 24, 3))


def test_mobilenet_v2_cifar_downsamples_twice():
    """Appendix C: stem stride 2 (Sandler et al.), only the fifth bottleneck row strides 2."""
    model = mobilenet_v2_cifar()
    assert model.get_layer("stem_conv").output_shape[1:3] == (16, 16)
    # Sandler et al. Table 2: repeats n of the 7 bottleneck rows; the map size after each.
    repeats, expected = (1, 2, 3, 4, 3, 3, 1), (16, 16, 16, 16, 8, 8, 8)
    last_block = np.cumsum(repeats) - 1
    for block, size in zip(last_block, expected):
        names = {l.name for l in model.layers}
        name = f"block{block}_add" if f"block{block}_add" in names else f"block{block}_project_bn"
        assert model.get_layer(name).output_shape[1:3] == (size, size), name
    strided = [l.name for l in model.layers
               if isinstance(l, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
               and l.strides[0] == 2]
    assert strided == ["stem_conv", "block10_dw"]  # block10: first block of the fifth row
    assert model.get_layer("head_conv").output_shape[1:3] == (8, 8)


def test_inv_resnet26_follows_table_5():
    """Table 5: per block Conv2d(6C,1,1), DWConv2d(6C,3,3) with the stride, Conv2d(C,1,1)."""
    expected = [("conv", 16, 3, 1)]
    for c, stride in ((16, 1), (32, 2), (64, 2)):
        for block in range(4):
            s = stride if block == 0 else 1
            expected += [("conv", 6 * c, 1, 1), ("dw", 6 * c, 3, s), ("conv", c, 1, 1)]
    assert _conv_sequence(inv_resnet26(1.0, 10)) == expected
    adds = [l for l in inv_resnet26(1.0, 10).layers if isinstance(l, keras.layers.Add)]
    assert len(adds) == 12 - 2  # no shortcut where the shape changes (no projection conv)


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


@pytest.mark.parametrize("build", [
    lambda: resnet_cifar(20, 0.5, 10),
    lambda: mobilenet_v2_cifar(0.35, 10),
    lambda: vgg11(0.5, variant="C", dw_fan_in=(4, 3)),  # grouped convs, 4 inputs per filter
    lambda: inv_resnet26(0.5, 10),
], ids=["resnet20", "mobilenet_v2_cifar", "vgg11C_4x3x3", "inv_resnet26"])
def test_cifar_convs_start_as_pytorchs_conv2d_default(build):
    # PyTorch's Conv2d default (kaiming_uniform, a = sqrt(5)): U(-b, b) with b = 1/sqrt(fan_in),
    # fan_in = C_in / groups x K_h x K_w; a depthwise conv has groups = C_in, so fan_in = K x K.
    # Variance b^2 / 3. fan_in is read here from each kernel's shape, not from the builder.
    keras.utils.set_random_seed(0)
    model = build()
    checked = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel = layer.depthwise_kernel.numpy()
            fan_in = kernel.shape[0] * kernel.shape[1]
        elif type(layer) is keras.layers.Conv2D:
            kernel = layer.kernel.numpy()
            fan_in = kernel.shape[0] * kernel.shape[1] * kernel.shape[2]  # per group
        else:
            continue
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(kernel).max() <= bound + 1e-7, layer.name
        if kernel.size >= 2000:  # enough draws for the variance to be within 10%
            assert np.var(kernel) == pytest.approx(bound ** 2 / 3, rel=0.1), layer.name
        checked += 1
    assert checked >= 10
