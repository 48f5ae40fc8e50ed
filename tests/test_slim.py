"""Slimming passes on tiny flatbuffers: each does what it says and TFLM computes the same."""

import numpy as np
import pytest

from tflite_export import convert, flatbuffer, pack, runtime, slim, twin
from tfq_pareto import keras


def _ternary_model():
    """conv -> depthwise -> pool -> dense as RESHAPE, 1x1 CONV_2D, RESHAPE: a ternary grid."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = twin.PointwiseDense(3, name="logits")(x)  # the float twin's form of Dense
    model = keras.Model(inputs, outputs, name="tiny")
    rng = np.random.default_rng(0)
    for layer in model.layers:
        for weight in layer.weights:
            if "kernel" in weight.name:
                weight.assign(0.3 * rng.choice([-1.0, 0.0, 1.0], size=weight.shape))
    return model


@pytest.fixture(scope="module")
def tiny():
    """``(int8 bytes, packed bytes, int8 inputs, arena)`` of the ternary model."""
    model = _ternary_model()
    samples = np.random.default_rng(1).uniform(0, 1, (16, 6, 6, 2)).astype("float32")
    int8 = convert.to_int8(model, samples)
    layers = [{"name": f.name, "bits": 2, "tensor": f.tensor, "op": f.op}
              for f in flatbuffer.filter_tensors(int8)]
    packed = pack.pack(int8, layers)
    details, _ = runtime.io_details(int8)
    inputs = convert.quantize_inputs(samples, details)
    arena = max(runtime.micro_arena_size(m, inputs[:1]) for m in (int8, packed))
    return int8, packed, inputs, arena


def _same_on_tflm(before, after, inputs, arena):
    return np.array_equal(runtime.micro_outputs(before, inputs, arena),
                          runtime.micro_outputs(after, inputs, arena))


def test_the_tiny_model_is_packed_with_two_bit_indices(tiny):
    int8, packed, _, _ = tiny
    assert "TFLM_DECODE" in flatbuffer.op_names(packed)
    items = flatbuffer.packed_tensors(packed)
    assert len(items) == 3 and all(item.bits == 2 for item in items)
    by_shape = {f.values.shape: f.values for f in flatbuffer.filter_tensors(int8)}
    for item in items:  # decoding the indices through the tables gives the int8 filter back
        assert np.array_equal(by_shape[item.shape], item.decoded)
        assert item.index_bytes == -(-int(np.prod(item.shape)) * 2 // 8)


def test_strip_names(tiny):
    int8, _, inputs, arena = tiny
    assert any(t.name for t in flatbuffer.read(int8).subgraphs[0].tensors)
    out = slim.strip_names(int8)
    model = flatbuffer.read(out)
    assert not any(t.name for g in model.subgraphs for t in g.tensors)
    assert all(g.name is None for g in model.subgraphs) and model.description is None
    assert not model.signatureDefs
    assert len(out) < len(int8) and _same_on_tflm(int8, out, inputs, arena)


def test_strip_metadata(tiny):
    int8, _, inputs, arena = tiny
    before = flatbuffer.read(int8)
    assert before.metadata  # the converter records its version and runtime needs
    out = slim.strip_metadata(int8)
    after = flatbuffer.read(out)
    assert not after.metadata
    assert len(after.buffers) == len(before.buffers) - len(before.metadata)
    assert _same_on_tflm(int8, out, inputs, arena)


def test_collapse_zero_points(tiny):
    int8, _, inputs, arena = tiny
    per_channel = [t for t in flatbuffer.read(int8).subgraphs[0].tensors
                   if t.quantization is not None and t.quantization.zeroPoint is not None
                   and len(t.quantization.zeroPoint) > 1]
    assert per_channel
    out = slim.collapse_zero_points(int8)
    for tensor in flatbuffer.read(out).subgraphs[0].tensors:
        q = tensor.quantization
        if q is not None and q.zeroPoint is not None:
            assert len(q.zeroPoint) == 1 or np.any(q.zeroPoint)
    assert _same_on_tflm(int8, out, inputs, arena)


def test_drop_unread_quantization(tiny):
    _, packed, inputs, arena = tiny
    out = slim.drop_unread_quantization(packed)
    model = flatbuffer.read(out)
    graph = model.subgraphs[0]
    for op in graph.operators:
        name = flatbuffer.op_name(model, op)
        if name in flatbuffer.FILTER_OPS and len(op.inputs) > 2 and op.inputs[2] >= 0:
            assert graph.tensors[op.inputs[2]].quantization is None  # the int32 bias
        if name == flatbuffer.DECODE_OP:
            assert all(graph.tensors[t].quantization is None for t in op.inputs)
    assert _same_on_tflm(packed, out, inputs, arena)


def test_drop_shape_signatures(tiny):
    int8, _, inputs, arena = tiny
    out = slim.drop_shape_signatures(int8)
    for tensor in flatbuffer.read(out).subgraphs[0].tensors:
        assert tensor.shapeSignature is None
        if tensor.quantization is not None:
            assert tensor.quantization.min is None and tensor.quantization.max is None
    assert _same_on_tflm(int8, out, inputs, arena)


def test_share_empty_buffers(tiny):
    int8, _, inputs, arena = tiny
    out = slim.share_empty_buffers(int8)
    model = flatbuffer.read(out)
    assert all(b.data is not None and len(b.data) for b in model.buffers[1:] if not b.offset)
    for tensor in model.subgraphs[0].tensors:
        data = model.buffers[tensor.buffer].data
        assert tensor.buffer == 0 or (data is not None and len(data))
    assert len(model.buffers) < len(flatbuffer.read(int8).buffers)
    assert _same_on_tflm(int8, out, inputs, arena)


def test_pointwise_conv_to_fully_connected(tiny):
    int8, _, inputs, arena = tiny
    before = flatbuffer.read(int8)
    out = slim.pointwise_conv_to_fully_connected(int8)
    after = flatbuffer.read(out)
    ops_before = [flatbuffer.op_name(before, op) for op in before.subgraphs[0].operators]
    ops_after = [flatbuffer.op_name(after, op) for op in after.subgraphs[0].operators]
    assert ops_before.count("CONV_2D") == ops_after.count("CONV_2D") + 1
    assert ops_after.count("FULLY_CONNECTED") == ops_before.count("FULLY_CONNECTED") + 1
    assert len(ops_after) == len(ops_before) - 2  # the two RESHAPEs around the conv
    assert _same_on_tflm(int8, out, inputs, arena)
    assert slim.pointwise_conv_to_fully_connected(out) == out  # nothing left to rewrite


def test_drop_decode_input_shapes(tiny):
    _, packed, inputs, arena = tiny
    out = slim.drop_decode_input_shapes(packed)
    model = flatbuffer.read(out)
    graph = model.subgraphs[0]
    decode_inputs = [t for op in graph.operators
                     if flatbuffer.op_name(model, op) == flatbuffer.DECODE_OP for t in op.inputs]
    assert decode_inputs and all(graph.tensors[t].shape is None for t in decode_inputs)
    assert _same_on_tflm(packed, out, inputs, arena)


def test_share_vectors_writes_each_distinct_vector_once(tiny):
    _, packed, inputs, arena = tiny
    out = slim.share_vectors(packed)
    assert len(out) < len(packed)
    assert len(out) % 4 == 0 and out[4:8] == b"TFL3"
    assert _same_on_tflm(packed, out, inputs, arena)


def test_slim_keeps_only_passes_that_stay_bit_exact(tiny):
    _, packed, inputs, arena = tiny

    def zero_the_tables(model_bytes):  # breaks the model: every weight decodes to 0
        model = flatbuffer.read(model_bytes)
        for buffer in model.buffers:
            if buffer.data is not None and len(buffer.data) > 16:
                buffer.data = np.zeros(len(buffer.data), np.uint8)
        return flatbuffer.write(model)

    result = slim.slim(packed, inputs[:4], arena,
                       steps=(("broken", zero_the_tables), ("names", slim.strip_names)))
    broken, names = result.steps
    assert broken["applied"] is False and broken["saved_bytes"] == 0
    assert names["applied"] is True and names["saved_bytes"] > 0
    assert len(result.data) == names["bytes_after"] < len(packed)
    assert _same_on_tflm(packed, result.data, inputs, arena)
