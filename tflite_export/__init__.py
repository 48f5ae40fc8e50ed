"""tflite_export: QAT models -> int8 TFLite and packed TFLite Micro artifacts.

A b-bit weight of a :func:`tfq_pareto.apply` model really takes b bits in the
packed file (TFLM LUT compression), and both files really run. ``export`` is a
pipeline of stages (convert -> match filters -> pack -> slim -> verify -> write),
each in its own module or function (see :mod:`tflite_export.export`)::

    result = tflite_export.export(qat_model, x_calibration, "export/", name="resnet20")
    print(result.sizes_table())
"""

from tflite_export.c_arrays import check_name, read_c_array, resolver_method
from tflite_export.errors import ExportError
from tflite_export.export import ARENA_ALLOWANCE_BYTES, Converted, ExportResult, export, match_filters
from tflite_export.fit import DEVICES, Budget, BudgetError, Device
from tflite_export.budget_search import fit_budget, measure_fit, widest_fitting_width
from tflite_export.flatbuffer import ParsedModel, filter_tensors, op_names, packed_tensors
from tflite_export.runtime import MicroError, litert_outputs, micro_arena_size, micro_outputs
from tflite_export.slim import SLIMMING_STEPS, Slimmed
from tflite_export.twin import QuantizedKernel, check_grid, float_twin, max_levels
from tflite_export.verify import verify, verify_dir
from tfq_pareto.data import export_arrays  # moved to tfq_pareto.data; kept here for old callers

__all__ = [
    "ARENA_ALLOWANCE_BYTES",
    "Budget",
    "BudgetError",
    "Converted",
    "DEVICES",
    "Device",
    "ExportError",
    "ExportResult",
    "MicroError",
    "ParsedModel",
    "QuantizedKernel",
    "SLIMMING_STEPS",
    "Slimmed",
    "check_grid",
    "check_name",
    "export",
    "export_arrays",
    "filter_tensors",
    "fit_budget",
    "float_twin",
    "litert_outputs",
    "match_filters",
    "max_levels",
    "measure_fit",
    "micro_arena_size",
    "micro_outputs",
    "op_names",
    "packed_tensors",
    "read_c_array",
    "resolver_method",
    "verify",
    "verify_dir",
    "widest_fitting_width",
]
