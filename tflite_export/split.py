"""Splitting a filter op by output channels, so that no DECODE writes more than a cap.

TFLite Micro's DECODE op writes a packed filter, decoded to int8, into the
tensor arena before the op that reads it runs. The arena must then hold the
largest decoded filter (e.g. 3x3x180x180 = 291,600 B for the widened 1-bit
ResNet-20 of the demo), which the int8 file, whose filters stay in flash, never
needs. :func:`split_filters` rewrites the int8 model so that each such op
becomes ``G`` ops of the same kind over consecutive groups of output channels
(each with its slice of the filter, the bias and the per-channel scales), joined
by one ``CONCATENATION`` on the channel axis into the original output tensor.

The rewrite is exact: with per-channel weights, output channel ``c`` of a conv
or fully connected op depends only on filter row ``c``, its bias and its scale,
and the groups' outputs keep the output's quantization, so ``CONCATENATION`` only
copies int8 values. Each group's filter is then packed on its own, and its
DECODE writes at most ``max_decode_bytes``. The cost: a few hundred bytes of
graph per group in flash, and the groups' outputs live in the arena together
until ``CONCATENATION`` runs (one extra copy of that op's output).

Depthwise convs are not split: a channel group of a depthwise conv would also
need a slice of its input (a SPLIT op and its copy); their filters are small
(K x K per channel).
"""

import copy
import dataclasses

import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflite_export.flatbuffer import op_name, read, write
from tflite_export.slim import drop_unused_tensors as _drop_unused_tensors

#: The most inputs TFLM's CONCATENATION takes (``kMaxInputNum`` in
#: tensorflow/lite/micro/kernels/concatenation.cc); more groups are joined in a tree.
MAX_CONCAT_INPUTS = 10

#: Ops that can be split along output channels: the filter's channel axis is 0 and
#: the output's channels are its last axis.
SPLITTABLE_OPS = ("CONV_2D", "FULLY_CONNECTED")


@dataclasses.dataclass(frozen=True)
class Split:
    """How one layer's filter was split.

    Attributes:
      name: the layer (the manifest's layer name).
      groups: ``[start, stop)`` output-channel ranges, in order.
      tensors: the filter tensor index of each group in the split model.
      decode_bytes: the largest group's filter bytes (what its DECODE writes).
    """

    name: str
    groups: tuple
    tensors: tuple
    decode_bytes: int


def channel_groups(channels, bytes_per_channel, max_decode_bytes):
    """Consecutive ``[start, stop)`` channel ranges, each at most ``max_decode_bytes``.

    The groups are as equal as possible: ``G = ceil(total / max_decode_bytes)``
    groups (more when a channel count does not divide); a single channel larger
    than the cap is a group of its own.
    """
    per_group = max(1, int(max_decode_bytes // bytes_per_channel))
    count = -(-channels // per_group)
    bounds = np.linspace(0, channels, count + 1).round().astype(int)
    return tuple((int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]))


def _concatenation_code(model):
    builtin = schema.BuiltinOperator.CONCATENATION
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and not code.customCode:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = builtin
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _slice_quantization(quantization, start, stop):
    part = copy.deepcopy(quantization)
    if part is not None and part.scale is not None and len(part.scale) > 1:
        part.scale = list(np.asarray(part.scale)[start:stop])
        part.zeroPoint = list(np.asarray(part.zeroPoint)[start:stop])
    return part


def _add_constant(model, graph, template, values, start, stop, suffix):
    """A new constant tensor: ``template`` (a filter or bias) cut to channels start..stop."""
    buffer = schema.BufferT()
    buffer.data = np.ascontiguousarray(values[start:stop]).view(np.uint8).reshape(-1)
    model.buffers.append(buffer)
    tensor = copy.deepcopy(template)
    tensor.buffer = len(model.buffers) - 1
    tensor.shape = np.array([stop - start, *values.shape[1:]], dtype=np.int32)
    tensor.shapeSignature = None
    tensor.quantization = _slice_quantization(template.quantization, start, stop)
    tensor.name = (template.name or b"") + suffix
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _concatenations(graph, code, inputs, output):
    """CONCATENATION ops joining ``inputs`` on the last axis into ``output``: one op, or a
    tree of them when there are more than :data:`MAX_CONCAT_INPUTS` inputs."""
    ops = []
    target = graph.tensors[output]
    level = 0
    while len(inputs) > MAX_CONCAT_INPUTS:
        size = -(-len(inputs) // -(-len(inputs) // MAX_CONCAT_INPUTS))
        joined = []
        for k in range(0, len(inputs), size):
            chunk = inputs[k:k + size]
            tensor = copy.deepcopy(target)
            tensor.buffer = 0
            channels = sum(int(graph.tensors[t].shape[-1]) for t in chunk)
            tensor.shape = np.array([*target.shape[:-1], channels], dtype=np.int32)
            tensor.shapeSignature = None
            tensor.name = (target.name or b"") + f"/join{level}_{k}".encode()
            graph.tensors.append(tensor)
            joined.append(len(graph.tensors) - 1)
            ops.append(_concatenation(code, chunk, joined[-1], len(target.shape) - 1))
        inputs = joined
        level += 1
    ops.append(_concatenation(code, inputs, output, len(target.shape) - 1))
    return ops


def _concatenation(code, inputs, output, axis):
    op = schema.OperatorT()
    op.opcodeIndex = code
    op.inputs = list(inputs)
    op.outputs = [output]
    op.builtinOptionsType = schema.BuiltinOptions.ConcatenationOptions
    op.builtinOptions = schema.ConcatenationOptionsT()
    op.builtinOptions.axis = axis
    op.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.NONE
    return op


def _constant(model, tensor, dtype):
    data = model.buffers[tensor.buffer].data
    return np.frombuffer(bytes(bytearray(data)), dtype=dtype).reshape(tensor.shape)


@dataclasses.dataclass(frozen=True)
class SplitModel:
    """:func:`split_filters`' result.

    Attributes:
      data: the model bytes (the int8 model's own when nothing was split).
      splits: one :class:`Split` per split layer.
      filter_tensors: ``{layer name: (tensor index, ...)}`` of every layer below
        8 bits in ``data``: its groups' filters, or its one filter.
    """

    data: bytes
    splits: tuple
    filter_tensors: dict


def _grouped(graph, op, weights):
    """True for a grouped CONV_2D (filter depth below the input's channels, RegNet's convs).

    Its output channels come in groups that each read their own slice of the
    input; a part holding some of them would need its input sliced too, and
    TFLM's conv kernel crashes (SIGFPE) on a part whose channels are not a
    whole number of groups. Grouped convs are left whole: their filters hold
    1/groups of a standard conv's weights, so their DECODE is small anyway.
    """
    channels_in = int(graph.tensors[op.inputs[0]].shape[-1])
    return weights.ndim == 4 and int(weights.shape[-1]) != channels_in


def split_filters(int8_bytes, layers, max_decode_bytes):
    """The int8 model with each large filter op split by output channels.

    Args:
      int8_bytes: the int8 model (bytes or a parsed model).
      layers: the manifest's layer rows (``name``, ``op``, ``tensor``, ``bits``);
        only layers below 8 bits (the ones that are packed) are split.
      max_decode_bytes: the most bytes one DECODE may write; None: no split.
        Grouped convs are never split (see :func:`_grouped`).

    Returns:
      a :class:`SplitModel`.
    """
    unsplit = SplitModel(_bytes(int8_bytes), (), {
        layer["name"]: (layer["tensor"],) for layer in layers if layer["bits"] < 8})
    if max_decode_bytes is None:
        return unsplit
    model = read(int8_bytes)
    graph = model.subgraphs[0]
    by_tensor = {layer["tensor"]: layer for layer in layers if layer["bits"] < 8}
    concat_code = None
    operators, splits = [], []
    for op in graph.operators:
        name = op_name(model, op)
        layer = by_tensor.get(int(op.inputs[1])) if len(op.inputs) > 1 else None
        if name not in SPLITTABLE_OPS or layer is None:
            operators.append(op)
            continue
        filt = graph.tensors[op.inputs[1]]
        weights = _constant(model, filt, np.int8)
        channels = weights.shape[0]
        per_channel = int(np.prod(weights.shape[1:]))
        if weights.size <= max_decode_bytes or channels < 2 or _grouped(graph, op, weights):
            operators.append(op)
            continue
        groups = channel_groups(channels, per_channel, max_decode_bytes)
        has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
        bias_tensor = graph.tensors[op.inputs[2]] if has_bias else None
        bias = _constant(model, bias_tensor, np.int32) if has_bias else None
        output = graph.tensors[op.outputs[0]]
        pieces, filter_tensors = [], []
        for g, (start, stop) in enumerate(groups):
            suffix = f"/split{g}".encode()
            w = _add_constant(model, graph, filt, weights, start, stop, suffix)
            filter_tensors.append(w)
            inputs = [int(op.inputs[0]), w]
            if has_bias:
                inputs.append(_add_constant(model, graph, bias_tensor, bias, start, stop, suffix))
            elif len(op.inputs) > 2:
                inputs.append(-1)
            out = copy.deepcopy(output)
            out.buffer = 0
            out.shape = np.array([*output.shape[:-1], stop - start], dtype=np.int32)
            out.shapeSignature = None
            out.name = (output.name or b"") + suffix
            graph.tensors.append(out)
            part = copy.deepcopy(op)
            part.inputs = inputs
            part.outputs = [len(graph.tensors) - 1]
            pieces.append(part)
            operators.append(part)
        if concat_code is None:
            concat_code = _concatenation_code(model)
        operators.extend(_concatenations(graph, concat_code, [int(p.outputs[0]) for p in pieces],
                                         int(op.outputs[0])))
        splits.append((layer["name"], groups, [graph.tensors[t] for t in filter_tensors],
                       max(b - a for a, b in groups) * per_channel))
    if not splits:
        return unsplit
    kept = {layer["name"]: [graph.tensors[layer["tensor"]]] for layer in by_tensor.values()}
    kept.update({name: tensors for name, _, tensors, _ in splits})
    graph.operators = operators
    _drop_unused_tensors(model)  # the unsplit filters, biases and their buffers

    positions = {id(t): i for i, t in enumerate(graph.tensors)}

    def index(tensor):  # a tensor's index after the drop (one lookup, not a scan per tensor)
        return positions[id(tensor)]

    return SplitModel(
        write(model),
        tuple(Split(name, groups, tuple(index(t) for t in tensors), decode_bytes)
              for name, groups, tensors, decode_bytes in splits),
        {name: tuple(index(t) for t in tensors) for name, tensors in kept.items()})


def _bytes(model):
    return bytes(model.data if hasattr(model, "data") else model)
