"""Building blocks shared by the model families (tf_keras layers only).

BatchNormalization momentum is 0.9 (PyTorch's 0.1 in Keras's convention, as the
paper's CIFAR models were trained): with Keras's 0.99 the moving statistics
lag far behind on short runs.

Conv kernels start as PyTorch's ``Conv2d`` default (the paper's framework;
``kaiming_uniform(a=sqrt(5))``): uniform in +-1/sqrt(fan_in), with fan_in the
filter's size C_in/groups x K x K (K x K for a depthwise conv), i.e. a variance
of 1 / (3 fan_in). The scale matters even though BN follows every conv: BN makes
the loss invariant to a kernel's scale, so its effective learning rate is
lr / ||W||^2, and ``he_normal`` (variance 2 / fan_in, six times larger) trains
markedly slower on short schedules. Measured on the training floor of issue 14
(``benchmarks/floor_ablation.py``; BENCHMARKS.md, "What costs the floor").
The classifier keeps tf_keras's default initializer.
"""

import math

from tfq_pareto import checks
from tfq_pareto.backend import keras


def check_builder_args(width_multiplier, num_classes):
    """Raises ValueError for a non-positive width or a bad class count."""
    checks.check_positive("width_multiplier", width_multiplier)
    checks.check_int("num_classes", num_classes)


def scaled(channels, width_multiplier):
    """round(channels * width_multiplier), at least 1."""
    return max(1, int(round(channels * width_multiplier)))


def make_divisible(value, divisor=8):
    """MobileNet's channel rounding: nearest multiple of ``divisor``, never below 90% of value."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def kernel_area(kernel_size):
    """K_h x K_w of an int or (K_h, K_w) kernel size."""
    if isinstance(kernel_size, int):
        return kernel_size * kernel_size
    return math.prod(kernel_size)


def conv_init(fan_in):
    """PyTorch's default conv initializer for filters of ``fan_in`` weights: U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def conv_bn(x, filters, kernel_size, strides, name, *, activation="relu", use_bias=False,
            padding="same", bn_epsilon=1e-3, bn_momentum=0.9):
    """Conv2D -> BatchNormalization -> optional ReLU/ReLU6."""
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                            use_bias=use_bias,
                            kernel_initializer=conv_init(x.shape[-1] * kernel_area(kernel_size)),
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum,
                                        name=f"{name}_bn")(x)
    return activate(x, activation, name)


def depthwise_bn(x, strides, name, *, activation="relu", padding="same", bn_epsilon=1e-3,
                 bn_momentum=0.9, kernel_size=3):
    """DepthwiseConv2D (3x3 unless ``kernel_size``) -> BatchNormalization -> optional ReLU/ReLU6."""
    x = keras.layers.DepthwiseConv2D(kernel_size, strides=strides, padding=padding,
                                     use_bias=False,
                                     depthwise_initializer=conv_init(kernel_area(kernel_size)),
                                     name=f"{name}_dw")(x)
    x = keras.layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum,
                                        name=f"{name}_dw_bn")(x)
    return activate(x, activation, f"{name}_dw")


def activate(x, activation, name):
    if activation == "relu":
        return keras.layers.ReLU(name=f"{name}_relu")(x)
    if activation == "relu6":
        return keras.layers.ReLU(6.0, name=f"{name}_relu")(x)
    if activation is None:
        return x
    raise ValueError(f"activation must be 'relu', 'relu6' or None; received {activation!r}")


def classifier(x, num_classes, name="classifier"):
    """Global average pooling -> Dense logits (no softmax: train with from_logits=True)."""
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.layers.Dense(num_classes, name=name)(x)
