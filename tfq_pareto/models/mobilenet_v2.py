"""MobileNetV2 (Sandler et al. 2018) for ImageNet and for CIFAR, with a width multiplier.

Inverted residual blocks: 1x1 expansion conv (t x input channels; absent when
t = 1), 3x3 depthwise conv, 1x1 linear projection conv, each followed by BN,
ReLU6 after the first two; identity shortcut when the stride is 1 and the
channels match. Bottleneck table (t, c, n, s):

    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)

then a 1x1 conv to 1280 channels, global average pooling and the classifier.
Channel counts are ``make_divisible(c * width, 8)`` as in the reference
implementation. Departure from ``tf_keras.applications.MobileNetV2``: the
1280-channel conv is scaled at every width (the application scales it only
above 1.0), so that narrowing the network shrinks its largest conv too.
"""

from tfq_pareto.backend import keras
from tfq_pareto.models._layers import (
    activate,
    check_builder_args,
    conv_bn,
    conv_init,
    make_divisible,
)

#: (expansion t, output channels c, repeats n, stride s) of the bottlenecks.
BOTTLENECKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

#: CIFAR strides of the seven bottleneck sequences (Appendix C): "we change the stride of
#: all the bottleneck blocks to 1 except for the fifth bottleneck block, which has a
#: stride of 2. As a result, we down-sample the image twice in total." The stem keeps
#: Sandler et al.'s stride 2 (32x32 -> 16x16) and the fifth bottleneck, the 96-channel
#: sequence, strides 2 in its first block (16x16 -> 8x8).
CIFAR_STRIDES = (1, 1, 1, 1, 2, 1, 1)

#: Stride of the CIFAR stem conv (Sandler et al.'s, unchanged by Appendix C).
CIFAR_STEM_STRIDES = 2

#: BN settings of tf_keras.applications.MobileNetV2 (ImageNet) and of the CIFAR models.
_BN_IMAGENET = {"bn_epsilon": 1e-3, "bn_momentum": 0.999}
_BN_CIFAR = {"bn_epsilon": 1e-3, "bn_momentum": 0.9}


def _correct_pad(x):
    """Padding before a 3x3 stride-2 'valid' conv: one pixel, only after for even sizes."""

    def pad(size):
        return (0, 1) if size is not None and size % 2 == 0 else (1, 1)

    return (pad(x.shape[1]), pad(x.shape[2]))


def _inverted_residual(x, expansion, filters, strides, name, bn):
    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = conv_bn(y, expansion * in_channels, 1, 1, f"{name}_expand", activation="relu6", **bn)
    if strides == 2:
        y = keras.layers.ZeroPadding2D(_correct_pad(y), name=f"{name}_pad")(y)
    y = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same" if strides == 1 else "valid",
                                     use_bias=False, depthwise_initializer=conv_init(9),
                                     name=f"{name}_dw")(y)
    y = keras.layers.BatchNormalization(epsilon=bn["bn_epsilon"], momentum=bn["bn_momentum"],
                                        name=f"{name}_dw_bn")(y)
    y = activate(y, "relu6", f"{name}_dw")
    y = conv_bn(y, filters, 1, 1, f"{name}_project", activation=None, **bn)
    if strides == 1 and in_channels == filters:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def _mobilenet_v2(width_multiplier, num_classes, keep_first_last, input_shape, stem_strides,
                  strides, name, softmax):
    bn = _BN_IMAGENET if softmax else _BN_CIFAR
    check_builder_args(width_multiplier, num_classes)
    inputs = keras.Input(input_shape)
    stem = 32 if keep_first_last else make_divisible(32 * width_multiplier)
    x = conv_bn(inputs, stem, 3, stem_strides, "stem", activation="relu6", **bn)
    block = 0
    for (expansion, channels, repeats, _), stage_stride in zip(BOTTLENECKS, strides):
        filters = make_divisible(channels * width_multiplier)
        for i in range(repeats):
            x = _inverted_residual(x, expansion, filters, stage_stride if i == 0 else 1,
                                   f"block{block}", bn)
            block += 1
    x = conv_bn(x, make_divisible(1280 * width_multiplier), 1, 1, "head", activation="relu6", **bn)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax" if softmax else None,
                                 name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"{name}_w{width_multiplier:.2f}")


def mobilenet_v2(width_multiplier=1.0, num_classes=1000, *, keep_first_last=True,
                 input_shape=(224, 224, 3)):
    """ImageNet MobileNetV2; at width 1 its parameter count equals tf_keras's MobileNetV2.

    Args:
      width_multiplier: scales every conv's channel count (``alpha`` in tf_keras).
      num_classes: classifier outputs (never scaled).
      keep_first_last: keep the stem conv at 32 channels (Sec. 6); the classifier
        is never scaled.
      input_shape: (H, W, C); any size >= 32 works (global pooling).

    Returns:
      A float tf_keras model with softmax outputs, named ``mobilenet_v2_w{width:.2f}``.
    """
    return _mobilenet_v2(width_multiplier, num_classes, keep_first_last, input_shape, 2,
                         tuple(s for _, _, _, s in BOTTLENECKS), "mobilenet_v2", softmax=True)


def mobilenet_v2_cifar(width_multiplier=1.0, num_classes=100, *, keep_first_last=False,
                       input_shape=(32, 32, 3)):
    """MobileNetV2 for 32x32 images, down-sampling twice (Appendix C).

    Appendix C: "follows the original MobileNetV2 (Table 2 in Sandler et al.) but
    we change the stride of all the bottleneck blocks to 1 except for the fifth
    bottleneck block, which has a stride of 2. As a result, we down-sample the
    image twice in total". Our reading: a "bottleneck block" is a row of Sandler
    et al.'s Table 2, the operator "bottleneck" repeated n times whose first
    layer carries the stride s; the stem conv2d is not a bottleneck and keeps its
    stride 2. So: stem stride 2 (32 -> 16), the fifth row (t=6, c=96, n=3) stride
    2 in its first layer (16 -> 8), every other layer stride 1: two down-samplings,
    as the text says. The other reading, the fifth *layer* (the second of the
    32-channel row), would down-sample at a layer without a channel change,
    mid-row, which Table 2's row structure never does.

    Args:
      width_multiplier: scales every conv's channel count.
      num_classes: classifier outputs (logits, never scaled).
      keep_first_last: keep the stem conv at 32 channels.
      input_shape: (H, W, C) of the images.

    Returns:
      A float tf_keras model named ``mobilenet_v2_cifar_w{width:.2f}``.
    """
    return _mobilenet_v2(width_multiplier, num_classes, keep_first_last, input_shape,
                         CIFAR_STEM_STRIDES, CIFAR_STRIDES, "mobilenet_v2_cifar", softmax=False)
