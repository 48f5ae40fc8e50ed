"""Reading, inspecting and writing .tflite flatbuffers (TFLite schema object API).

Uses the schema module that ``tflite-micro`` ships, and TensorFlow's
``tensorflow.lite.tools.flatbuffer_utils`` for op-code names. Every inspection
function takes model bytes or a :class:`ParsedModel`; a ``ParsedModel`` parses
its bytes once and keeps what was read from them, so the exporter reads each
file once however many questions it asks. The slimming passes are in
:mod:`tflite_export.slim`.
"""

import dataclasses
import functools
import os
import tempfile

import flatbuffers
import numpy as np
from tensorflow.lite.tools import flatbuffer_utils
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

#: Ops whose input 1 is a filter tensor quantized per channel, and that channel's axis.
FILTER_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
DECODE_OP = "TFLM_DECODE"
_FILE_IDENTIFIER = b"TFL3"

# The LUT ancillary tensor a DECODE op reads (tflite-micro compression/lut.py,
# decode_state_lut.cc): a 16-byte DECODE Common Metadata header, then the tables.
#: Bytes of the header before the value tables.
DECODE_HEADER_BYTES = 16
#: Header byte holding ``axis << 4 | bitwidth``.
DECODE_PARAMS_BYTE = 5
#: Header byte holding the value-table stride (values per channel).
DECODE_STRIDE_BYTE = 6
#: Mask of the index bit width in the params byte (1..7).
DECODE_BITWIDTH_MASK = 0x07
#: Shift of the channel axis in the params byte.
DECODE_AXIS_SHIFT = 4
#: Axis value meaning one value table for the whole tensor.
DECODE_PER_TENSOR_AXIS = 0xF


def read(model_bytes):
    """The ``ModelT`` object tree of a .tflite flatbuffer (a fresh copy: safe to edit)."""
    if isinstance(model_bytes, ParsedModel):
        model_bytes = model_bytes.data
    return schema.ModelT.InitFromPackedBuf(bytes(model_bytes), 0)


class ParsedModel:
    """A .tflite file parsed once: its bytes, its object tree and what was read from it.

    The inspection functions of this module accept it in place of bytes and
    cache their answers on it. Treat ``model`` as read-only; :func:`read` gives
    a copy to edit.
    """

    def __init__(self, data):
        self.data = bytes(data.data if isinstance(data, ParsedModel) else data)
        self.model = schema.ModelT.InitFromPackedBuf(self.data, 0)

    def __len__(self):
        return len(self.data)

    @functools.cached_property
    def filters(self):
        return _filter_tensors(self.model)

    @functools.cached_property
    def packed(self):
        return _packed_tensors(self.model)

    @functools.cached_property
    def ops(self):
        return sorted({op_name(self.model, op) for sg in self.model.subgraphs for op in sg.operators})

    @functools.cached_property
    def constants(self):
        return _constant_bytes(self.model)

    @functools.cached_property
    def quantization(self):
        return _quantization_bytes(self.model)


def parse(model):
    """``model`` (bytes or a :class:`ParsedModel`) as a :class:`ParsedModel`."""
    return model if isinstance(model, ParsedModel) else ParsedModel(model)


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
    """``"CONV_2D"``, ..., or the custom code (e.g. ``"TFLM_DECODE"``) of ``op`` in ``ModelT`` ``model``."""
    code = model.operatorCodes[op.opcodeIndex]
    if code.customCode:
        return code.customCode.decode()
    name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
    return name if name is not None else str(max(code.builtinCode, code.deprecatedBuiltinCode))


def op_names(model):
    """Sorted distinct operator names of a model (what a TFLM op resolver must register)."""
    return parse(model).ops


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


def filter_tensors(model):
    """The int8 filters of an (unpacked) int8 model, in operator order."""
    return list(parse(model).filters)


def _filter_tensors(model):
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


def packed_tensors(model):
    """Every LUT-compressed filter of a packed model, decoded with its tables.

    Reads the DECODE operators TFLM's compression inserted: inputs (encoded,
    ancillary) pairs, outputs the decoded tensors that filter ops consume. The
    ancillary tensor holds a :data:`DECODE_HEADER_BYTES` header (byte
    :data:`DECODE_PARAMS_BYTE`: axis << 4 | bitwidth; byte
    :data:`DECODE_STRIDE_BYTE`: table stride) followed by the per-channel value tables.
    """
    return list(parse(model).packed)


def _packed_tensors(model):
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
            params = ancillary[DECODE_PARAMS_BYTE]
            bits, axis = params & DECODE_BITWIDTH_MASK, params >> DECODE_AXIS_SHIFT
            stride = ancillary[DECODE_STRIDE_BYTE]
            tables = np.frombuffer(ancillary[DECODE_HEADER_BYTES:], np.int8)
            data = bytes(np.asarray(model.buffers[encoded.buffer].data, np.uint8))
            count = int(np.prod(shape))
            indices = unpack_indices(data, count, bits).reshape(shape)
            if axis == DECODE_PER_TENSOR_AXIS:
                decoded = tables[indices]
            else:
                channel = np.indices(shape)[axis]
                decoded = tables[channel * stride + indices]
            for consumer, _ in consumers.get(int(output_index), []):
                found.append(PackedTensor(consumer, op_name(model, graph.operators[consumer]),
                                          shape, int(bits), int(axis), len(data),
                                          len(ancillary), decoded.astype(np.int8)))
    return found


def constant_bytes(model):
    """Bytes of constant data per role: ``{"filters", "packed_indices", "tables", "biases", "other"}``."""
    return dict(parse(model).constants)


def _constant_bytes(model):
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


def quantization_bytes(model):
    """Bytes of the distinct quantization vectors (scales, zero points) the model carries.

    Distinct by content: after :func:`tflite_export.slim.share_vectors` identical
    vectors are stored once.
    """
    return parse(model).quantization


def _quantization_bytes(model):
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
