"""Slimming a packed .tflite: the passes, and the stage that applies them checked on TFLM.

Each pass takes and returns model bytes and touches no value a TFLM kernel
reads. :func:`slim` applies them in :data:`SLIMMING_STEPS` order and keeps a
pass only when the TFLite Micro interpreter computes exactly the same outputs
with it, so a pass that some model breaks is skipped and reported, never shipped.
"""

import dataclasses

import numpy as np
from tensorflow.lite.tools import flatbuffer_utils
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflite_export import runtime
from tflite_export.flatbuffer import DECODE_OP, FILTER_OPS, op_name, read, write



def strip_names(model_bytes):
    """Empties tensor and subgraph names, the description and the signature defs.

    ``flatbuffer_utils.strip_strings`` does it; the signature defs are then
    written as an empty vector rather than left out, as before it was used, so
    that exported files stay byte-identical.
    """
    model = read(model_bytes)
    flatbuffer_utils.strip_strings(model)
    model.signatureDefs = []
    return write(model)


def strip_metadata(model_bytes):
    """Drops the converter's metadata entries and their buffers (TFLM reads none)."""
    model = read(model_bytes)
    dropped = {m.buffer for m in (model.metadata or [])}
    model.metadata = []
    model.metadataBuffer = []
    _drop_buffers(model, dropped)
    return write(model)


def _drop_buffers(model, dropped):
    used = {t.buffer for g in model.subgraphs for t in g.tensors}
    used |= {m.buffer for m in (model.metadata or [])}
    dropped = {b for b in dropped if b not in used and b != 0}
    if not dropped:
        return
    remap, kept = {}, []
    for index, buffer in enumerate(model.buffers):
        if index in dropped:
            continue
        remap[index] = len(kept)
        kept.append(buffer)
    model.buffers = kept
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            tensor.buffer = remap[tensor.buffer]
    for entry in model.metadata or []:  # e.g. min_runtime_version: kept, and now elsewhere
        entry.buffer = remap[entry.buffer]


def collapse_zero_points(model_bytes):
    """Writes per-channel zero-point arrays that are all 0 as a single 0."""
    model = read(model_bytes)
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            q = tensor.quantization
            if q is not None and q.zeroPoint is not None and len(q.zeroPoint) > 1 \
                    and not np.any(np.asarray(q.zeroPoint)):
                q.zeroPoint = [0]
    return write(model)


def drop_unread_quantization(model_bytes):
    """Removes quantization parameters that no TFLM kernel reads.

    These are the int32 bias tensors of filter ops (the kernels derive the bias
    scale from the input and filter scales) and the packed index tensors
    (DECODE copies values from the tables; the decoded tensor keeps the scales).
    """
    model = read(model_bytes)
    for graph in model.subgraphs:
        unread = set()
        for op in graph.operators:
            name = op_name(model, op)
            if name in FILTER_OPS and len(op.inputs) > 2 and op.inputs[2] >= 0:
                if graph.tensors[op.inputs[2]].type == schema.TensorType.INT32:
                    unread.add(int(op.inputs[2]))
            elif name == DECODE_OP:
                unread.update(int(t) for t in op.inputs)
        for index in unread:
            graph.tensors[index].quantization = None
    return write(model)


def drop_shape_signatures(model_bytes):
    """Drops ``shape_signature`` (dynamic-shape hints; TFLM uses the static ``shape``)."""
    model = read(model_bytes)
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            tensor.shapeSignature = None
            if tensor.quantization is not None:
                # Float min/max are calibration records; kernels read scale and zero point.
                tensor.quantization.min = None
                tensor.quantization.max = None
    return write(model)


def share_empty_buffers(model_bytes):
    """Points every tensor without constant data at the empty buffer 0; drops the rest."""
    model = read(model_bytes)
    empty = set()
    for index, buffer in enumerate(model.buffers):
        if index and (buffer.data is None or len(buffer.data) == 0) and not buffer.offset:
            empty.add(index)
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            if tensor.buffer in empty:
                tensor.buffer = 0
    _drop_buffers(model, empty)
    return write(model)


def _opcode_index(model, builtin):
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and not code.customCode:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def drop_unused_tensors(model):
    """Removes tensors no operator or subgraph input/output refers to; reindexes."""
    for graph in model.subgraphs:
        used = set(int(t) for t in graph.inputs) | set(int(t) for t in graph.outputs)
        for op in graph.operators:
            used.update(int(t) for t in op.inputs if t >= 0)
            used.update(int(t) for t in op.outputs)
        remap = {old: new for new, old in enumerate(sorted(used))}
        graph.tensors = [graph.tensors[old] for old in sorted(used)]
        for op in graph.operators:
            op.inputs = [remap[int(t)] if t >= 0 else -1 for t in op.inputs]
            op.outputs = [remap[int(t)] for t in op.outputs]
        graph.inputs = [remap[int(t)] for t in graph.inputs]
        graph.outputs = [remap[int(t)] for t in graph.outputs]
        for signature in model.signatureDefs or []:
            if signature.subgraphIndex == model.subgraphs.index(graph):
                for item in (signature.inputs or []) + (signature.outputs or []):
                    item.tensorIndex = remap[int(item.tensorIndex)]
    _drop_buffers(model, set(range(1, len(model.buffers))))
    used_codes = sorted({op.opcodeIndex for g in model.subgraphs for op in g.operators})
    code_map = {old: new for new, old in enumerate(used_codes)}
    model.operatorCodes = [model.operatorCodes[old] for old in used_codes]
    for graph in model.subgraphs:
        for op in graph.operators:
            op.opcodeIndex = code_map[op.opcodeIndex]


def pointwise_conv_to_fully_connected(model_bytes):
    """Rewrites RESHAPE -> 1x1 CONV_2D on a 1x1 map -> RESHAPE as one FULLY_CONNECTED.

    Undoes :class:`tflite_export.twin.PointwiseDense` in the TFLM-only packed file:
    the int8 file needs the conv form to match LiteRT bit for bit; on TFLM both
    forms requantize alike, and the FULLY_CONNECTED form carries two ops, two
    tensors and two shape constants fewer. The filter keeps its data and scales
    and is viewed as ``(units, fan_in)``.
    """
    model = read(model_bytes)
    graph = model.subgraphs[0]
    producers, consumers = {}, {}
    for index, op in enumerate(graph.operators):
        for t in op.outputs:
            producers[int(t)] = index
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(index)
    outputs = set(int(t) for t in graph.outputs)
    fc_code = None
    removed = set()
    for index, op in enumerate(graph.operators):
        if op_name(model, op) != "CONV_2D" or index in removed:
            continue
        filt = graph.tensors[op.inputs[1]]
        if len(filt.shape) != 4 or tuple(filt.shape[1:3]) != (1, 1):
            continue
        x, y = int(op.inputs[0]), int(op.outputs[0])
        if tuple(graph.tensors[x].shape[1:3]) != (1, 1) or op.builtinOptions.strideH != 1 \
                or op.builtinOptions.strideW != 1:
            continue
        before, after = producers.get(x), consumers.get(y, [])
        if before is None or len(after) != 1 or y in outputs or len(consumers.get(x, [])) != 1:
            continue
        first, last = graph.operators[before], graph.operators[after[0]]
        if op_name(model, first) != "RESHAPE" or op_name(model, last) != "RESHAPE":
            continue
        flat_in, flat_out = int(first.inputs[0]), int(last.outputs[0])
        if len(graph.tensors[flat_in].shape) != 2 or len(graph.tensors[flat_out].shape) != 2:
            continue
        if fc_code is None:
            fc_code = _opcode_index(model, schema.BuiltinOperator.FULLY_CONNECTED)
        options = schema.FullyConnectedOptionsT()
        options.fusedActivationFunction = op.builtinOptions.fusedActivationFunction
        options.keepNumDims = False
        op.opcodeIndex = fc_code
        op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
        op.builtinOptions = options
        op.inputs = [flat_in] + list(op.inputs[1:])
        op.outputs = [flat_out]
        filt.shape = np.array([filt.shape[0], filt.shape[3]], np.int32)
        removed.update({before, after[0]})
    if not removed:
        return model_bytes
    graph.operators = [op for i, op in enumerate(graph.operators) if i not in removed]
    drop_unused_tensors(model)
    return write(model)


def drop_decode_input_shapes(model_bytes):
    """Drops the shapes of DECODE's inputs (packed indices, tables) and every ``has_rank``.

    TFLM's LUT decoder reads only the data of its inputs; the element count and
    channels come from the decoded output tensor's shape and scales.
    """
    model = read(model_bytes)
    for graph in model.subgraphs:
        for op in graph.operators:
            if op_name(model, op) == DECODE_OP:
                for index in op.inputs:
                    graph.tensors[index].shape = None
        for tensor in graph.tensors:
            tensor.hasRank = False
    return write(model)


def share_vectors(model_bytes):
    """Writes every distinct vector once (shapes, scales, zero points, buffers)."""
    return write(read(model_bytes), share_vectors=True)


#: The slimming steps, in the order export() applies them.
SLIMMING_STEPS = (
    ("names_and_signatures", strip_names),
    ("metadata", strip_metadata),
    ("zero_points", collapse_zero_points),
    ("unread_quantization", drop_unread_quantization),
    ("shape_signatures_and_min_max", drop_shape_signatures),
    ("empty_buffers", share_empty_buffers),
    ("pointwise_conv_to_fully_connected", pointwise_conv_to_fully_connected),
    ("decode_input_shapes", drop_decode_input_shapes),
    ("shared_vectors", share_vectors),
)


@dataclasses.dataclass(frozen=True)
class Slimmed:
    """What :func:`slim` produced.

    Attributes:
      data: the slimmed model bytes.
      steps: one dict per pass: ``step``, ``bytes_before``, ``bytes_after``,
        ``saved_bytes``, ``tflm_bit_exact``, ``applied``.
    """

    data: bytes
    steps: list


def slim(packed_bytes, inputs, arena, steps=SLIMMING_STEPS):
    """Applies ``steps`` to ``packed_bytes``, each kept only if TFLM stays bit-exact.

    Args:
      packed_bytes: a packed model.
      inputs: quantized inputs the check runs on.
      arena: TFLM arena bytes for the runs.
      steps: ``(label, pass)`` pairs (default :data:`SLIMMING_STEPS`).

    Returns:
      :class:`Slimmed`.
    """
    reference = runtime.micro_outputs(packed_bytes, inputs, arena)
    records = []
    current = packed_bytes
    for label, step in steps:
        candidate = step(current)
        try:
            exact = np.array_equal(runtime.micro_outputs(candidate, inputs, arena), reference)
        except runtime.MicroError:
            exact = False
        records.append({"step": label, "bytes_before": len(current),
                        "bytes_after": len(candidate) if exact else len(current),
                        "saved_bytes": len(current) - len(candidate) if exact else 0,
                        "tflm_bit_exact": exact, "applied": exact})
        if exact:
            current = candidate
    return Slimmed(current, records)
