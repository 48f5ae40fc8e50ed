"""CIFAR VGG-11 with BatchNormalization, and its depthwise-separable variants (Table 6).

VGG-11 (configuration "A" of Simonyan & Zisserman): eight 3x3 convs with
64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M (M = 2x2 max-pool), each
conv followed by BN and ReLU; global average pooling (1x1 after five pools on
32x32 inputs) and one dense classifier, the usual CIFAR form.

Variants (Sec. 5.3, Table 6) turn more and more standard convs into
depthwise-separable ones: a depthwise 3x3 (BN, ReLU) followed by a pointwise
1x1 (BN, ReLU) with the original conv's output channels. Our reading of the
table's order: the convs are replaced from the deepest one backwards, where the
fan-in C_in * 3 * 3 is largest:

* ``None``: no separable convs;
* ``"A"``: the last 2 convs (conv7, conv8);
* ``"B"``: the last 4 (conv5..conv8);
* ``"C"``: the last 6 (conv3..conv8); conv1 (RGB input) and conv2 stay standard.
"""

from tfq_pareto._keras import keras
from tfq_pareto.models._layers import (
    check_builder_args,
    classifier,
    conv_bn,
    depthwise_bn,
    scaled,
)

#: Channel plan of VGG-11; "M" is a 2x2 max-pool.
VGG11_PLAN = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

#: Variant -> number of convs, counted from the deepest, made depthwise-separable.
VGG11_VARIANTS = {None: 0, "A": 2, "B": 4, "C": 6}


def vgg11(width_multiplier=1.0, variant=None, num_classes=100, *, keep_first_last=False,
          input_shape=(32, 32, 3)):
    """CIFAR VGG-11-BN, optionally with depthwise-separable convs (Table 6).

    Args:
      width_multiplier: scales every conv's channel count.
      variant: None, "A", "B" or "C" (see the module docstring).
      num_classes: classifier outputs (never scaled).
      keep_first_last: keep the first conv at 64 channels.
      input_shape: (H, W, C) of the images.

    Returns:
      A float tf_keras model named ``vgg11{variant}_w{width:.2f}``.
    """
    if variant not in VGG11_VARIANTS:
        raise ValueError(f"variant must be one of {tuple(VGG11_VARIANTS)}; received {variant!r}")
    check_builder_args(width_multiplier, num_classes)
    convs = [c for c in VGG11_PLAN if c != "M"]
    first_separable = len(convs) - VGG11_VARIANTS[variant]
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
        if index - 1 >= first_separable:
            x = depthwise_bn(x, 1, name)
            x = conv_bn(x, filters, 1, 1, f"{name}_pw")
        else:
            x = conv_bn(x, filters, 3, 1, name)
    outputs = classifier(x, num_classes)
    suffix = variant or ""
    return keras.Model(inputs, outputs, name=f"vgg11{suffix}_w{width_multiplier:.2f}")
