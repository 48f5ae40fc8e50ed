"""CIFAR VGG-11 with BatchNormalization, and its depthwise-separable variants (Table 6).

VGG-11 (configuration "A" of Simonyan & Zisserman): eight 3x3 convs with
64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M (M = 2x2 max-pool), each
conv followed by BN and ReLU; global average pooling (1x1 after five pools on
32x32 inputs) and one dense classifier, the usual CIFAR form.

Variants (Sec. 5.1, Table 6): "Starting with the second layer, variant A has one
layer replaced by DWSConv, variant B has four layers replaced, and variant C has
all of the layers except for the first layer replaced." Table 6 writes each
replacement of ``Conv2d(C, 3, 3)`` as ``Conv2d(C, 1, 1)`` followed by
``DWConv2d(C, 3, 3)``: the 1x1 conv comes first (BN, ReLU) and the depthwise
3x3 conv (BN, ReLU) runs at the output width C. Counting the eight convs from 1:

* ``None``: no separable convs;
* ``"A"``: conv2 (1 depthwise conv);
* ``"B"``: conv2..conv5 (4);
* ``"C"``: conv2..conv8 (7); only conv1 (the RGB input) stays a 3x3 conv.

Table 2 / Sec. 5.2 also change the depthwise convs' fan-in d = C_in x K x K of
variant C at 0.5x: ``dw_fan_in=(c, k)`` makes every depthwise conv a k x k conv
with c input channels per filter: c = 1 is a ``DepthwiseConv2D``, c > 1 a grouped
``Conv2D`` with ``C / c`` groups (same output width C). :data:`TABLE2_FAN_INS`
lists the paper's five values of d.
"""

from tfq_pareto.backend import keras
from tfq_pareto.models._layers import (
    activate,
    check_builder_args,
    classifier,
    conv_bn,
    conv_init,
    depthwise_bn,
    kernel_area,
    scaled,
)

#: Channel plan of VGG-11; "M" is a 2x2 max-pool.
VGG11_PLAN = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

#: Variant -> the convs (1-based, in order) replaced by 1x1 conv + depthwise 3x3 (Table 6).
VGG11_VARIANTS = {None: (), "A": (2,), "B": (2, 3, 4, 5), "C": (2, 3, 4, 5, 6, 7, 8)}

#: Table 2's depthwise fan-ins d = c x k x k, as (c input channels per filter, kernel k):
#: 1x3x3 (the plain depthwise conv), 1x6x6, 4x3x3, 1x12x12, 16x3x3.
TABLE2_FAN_INS = ((1, 3), (1, 6), (4, 3), (1, 12), (16, 3))


def _check_fan_in(dw_fan_in):
    ok = (isinstance(dw_fan_in, (tuple, list)) and len(dw_fan_in) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in dw_fan_in))
    if not ok:
        raise ValueError("dw_fan_in must be (input channels per filter, kernel size), two ints "
                         f">= 1, e.g. {TABLE2_FAN_INS}; received {dw_fan_in!r}")
    return tuple(dw_fan_in)


def _grouped_bn(x, channels_per_group, kernel_size, name):
    """k x k grouped Conv2D with ``channels_per_group`` inputs per filter -> BN -> ReLU."""
    channels = x.shape[-1]
    if channels % channels_per_group:
        raise ValueError(
            f"dw_fan_in needs the width of {name!r} ({channels} channels) to be a multiple of "
            f"its {channels_per_group} input channels per filter; choose another "
            "width_multiplier or dw_fan_in")
    x = keras.layers.Conv2D(channels, kernel_size, padding="same", use_bias=False,
                            groups=channels // channels_per_group,
                            kernel_initializer=conv_init(
                                channels_per_group * kernel_area(kernel_size)),
                            name=f"{name}_dw")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.9, name=f"{name}_dw_bn")(x)
    return activate(x, "relu", f"{name}_dw")


def vgg11(width_multiplier=1.0, variant=None, num_classes=100, *, keep_first_last=False,
          input_shape=(32, 32, 3), dw_fan_in=(1, 3)):
    """CIFAR VGG-11-BN, optionally with depthwise-separable convs (Table 6).

    Args:
      width_multiplier: scales every conv's channel count.
      variant: None, "A", "B" or "C" (see the module docstring).
      num_classes: classifier outputs (never scaled).
      keep_first_last: keep the first conv at 64 channels.
      input_shape: (H, W, C) of the images.
      dw_fan_in: ``(c, k)``: every depthwise conv of the variant becomes a k x k conv
        with c input channels per filter, fan-in d = c x k x k (Table 2). Default
        (1, 3), Table 6's ``DWConv2d(C, 3, 3)``.

    Returns:
      A float tf_keras model named ``vgg11{variant}_w{width:.2f}``, with ``_d{c}x{k}x{k}``
      appended for a non-default ``dw_fan_in``.
    """
    if variant not in VGG11_VARIANTS:
        raise ValueError(f"variant must be one of {tuple(VGG11_VARIANTS)}; received {variant!r}")
    check_builder_args(width_multiplier, num_classes)
    channels_per_group, kernel = _check_fan_in(dw_fan_in)
    separable = VGG11_VARIANTS[variant]
    if not separable and (channels_per_group, kernel) != (1, 3):
        raise ValueError(f"dw_fan_in {dw_fan_in!r} needs a variant with depthwise convs "
                         f"('A', 'B' or 'C'); received variant {variant!r}")
    pools = VGG11_PLAN.count("M")
    if any(side < 2 ** pools for side in tuple(input_shape)[:2]):
        raise ValueError(
            f"vgg11 halves the image {pools} times, so its sides must be at least "
            f"{2 ** pools} pixels; received input_shape {tuple(input_shape)!r} (for digits: "
            f"--image-size {2 ** pools})")
    inputs = keras.Input(input_shape)
    x = inputs
    index = 0
    for item in VGG11_PLAN:
        if item == "M":
            x = keras.layers.MaxPooling2D(2, name=f"pool{index}")(x)
            continue
        index += 1
        filters = item if (keep_first_last and index == 1) else scaled(item, width_multiplier)
        name = f"conv{index}"
        if index in separable:
            x = conv_bn(x, filters, 1, 1, f"{name}_pw")
            if channels_per_group == 1:
                x = depthwise_bn(x, 1, name, kernel_size=kernel)
            else:
                x = _grouped_bn(x, channels_per_group, kernel, name)
        else:
            x = conv_bn(x, filters, 3, 1, name)
    outputs = classifier(x, num_classes)
    suffix = variant or ""
    if (channels_per_group, kernel) != (1, 3):
        suffix += f"_d{channels_per_group}x{kernel}x{kernel}"
    return keras.Model(inputs, outputs, name=f"vgg11{suffix}_w{width_multiplier:.2f}")
