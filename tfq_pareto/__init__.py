"""tfq_pareto: Pareto-efficient quantized CNNs (Chin et al.) on tf_keras + tfmot.

Public API::

    qat = tfq_pareto.apply(model, conv_bits=1, dw_bits=4)
    tfq_pareto.summary(qat, print_fn=print)
    width = tfq_pareto.width_for_size(builder, target_bits, conv_bits=1)
"""

from tfq_pareto import (analysis, data, experiment, models, plan, preprocessing, records, rewrite,
                        training)
from tfq_pareto.backend import keras
from tfq_pareto.clipping import CLIPPING_CONSTANTS, clipping_constant, clipping_constants
from tfq_pareto.configs import (
    ConvQuantizeConfig,
    DenseQuantizeConfig,
    DepthwiseConvQuantizeConfig,
    ReLUQuantizeConfig,
)
from tfq_pareto.keras3 import to_tf_keras
from tfq_pareto.quantizers import (
    ActivationQuantizer,
    InputQuantizer,
    PerFilterWeightQuantizer,
    fake_quantize_activations,
    quantize_weights,
)
from tfq_pareto.scheme import (
    DualPrecisionQuantizeRegistry,
    DualPrecisionScheme,
    apply,
    quantize_scope,
)
from tfq_pareto.fan_in import FanInPrecisionScheme
from tfq_pareto.plan import LayerPlan, QuantizationPlan, plan_of
from tfq_pareto.records import TrialRecord
from tfq_pareto.saving import load_model, save_model
from tfq_pareto.size import (
    LayerSize,
    MemoryFootprint,
    SizeSummary,
    layer_sizes,
    memory_footprint,
    model_size,
    summary,
)
from tfq_pareto.width import align_widths, widen, width_for_size

__version__ = "0.1.0"

__all__ = [
    "ActivationQuantizer",
    "InputQuantizer",
    "CLIPPING_CONSTANTS",
    "ConvQuantizeConfig",
    "DenseQuantizeConfig",
    "DepthwiseConvQuantizeConfig",
    "DualPrecisionQuantizeRegistry",
    "DualPrecisionScheme",
    "FanInPrecisionScheme",
    "LayerPlan",
    "LayerSize",
    "MemoryFootprint",
    "PerFilterWeightQuantizer",
    "QuantizationPlan",
    "ReLUQuantizeConfig",
    "SizeSummary",
    "TrialRecord",
    "align_widths",
    "analysis",
    "apply",
    "clipping_constant",
    "clipping_constants",
    "data",
    "experiment",
    "fake_quantize_activations",
    "keras",
    "layer_sizes",
    "load_model",
    "memory_footprint",
    "model_size",
    "models",
    "plan",
    "preprocessing",
    "records",
    "plan_of",
    "quantize_scope",
    "quantize_weights",
    "save_model",
    "summary",
    "to_tf_keras",
    "training",
    "widen",
    "width_for_size",
]
