"""Model size, Eq. (6), and a per-layer size table.

Eq. (6): size = sum over filters i of b(i) * C_in(i) * K_w(i) * K_h(i), in bits.
A filter is the set of weights producing one output channel; its fan-in is
d = C_in * K_w * K_h (dense: K = 1; depthwise: C_in = 1 per filter). Biases and
BatchNormalization parameters are excluded, as in the paper.
"""

import dataclasses

import numpy as np

from tfq_pareto import checks, graph
from tfq_pareto import plan as plan_lib
from tfq_pareto.backend import keras
from tfq_pareto.quantizers import check_bits

#: Bits of a float32 weight.
FLOAT_BITS = 32


@dataclasses.dataclass(frozen=True)
class LayerSize:
    """One kernel's contribution to Eq. (6)."""

    name: str
    type: str
    filters: int
    fan_in: int
    bits: int

    @property
    def size_bits(self):
        return self.filters * self.fan_in * self.bits

    @property
    def weights(self):
        return self.filters * self.fan_in


def _kernels(layer):
    """(suffix, type, depthwise, kernel shape) for each filter-bearing kernel of ``layer``."""
    if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        return [
            ("/depthwise", "DepthwiseConv2D", True, layer.depthwise_kernel.shape),
            ("/pointwise", "Conv2D", False, layer.pointwise_kernel.shape),
        ]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [("", "DepthwiseConv2D", True, layer.depthwise_kernel.shape)]
    if isinstance(layer, keras.layers.Conv2DTranspose):
        # kernel (kh, kw, c_out, c_in): filters on axis -2.
        shape = layer.kernel.shape
        return [("", "Conv2DTranspose", False, shape[:-2] + (shape[-1], shape[-2]))]
    # A Conv2D with one input channel per group is depthwise (dw_bits), as in apply.
    return [("", type(layer).__name__, graph.is_depthwise(layer), layer.kernel.shape)]


def _filters_and_fan_in(shape, depthwise):
    shape = [int(d) for d in shape]
    if depthwise:  # (kh, kw, c, m): c*m filters of kh*kw weights.
        return shape[-2] * shape[-1], int(np.prod(shape[:-2]))
    return shape[-1], int(np.prod(shape[:-1]))


def layer_sizes(model, conv_bits=None, dw_bits=None, first_last_bits=8):
    """Per-kernel Eq. (6) terms of ``model``.

    Args:
      model: a built tf_keras model: float, or QAT (made by :func:`tfq_pareto.apply`
        or by tfmot), whose bits are then read from its quantization plan
        (:func:`tfq_pareto.plan.plan_of`).
      conv_bits: for a float model, the bits of standard convs and dense layers;
        None counts every weight at 32 bits (the float model as it is).
      dw_bits: for a float model, the bits of depthwise kernels; None: conv_bits.
      first_last_bits: for a float model with ``conv_bits``, the bits of the first
        and last conv/dense layers; None: no exception.

    Returns:
      A list of :class:`LayerSize`, in layer order.
    """
    quantized = any(hasattr(l, "quantize_config") for l in model.layers)
    if quantized and conv_bits is not None:
        raise ValueError(
            f"model {model.name!r} is already quantization-aware: its bits are read from "
            f"it; pass conv_bits=None (received {conv_bits!r})"
        )
    if conv_bits is not None:
        check_bits("conv_bits", conv_bits)
    if dw_bits is not None:
        check_bits("dw_bits", dw_bits)
    if first_last_bits is not None:
        check_bits("first_last_bits", first_last_bits)
    first_last = set()
    if conv_bits is not None and first_last_bits is not None and graph.is_graph_model(model):
        first, last = graph.first_and_last_layers(model)
        first_last = first | last
    qplan = plan_lib.plan_of(model) if quantized else None
    rows = []
    for wrapper in model.layers:
        layer = graph.unwrap(wrapper)
        if not graph.is_weighted(layer):
            continue
        if quantized:
            entry = qplan.get(layer.name)
            bits = entry.weight_bits if entry is not None and entry.weighted else FLOAT_BITS
        for suffix, kind, depthwise, shape in _kernels(layer):
            if quantized:
                layer_bits = bits
            elif conv_bits is None:
                layer_bits = FLOAT_BITS
            elif layer.name in first_last and first_last_bits is not None:
                layer_bits = first_last_bits
            elif depthwise and dw_bits is not None:
                layer_bits = dw_bits
            else:
                layer_bits = conv_bits
            filters, fan_in = _filters_and_fan_in(shape, depthwise)
            rows.append(LayerSize(layer.name + suffix, kind, filters, fan_in, layer_bits))
    return rows


def model_size(model, conv_bits=None, dw_bits=None, first_last_bits=8):
    """Model size in bits, Eq. (6): sum over filters of b * C_in * K_w * K_h.

    Biases and BatchNormalization parameters are excluded, as in the paper.
    Arguments as in :func:`layer_sizes`.

    Returns:
      The size in bits (int).
    """
    return sum(row.size_bits for row in layer_sizes(model, conv_bits, dw_bits, first_last_bits))


@dataclasses.dataclass(frozen=True)
class SizeSummary:
    """Per-layer Eq. (6) table with totals; ``str()`` renders it."""

    model_name: str
    layers: tuple
    memory: "MemoryFootprint" = None

    @property
    def total_bits(self):
        return sum(row.size_bits for row in self.layers)

    @property
    def total_kib(self):
        return self.total_bits / 8 / 1024

    @property
    def weights(self):
        return sum(row.weights for row in self.layers)

    @property
    def float32_bits(self):
        return FLOAT_BITS * self.weights

    @property
    def int8_bits(self):
        return 8 * self.weights

    @property
    def compression_ratio(self):
        """float32 size / this size."""
        return self.float32_bits / self.total_bits if self.total_bits else float("nan")

    def as_dict(self):
        """Plain data (for JSON): rows and totals."""
        return {
            "model": self.model_name,
            "layers": [
                {**dataclasses.asdict(r), "size_bits": r.size_bits} for r in self.layers
            ],
            "total_bits": self.total_bits,
            "total_kib": self.total_kib,
            "weights": self.weights,
            "float32_bits": self.float32_bits,
            "int8_bits": self.int8_bits,
            "compression_ratio": self.compression_ratio,
            "memory": self.memory.as_dict() if self.memory is not None else None,
        }

    def __str__(self):
        total = self.total_bits or 1
        header = ("layer", "type", "filters", "fan-in d", "bits", "size (bits)", "share")
        body = [
            (r.name, r.type, f"{r.filters:,}", f"{r.fan_in:,}", str(r.bits),
             f"{r.size_bits:,}", f"{100 * r.size_bits / total:.1f}%")
            for r in self.layers
        ]
        widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]

        def fmt(row):
            return "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))
            )

        rule = "-" * len(fmt(header))
        lines = [f"Model size, Eq. (6): {self.model_name}", rule, fmt(header), rule]
        lines += [fmt(row) for row in body]
        lines += [
            rule,
            f"Total: {self.total_bits:,} bits = {self.total_kib:,.2f} KiB "
            f"({self.weights:,} weights)",
            f"float32 equivalent: {self.float32_bits / 8 / 1024:,.2f} KiB; "
            f"8-bit equivalent: {self.int8_bits / 8 / 1024:,.2f} KiB; "
            f"compression vs float32: {self.compression_ratio:.2f}x",
        ]
        if self.memory is not None:
            lines.append(
                f"inference memory (App. F, batch 1, {self.memory.act_bits}-bit activations): "
                f"{self.memory.total_bytes / 1024:,.2f} KiB = largest input + largest output "
                f"feature map {self.memory.activation_bytes:,} B + weights "
                f"{self.memory.weight_bytes:,} B"
            )
        return "\n".join(lines)


def summary(model, conv_bits=None, dw_bits=None, first_last_bits=8, print_fn=None):
    """Per-layer Eq. (6) table in the spirit of larq's ``summary``.

    Args:
      model, conv_bits, dw_bits, first_last_bits: as in :func:`layer_sizes`.
      print_fn: if given (e.g. ``print``), called with the rendered table.

    Returns:
      A :class:`SizeSummary`; ``str(result)`` is the table.
    """
    rows = tuple(layer_sizes(model, conv_bits, dw_bits, first_last_bits))
    try:
        memory = memory_footprint(model, conv_bits=conv_bits, dw_bits=dw_bits,
                                  first_last_bits=first_last_bits)
    except ValueError:  # e.g. inputs of unknown size
        memory = None
    result = SizeSummary(model.name, rows, memory)
    if print_fn is not None:
        print_fn(str(result))
    return result


def _activation_bits(model):
    """The activation bits of a QAT model: the most common output fake-quant width in its plan."""
    bits = plan_lib.plan_of(model).common_activation_bits
    return 8 if bits is None else bits


def _elements(shape, batch_size):
    shape = shape if isinstance(shape, list) else [shape]
    total = 0
    for s in shape:
        dims = list(s[1:])
        if any(d is None for d in dims):
            raise ValueError(
                f"memory_footprint needs fixed input sizes; received a feature map of shape {s}"
            )
        total += int(np.prod(dims)) * batch_size
    return total


@dataclasses.dataclass(frozen=True)
class MemoryFootprint:
    """Appendix F: largest input + largest output feature map + all weights, in bytes."""

    model_name: str
    batch_size: int
    act_bits: int
    weight_bits: int
    layers: tuple  # (name, input elements, output elements)

    @property
    def largest_input(self):
        return max(self.layers, key=lambda r: r[1])

    @property
    def largest_output(self):
        return max(self.layers, key=lambda r: r[2])

    @property
    def activation_bytes(self):
        elements = self.largest_input[1] + self.largest_output[2]
        return int(np.ceil(elements * self.act_bits / 8))

    @property
    def weight_bytes(self):
        return int(np.ceil(self.weight_bits / 8))

    @property
    def total_bytes(self):
        return self.activation_bytes + self.weight_bytes

    def as_dict(self):
        return {
            "model": self.model_name, "batch_size": self.batch_size, "act_bits": self.act_bits,
            "largest_input": {"layer": self.largest_input[0], "elements": self.largest_input[1]},
            "largest_output": {"layer": self.largest_output[0], "elements": self.largest_output[2]},
            "activation_bytes": self.activation_bytes, "weight_bytes": self.weight_bytes,
            "total_bytes": self.total_bytes,
            "layers": [{"name": n, "input_elements": i, "output_elements": o}
                       for n, i, o in self.layers],
        }

    def __str__(self):
        width = max(len(n) for n, _, _ in self.layers)
        lines = [f"Inference memory, Appendix F: {self.model_name} (batch {self.batch_size}, "
                 f"{self.act_bits}-bit activations)",
                 f"{'layer'.ljust(width)}  {'input (elements)':>17}  {'output (elements)':>18}"]
        lines += [f"{n.ljust(width)}  {i:>17,}  {o:>18,}" for n, i, o in self.layers]
        lines += [
            f"largest input: {self.largest_input[0]} ({self.largest_input[1]:,}); largest output: "
            f"{self.largest_output[0]} ({self.largest_output[2]:,})",
            f"activations {self.activation_bytes:,} B + weights {self.weight_bytes:,} B = "
            f"{self.total_bytes:,} B ({self.total_bytes / 1024:,.2f} KiB)",
        ]
        return "\n".join(lines)


def memory_footprint(model, batch_size=1, *, conv_bits=None, dw_bits=None, first_last_bits=8,
                     act_bits=None):
    """Appendix F inference memory: largest input feature map + largest output feature map
    (at the activation bits) + all conv/dense weights (at their bits, Eq. 6), in bytes.

    Args:
      model: a built model with fixed input sizes (float or QAT).
      batch_size: images per inference (>= 1).
      conv_bits, dw_bits, first_last_bits: weight bits of a float model, as in
        :func:`model_size`; a QAT model's are read from it.
      act_bits: activation bits; default: read from a QAT model, 32 for a float one.
        A layer with several inputs (Add, Concatenate) holds all of them.

    Returns:
      A :class:`MemoryFootprint` (``.total_bytes``; ``str()`` is a per-layer table).
    """
    checks.check_int("batch_size", batch_size)
    quantized = any(hasattr(l, "quantize_config") for l in model.layers)
    if act_bits is None:
        act_bits = _activation_bits(model) if quantized else FLOAT_BITS
    elif act_bits != FLOAT_BITS:
        check_bits("act_bits", act_bits)
    weight_bits = model_size(model, conv_bits, dw_bits, first_last_bits)
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        rows.append((graph.unwrap(layer).name, _elements(layer.input_shape, batch_size),
                     _elements(layer.output_shape, batch_size)))
    return MemoryFootprint(model.name, batch_size, int(act_bits), weight_bits, tuple(rows))
