"""CIFAR ResNets (He et al. 2016; Table 4 of the paper) with a width multiplier.

Stem: 3x3 conv with 16 channels. Three stages of n basic blocks (two 3x3 convs,
BN, ReLU) at 16, 32 and 64 channels, stride 2 at the start of stages 2 and 3;
global average pooling; dense classifier. depth = 6n + 2.

Shortcut where the shape changes: a 1x1 conv with stride 2 followed by BN
(option B of He et al.), so that every tensor stays a regular conv the
quantizers and the TFLite converter handle. Elsewhere the shortcut is the identity.
"""

from tfq_pareto.backend import keras
from tfq_pareto.models._layers import check_builder_args, classifier, conv_bn, scaled

#: Depths of Table 4.
RESNET_CIFAR_DEPTHS = (20, 26, 32, 38, 44, 50, 56)

#: Channels of the stem and of the three stages at width 1.
STAGE_CHANNELS = (16, 32, 64)


def _basic_block(x, filters, strides, name):
    shortcut = x
    y = conv_bn(x, filters, 3, strides, f"{name}_1")
    y = conv_bn(y, filters, 3, 1, f"{name}_2", activation=None)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, strides, f"{name}_shortcut", activation=None)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def resnet_cifar(depth=20, width_multiplier=1.0, num_classes=100, *, keep_first_last=False,
                 input_shape=(32, 32, 3)):
    """A CIFAR ResNet of ``depth`` = 6n + 2 layers, every channel count times ``width_multiplier``.

    Args:
      depth: one of 20, 26, 32, 38, 44, 50, 56 (Table 4).
      width_multiplier: scales every conv's channel count (tf_keras calls it ``alpha``).
      num_classes: classifier outputs (never scaled).
      keep_first_last: keep the stem conv at 16 channels. Off by default: the
        stem's output feeds identity shortcuts, so keeping it also keeps stage 1
        at 16 channels.
      input_shape: (H, W, C) of the images.

    Returns:
      A float tf_keras functional model named ``resnet{depth}_cifar_w{width:.2f}``.
    """
    if depth not in RESNET_CIFAR_DEPTHS:
        raise ValueError(f"depth must be one of {RESNET_CIFAR_DEPTHS}; received {depth!r}")
    check_builder_args(width_multiplier, num_classes)
    blocks = (depth - 2) // 6
    inputs = keras.Input(input_shape)
    stem = STAGE_CHANNELS[0] if keep_first_last else scaled(STAGE_CHANNELS[0], width_multiplier)
    x = conv_bn(inputs, stem, 3, 1, "stem")
    for stage, channels in enumerate(STAGE_CHANNELS):
        filters = scaled(channels, width_multiplier)
        if stage == 0 and keep_first_last:
            filters = stem
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, strides, f"stage{stage + 1}_block{block + 1}")
    outputs = classifier(x, num_classes)
    return keras.Model(inputs, outputs, name=f"resnet{depth}_cifar_w{width_multiplier:.2f}")
