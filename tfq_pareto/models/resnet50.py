"""ResNet-50 (He et al. 2016) for ImageNet with a width multiplier.

The layer plan of ``tf_keras.applications.ResNet50`` (v1, biases on the convs,
BN epsilon 1.001e-5): 7x7/2 stem conv with 64 channels, 3x3/2 max-pool, four
stages of 3, 4, 6, 3 bottleneck blocks (1x1, 3x3, 1x1 with 4x expansion) at 64,
128, 256, 512 channels, stride 2 on the first 1x1 conv of stages 2-4, a 1x1
conv shortcut on the first block of each stage; global average pooling and a
softmax classifier. At width 1 the parameter count equals the application's.
"""

from tfq_pareto.backend import keras
from tfq_pareto.models._layers import check_builder_args, scaled

#: (bottleneck channels, blocks) of the four stages.
STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))

_EPS = 1.001e-5


def _conv_bn(x, filters, kernel_size, strides, name, relu=True):
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=_EPS, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _bottleneck(x, filters, strides, conv_shortcut, name):
    if conv_shortcut:
        shortcut = _conv_bn(x, 4 * filters, 1, strides, f"{name}_0", relu=False)
    else:
        shortcut = x
    y = _conv_bn(x, filters, 1, strides, f"{name}_1")
    y = _conv_bn(y, filters, 3, 1, f"{name}_2")
    y = _conv_bn(y, 4 * filters, 1, 1, f"{name}_3", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def resnet50(width_multiplier=1.0, num_classes=1000, *, keep_first_last=True,
             input_shape=(224, 224, 3)):
    """ImageNet ResNet-50; at width 1 its parameter count equals tf_keras's ResNet50.

    Args:
      width_multiplier: scales the channels of every bottleneck conv and shortcut.
      num_classes: classifier outputs (never scaled).
      keep_first_last: keep the 7x7 stem conv at 64 channels (Sec. 6); the
        classifier is never scaled.
      input_shape: (H, W, C); any size >= 32 works (global pooling).

    Returns:
      A float tf_keras model with softmax outputs, named ``resnet50_w{width:.2f}``.
    """
    check_builder_args(width_multiplier, num_classes)
    inputs = keras.Input(input_shape)
    stem = 64 if keep_first_last else scaled(64, width_multiplier)
    x = keras.layers.ZeroPadding2D(3, name="stem_pad")(inputs)
    x = keras.layers.Conv2D(stem, 7, strides=2, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=_EPS, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for stage, (channels, blocks) in enumerate(STAGES):
        filters = scaled(channels, width_multiplier)
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _bottleneck(x, filters, strides, block == 0, f"stage{stage + 1}_block{block + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"resnet50_w{width_multiplier:.2f}")
