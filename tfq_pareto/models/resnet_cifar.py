"""CIFAR ResNets (He et al. 2016, Table 4 of the paper) with a width multiplier.

Stem: 3x3 conv with 16 channels. Three stages of n basic blocks (two 3x3 convs,
BN, ReLU) at 16, 32 and 64 channels, stride 2 at the start of stages 2 and 3;
global average pooling; dense classifier. depth = 6n + 2.

Shortcut where the shape changes: a 1x1 conv with stride 2 followed by BN
(option B of He et al.), so that every tensor stays a regular conv the
quantizers and the TFLite converter handle.
"""

from tfq_pareto._keras import keras

#: Depths of Table 4.
RESNET_CIFAR_DEPTHS = (20, 26, 32, 38, 44, 50, 56)

#: Channels of the stem and of the three stages at width 1.
_STAGE_CHANNELS = (16, 32, 64)


def _scaled(channels, width_multiplier):
    return max(1, int(round(channels * width_multiplier)))


def _conv_bn(x, filters, kernel_size, strides, name, relu=True):
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def _basic_block(x, filters, strides, name):
    shortcut = x
    y = _conv_bn(x, filters, 3, strides, f"{name}_1")
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, f"{name}_shortcut", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def resnet_cifar(*, depth=20, width_multiplier=1.0, num_classes=100, input_shape=(32, 32, 3)):
    """A CIFAR ResNet of ``depth`` = 6n + 2 layers, every channel count times ``width_multiplier``.

    Args:
      depth: one of 20, 26, 32, 38, 44, 50, 56 (Table 4).
      width_multiplier: scales every conv's channel count (tf_keras calls it ``alpha``).
      num_classes: classifier outputs (left unscaled).
      input_shape: (H, W, C) of the images.

    Returns:
      A float tf_keras functional model named ``resnet{depth}_cifar_w{width:.2f}``.
    """
    if depth not in RESNET_CIFAR_DEPTHS:
        raise ValueError(f"depth must be one of {RESNET_CIFAR_DEPTHS}; received {depth!r}")
    if not isinstance(width_multiplier, (int, float)) or width_multiplier <= 0:
        raise ValueError(f"width_multiplier must be a number > 0; received {width_multiplier!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1; received {num_classes!r}")
    blocks = (depth - 2) // 6
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, _scaled(_STAGE_CHANNELS[0], width_multiplier), 3, 1, "stem")
    for stage, channels in enumerate(_STAGE_CHANNELS):
        filters = _scaled(channels, width_multiplier)
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, strides, f"stage{stage + 1}_block{block + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}_cifar_w{width_multiplier:.2f}")
