"""Reading, inspecting and slimming .tflite flatbuffers (TFLite schema object API).

Uses the schema module that ``tflite-micro`` ships. Slimming steps each return
new model bytes, so :mod:`tflite_export.export` can check every step bit-exact on
the TFLite Micro interpreter and report what it saved.
"""

import dataclasses
import os
import tempfile

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

#: Builtin operator code -> name, e.g. 3 -> "CONV_2D".
OP_NAMES = {
    value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}
#: Ops whose input 1 is a filter tensor quantized per channel, and that channel's axis.
FILTER_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
DECODE_OP = "TFLM_DECODE"
_FILE_IDENTIFIER = b"TFL3"


def read(model_bytes):
    """The ``ModelT`` object tree of a .tflite flatbuffer."""
    return schema.ModelT.InitFromPackedBuf(bytes(model_bytes), 0)


class _SharingBuilder(flatbuffers.Builder):
    """A flatbuffer builder that writes each distinct NumPy vector once.

    Identical vectors (tensor shapes, zero points, scales, even buffers) are
    stored once and referred to from every table that uses them, which the
    format allows. ``uint8`` vectors (buffer data) are 16-byte aligned, the
    schema's ``force_align`` that the Python library otherwise ignores.
    """

    def __init__(self, size=1024):
        super().__init__(size)
        self._written = {}

    def CreateNumpyVector(self, x):  # pylint: disable=invalid-name
        x = np.ascontiguousarray(x)
        key = (x.dtype.str, x.shape, x.tobytes())
        if key in self._written:
            return self._written[key]
        little = x if x.dtype.str[0] in "<|" else x.byteswap()
        payload = little.astype(little.dtype.newbyteorder("<"), copy=False).tobytes()
        alignment = 16 if x.dtype == np.uint8 else x.dtype.alignment
        self.StartVector(x.itemsize, x.size, alignment)
        self.head = self.head - len(payload)
        self.Bytes[self.head:self.head + len(payload)] = payload
        self.vectorNumElems = x.size
        offset = self.EndVector()
        self._written[key] = offset
        return offset


def _as_arrays(model):
    """Lists set by the slimming steps -> NumPy arrays, so the builder can share them."""
    for graph in model.subgraphs:
        for op in graph.operators:
            op.inputs = np.asarray(op.inputs, np.int32)
            op.outputs = np.asarray(op.outputs, np.int32)
        graph.inputs = np.asarray(graph.inputs, np.int32)
        graph.outputs = np.asarray(graph.outputs, np.int32)
        for tensor in graph.tensors:
            if tensor.shape is not None:
                tensor.shape = np.asarray(tensor.shape, np.int32)
            q = tensor.quantization
            if q is not None:
                if q.scale is not None:
                    q.scale = np.asarray(q.scale, np.float32)
                if q.zeroPoint is not None:
                    q.zeroPoint = np.asarray(q.zeroPoint, np.int64)
    for buffer in model.buffers:
        if buffer.data is not None:
            buffer.data = np.asarray(buffer.data, np.uint8)


def write(model, share_vectors=False):
    """Serializes a ``ModelT`` with its buffers 16-byte aligned, as TFLM requires.

    Args:
      model: the object tree.
      share_vectors: write each distinct vector once (:class:`_SharingBuilder`);
        otherwise re-serialize through TFLM's C++ aligner, as its compressor does.
    """
    if share_vectors:
        _as_arrays(model)
        builder = _SharingBuilder(1024)
        builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
        return bytes(builder.Output())
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return align(bytes(builder.Output()))


def align(model_bytes):
    """Re-serializes with the schema's ``force_align`` honoured (TFLM's C++ aligner)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.tflite"), os.path.join(tmp, "out.tflite")
        with open(src, "wb") as f:
            f.write(model_bytes)
        tflite_flatbuffer_align_wrapper.align_tflite_model(src, dst)
        with open(dst, "rb") as f:
            return f.read()


def op_name(model, op):
    """``"CONV_2D"``, ..., or the custom code (e.g. ``"TFLM_DECODE"``)."""
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if code.customCode:
        return code.customCode.decode()
    return OP_NAMES.get(builtin, str(builtin))


def op_names(model_bytes):
    """Sorted distinct operator names of a model (what a TFLM op resolver must register)."""
    model = read(model_bytes)
    return sorted({op_name(model, op) for sg in model.subgraphs for op in sg.operators})


def _array(model, tensor, dtype):
    data = model.buffers[tensor.buffer].data
    if data is None:
        return None
    return np.frombuffer(bytes(np.asarray(data, np.uint8)), dtype).reshape(
        [int(d) for d in tensor.shape] if dtype != np.uint8 else -1
    )


@dataclasses.dataclass
class FilterTensor:
    """The int8 filter of one CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED op.

    Attributes:
      op_index: the operator's index in subgraph 0.
      op: the operator name.
      tensor: the filter's tensor index.
      name: the tensor's name (as the converter wrote it).
      axis: the quantized (channel) dimension.
      values: int8 array, TFLite layout (OHWI conv, 1HWC depthwise, OI dense).
      scales: per-channel float32 scales.
      bias: the op's bias tensor index, or None.
    """

    op_index: int
    op: str
    tensor: int
    name: str
    axis: int
    values: np.ndarray
    scales: np.ndarray
    bias: object

    @property
    def channels(self):
        return int(self.values.shape[self.axis])

    def rows(self):
        """Filters as rows: ``(channels, fan_in)``."""
        return np.moveaxis(self.values, self.axis, 0).reshape(self.channels, -1)

    def distinct_counts(self):
        return [int(np.unique(row).size) for row in self.rows()]


def filter_tensors(model_bytes):
    """The int8 filters of an (unpacked) int8 model, in operator order."""
    model = read(model_bytes)
    graph = model.subgraphs[0]
    found = []
    for index, op in enumerate(graph.operators):
        name = op_name(model, op)
        if name not in FILTER_OPS:
            continue
        tensor = graph.tensors[op.inputs[1]]
        if tensor.type != schema.TensorType.INT8:
            continue
        values = _array(model, tensor, np.int8)
        if values is None:
            continue
        bias = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        found.append(FilterTensor(index, name, int(op.inputs[1]), (tensor.name or b"").decode(),
                                  FILTER_OPS[name], values.copy(),
                                  np.asarray(tensor.quantization.scale, np.float32), bias))
    return found


@dataclasses.dataclass
class PackedTensor:
    """One LUT-compressed filter in a packed model, decoded back.

    Attributes:
      consumer: operator index (in the packed model) of the op reading the filter.
      op: that op's name.
      shape: the decoded filter's shape.
      bits: index width read from the DECODE metadata.
      axis: channel axis of the value tables.
      index_bytes: bytes the packed indices occupy in the file.
      table_bytes: bytes of the DECODE metadata and value tables.
      decoded: int8 filter obtained by unpacking the indices through the tables.
    """

    consumer: int
    op: str
    shape: tuple
    bits: int
    axis: int
    index_bytes: int
    table_bytes: int
    decoded: np.ndarray


def unpack_indices(data, count, bits):
    """The first ``count`` ``bits``-wide indices of ``data``, big-endian bit order."""
    bitstream = np.unpackbits(np.frombuffer(bytes(data), np.uint8))[: count * bits]
    if bitstream.size < count * bits:
        raise ValueError(f"{len(data)} bytes hold fewer than {count} {bits}-bit indices")
    weights = 1 << np.arange(bits - 1, -1, -1)
    return bitstream.reshape(count, bits) @ weights


def packed_tensors(model_bytes):
    """Every LUT-compressed filter of a packed model, decoded with its tables.

    Reads the DECODE operators TFLM's compression inserted: inputs (encoded,
    ancillary) pairs, outputs the decoded tensors that filter ops consume. The
    ancillary tensor holds a 16-byte header (byte 5: axis << 4 | bitwidth; byte
    6: table stride) followed by the per-channel value tables.
    """
    model = read(model_bytes)
    graph = model.subgraphs[0]
    consumers = {}
    for index, op in enumerate(graph.operators):
        for position, tensor in enumerate(op.inputs):
            consumers.setdefault(int(tensor), []).append((index, position))
    found = []
    for op in graph.operators:
        if op_name(model, op) != DECODE_OP:
            continue
        pairs = list(zip(op.inputs[0::2], op.inputs[1::2]))
        for (encoded_index, ancillary_index), output_index in zip(pairs, op.outputs):
            encoded = graph.tensors[encoded_index]
            ancillary = bytes(np.asarray(model.buffers[graph.tensors[ancillary_index].buffer].data,
                                         np.uint8))
            output = graph.tensors[output_index]
            shape = tuple(int(d) for d in output.shape)
            bits, axis, stride = ancillary[5] & 0x7, ancillary[5] >> 4, ancillary[6]
            tables = np.frombuffer(ancillary[16:], np.int8)
            data = bytes(np.asarray(model.buffers[encoded.buffer].data, np.uint8))
            count = int(np.prod(shape))
            indices = unpack_indices(data, count, bits).reshape(shape)
            if axis == 0xF:
                decoded = tables[indices]
            else:
                channel = np.indices(shape)[axis]
                decoded = tables[channel * stride + indices]
            for consumer, _ in consumers.get(int(output_index), []):
                found.append(PackedTensor(consumer, op_name(model, graph.operators[consumer]),
                                          shape, int(bits), int(axis), len(data),
                                          len(ancillary), decoded.astype(np.int8)))
    return found


def constant_bytes(model_bytes):
    """Bytes of constant data per role: ``{"filters", "packed_indices", "tables", "biases", "other"}``."""
    model = read(model_bytes)
    graph = model.subgraphs[0]
    roles = {}
    for op in graph.operators:
        name = op_name(model, op)
        if name == DECODE_OP:
            for encoded, ancillary in zip(op.inputs[0::2], op.inputs[1::2]):
                roles.setdefault(int(encoded), "packed_indices")
                roles.setdefault(int(ancillary), "tables")
        elif name in FILTER_OPS:
            roles.setdefault(int(op.inputs[1]), "filters")
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                roles.setdefault(int(op.inputs[2]), "biases")
    totals = {"filters": 0, "packed_indices": 0, "tables": 0, "biases": 0, "other": 0}
    seen = set()
    for index, tensor in enumerate(graph.tensors):
        data = model.buffers[tensor.buffer].data
        if data is None or tensor.buffer in seen:
            continue
        seen.add(tensor.buffer)
        totals[roles.get(index, "other")] += len(data)
    return totals


# --------------------------------------------------------------------------- slimming
# Each step takes and returns model bytes. None of them touches a value any TFLM
# kernel reads; export() checks that by running TFLM before and after each one.


def strip_names(model_bytes):
    """Empties tensor and subgraph names, the description and the signature defs."""
    model = read(model_bytes)
    for graph in model.subgraphs:
        graph.name = None
        for tensor in graph.tensors:
            tensor.name = None
    model.description = None
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


def _drop_unused_tensors(model):
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
    _drop_unused_tensors(model)
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


def quantization_bytes(model_bytes):
    """Bytes of the distinct quantization vectors (scales, zero points) the model carries.

    Distinct by content: after :func:`share_vectors` identical vectors are stored once.
    """
    model = read(model_bytes)
    seen = set()
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            q = tensor.quantization
            if q is None:
                continue
            if q.scale is not None and len(q.scale):
                seen.add(("f4", np.asarray(q.scale, np.float32).tobytes()))
            if q.zeroPoint is not None and len(q.zeroPoint):
                seen.add(("i8", np.asarray(q.zeroPoint, np.int64).tobytes()))
    return sum(len(data) for _, data in seen)
