"""Inverted-residual ResNet-26 for CIFAR (Table 5).

ResNet-26 (n = 4 blocks per stage; stem conv 16; stages at C = 16, 32, 64
channels, stride 2 at stages 2 and 3) whose basic blocks are replaced by
inverted residual blocks, exactly as Table 5 lists them::

    Conv2d(C x 6, 1, 1) Stride 1      expansion: 6 x the *stage's* width C, in
                                      every block, also the first of a stage
    DWConv2d(C x 6, 3, 3) Stride s    the depthwise conv carries the stride
    Conv2d(C, 1, 1) Stride 1          linear projection

each followed by BN, ReLU after the first two (linear bottleneck, as in
MobileNetV2).

Shortcut: Table 5 lists no projection conv, so there is none. Where the shape
is unchanged (stride 1, C channels in and out) the block adds its input
(identity); where it changes (the first block of stages 2 and 3: stride 2,
C/2 -> C channels) the block has no shortcut, as MobileNetV2's inverted
residual blocks (Sandler et al.) do. Every conv of the model is therefore one
of Table 5's rows, plus the stem and the classifier.
"""

from tfq_pareto.backend import keras
from tfq_pareto.models._layers import (
    check_builder_args,
    classifier,
    conv_bn,
    depthwise_bn,
    scaled,
)
from tfq_pareto.models.resnet_cifar import STAGE_CHANNELS

#: Expansion factor of the inverted residual blocks.
EXPANSION = 6

#: Blocks per stage (depth 26 = 6 * 4 + 2).
BLOCKS_PER_STAGE = 4


def _inverted_block(x, filters, strides, name):
    y = conv_bn(x, EXPANSION * filters, 1, 1, f"{name}_expand")
    y = depthwise_bn(y, strides, name)
    y = conv_bn(y, filters, 1, 1, f"{name}_project", activation=None)
    if strides != 1 or x.shape[-1] != filters:
        return y  # Table 5 has no projection shortcut: none where the shape changes
    return keras.layers.Add(name=f"{name}_add")([x, y])


def inv_resnet26(width_multiplier=1.0, num_classes=100, *, keep_first_last=False,
                 input_shape=(32, 32, 3)):
    """ResNet-26 with inverted residual blocks (expansion 6 x the stage width), Table 5.

    Args:
      width_multiplier: scales every conv's channel count.
      num_classes: classifier outputs (never scaled).
      keep_first_last: keep the stem conv (and hence stage 1) at 16 channels.
      input_shape: (H, W, C) of the images.

    Returns:
      A float tf_keras model named ``inv_resnet26_w{width:.2f}``.
    """
    check_builder_args(width_multiplier, num_classes)
    inputs = keras.Input(input_shape)
    stem = STAGE_CHANNELS[0] if keep_first_last else scaled(STAGE_CHANNELS[0], width_multiplier)
    x = conv_bn(inputs, stem, 3, 1, "stem")
    for stage, channels in enumerate(STAGE_CHANNELS):
        filters = stem if (stage == 0 and keep_first_last) else scaled(channels, width_multiplier)
        for block in range(BLOCKS_PER_STAGE):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _inverted_block(x, filters, strides, f"stage{stage + 1}_block{block + 1}")
    outputs = classifier(x, num_classes)
    return keras.Model(inputs, outputs, name=f"inv_resnet26_w{width_multiplier:.2f}")
