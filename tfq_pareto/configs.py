"""QuantizeConfigs: which tensor of which layer gets which quantizer.

One config class per supported weighted layer type. Each quantizes the layer's
kernel per filter with :class:`~tfq_pareto.quantizers.PerFilterWeightQuantizer`
at ``num_bits`` and the layer's ``activation`` attribute with a
moving-average fake-quant at ``act_bits``
(:class:`~tfq_pareto.quantizers.ActivationQuantizer`), or not at all with ``act_bits=None``
(a layer followed by a ReLU or a Concatenate that quantizes for it; when tfmot's Conv+BN transforms
replaced that activation with a no-op, the BN or ReLU after it carries the
activation quantizer instead). Biases stay float; the TFLite converter turns
them into int32.
"""

from tfq_pareto.checks import ConfigMixin
from tfq_pareto.backend import keras, tfmot
from tfq_pareto.quantizers import (
    ActivationQuantizer,
    InputQuantizer,
    PerFilterWeightQuantizer,
    activation_quantizer,
    check_bits,
)

#: Activation precisions: tf.quantization fake-quant ops accept 2..16 bits.
ACTIVATION_BITS = (2, 3, 4, 5, 6, 7, 8)


class _KernelQuantizeConfig(ConfigMixin, tfmot.quantization.keras.QuantizeConfig):
    """Base: kernel attribute ``_WEIGHT_ATTR`` per filter, ``activation`` at act_bits."""

    _WEIGHT_ATTR = "kernel"
    _DEPTHWISE = False

    def __init__(self, num_bits, act_bits=8, ternary_scale="mean_abs"):
        self.num_bits = check_bits("num_bits", num_bits)
        self.act_bits = None if act_bits is None else check_bits("act_bits", act_bits, ACTIVATION_BITS)
        self.ternary_scale = ternary_scale
        self.weight_quantizer = PerFilterWeightQuantizer(
            num_bits, depthwise=self._DEPTHWISE, ternary_scale=ternary_scale
        )
        self.activation_quantizer = None if act_bits is None else activation_quantizer(act_bits)

    def get_weights_and_quantizers(self, layer):
        return [(getattr(layer, self._WEIGHT_ATTR), self.weight_quantizer)]

    def get_activations_and_quantizers(self, layer):
        if self.activation_quantizer is None:
            return []
        return [(layer.activation, self.activation_quantizer)]

    def set_quantize_weights(self, layer, quantize_weights):
        if len(quantize_weights) != 1:
            raise ValueError(
                f"{type(self).__name__} expects 1 quantized weight for layer "
                f"{layer.name!r}; received {len(quantize_weights)}"
            )
        setattr(layer, self._WEIGHT_ATTR, quantize_weights[0])

    def set_quantize_activations(self, layer, quantize_activations):
        if self.activation_quantizer is None:
            return
        if len(quantize_activations) != 1:
            raise ValueError(
                f"{type(self).__name__} expects 1 quantized activation for layer "
                f"{layer.name!r}; received {len(quantize_activations)}"
            )
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {
            "num_bits": self.num_bits,
            "act_bits": self.act_bits,
            "ternary_scale": self.ternary_scale,
        }


@keras.utils.register_keras_serializable(package="tfq_pareto")
class ConvQuantizeConfig(_KernelQuantizeConfig):
    """Conv2D: kernel ``(kh, kw, c_in, c_out)``, one scale per ``c_out``."""


@keras.utils.register_keras_serializable(package="tfq_pareto")
class DepthwiseConvQuantizeConfig(_KernelQuantizeConfig):
    """DepthwiseConv2D: kernel ``(kh, kw, c, m)``, one scale per (c, m) output channel."""

    _WEIGHT_ATTR = "depthwise_kernel"
    _DEPTHWISE = True


@keras.utils.register_keras_serializable(package="tfq_pareto")
class DenseQuantizeConfig(_KernelQuantizeConfig):
    """Dense: kernel ``(c_in, units)``, one scale per unit."""


def is_relu(layer):
    """Whether ``layer`` outputs only values >= 0: a ReLU (any ``max_value``) or Activation("relu"/"relu6")."""
    if type(layer) is keras.layers.ReLU:  # pylint: disable=unidiomatic-typecheck
        return float(layer.negative_slope) == 0.0 and float(layer.threshold) == 0.0
    if type(layer) is keras.layers.Activation:  # pylint: disable=unidiomatic-typecheck
        return getattr(layer.activation, "__name__", None) in ("relu", "relu6")
    return False


@keras.utils.register_keras_serializable(package="tfq_pareto")
class OutputQuantizeConfig(ConfigMixin, tfmot.quantization.keras.QuantizeConfig):
    """Any layer quantized at its output only (BN, Add, pooling, Concatenate, ...), at ``act_bits``.

    It takes the place of tfmot's n-bit output configs so that every activation
    range starts from the first training batch
    (:class:`~tfq_pareto.quantizers.ActivationQuantizer`).
    """

    _NON_NEGATIVE = False

    def __init__(self, act_bits=8):
        self.act_bits = check_bits("act_bits", act_bits, ACTIVATION_BITS)

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [activation_quantizer(self.act_bits, non_negative=self._NON_NEGATIVE)]

    def get_config(self):
        return {"act_bits": self.act_bits}


@keras.utils.register_keras_serializable(package="tfq_pareto")
class ReLUQuantizeConfig(OutputQuantizeConfig):
    """ReLU layer or ``Activation("relu"/"relu6")``: its output fake-quantized at ``act_bits``.

    The range starts and stays at minimum 0 (a ReLU's output is never
    negative), and in training the fake-quant takes the ReLU's place; see
    :class:`~tfq_pareto.quantizers.ActivationQuantizer` with ``non_negative=True``.
    """

    _NON_NEGATIVE = True


#: Layer class -> config class. Matched by exact class, as tfmot's registries do.
CONFIG_FOR_LAYER = {
    keras.layers.Conv2D: ConvQuantizeConfig,
    keras.layers.DepthwiseConv2D: DepthwiseConvQuantizeConfig,
    keras.layers.Dense: DenseQuantizeConfig,
}

#: Every custom object a saved QAT model may contain.
CUSTOM_OBJECTS = {
    "PerFilterWeightQuantizer": PerFilterWeightQuantizer,
    "ActivationQuantizer": ActivationQuantizer,
    "InputQuantizer": InputQuantizer,
    "ReLUQuantizeConfig": ReLUQuantizeConfig,
    "OutputQuantizeConfig": OutputQuantizeConfig,
    "ConvQuantizeConfig": ConvQuantizeConfig,
    "DepthwiseConvQuantizeConfig": DepthwiseConvQuantizeConfig,
    "DenseQuantizeConfig": DenseQuantizeConfig,
}
