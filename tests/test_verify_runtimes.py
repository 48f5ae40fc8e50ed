"""Check 4: LiteRT and TFLM on the int8 file, and where they part when they do."""

import importlib

import numpy as np
import pytest

import tflite_export
import tfq_pareto
from tflite_export import flatbuffer, runtime
from tfq_pareto import keras

from conftest import trained_plain_cnn_qat

export = importlib.import_module("tflite_export.export")
verify = importlib.import_module("tflite_export.verify")

ARENA = 1 << 20
LITERT_OUTPUTS = runtime.litert_outputs  # the real one, before any test replaces it


@pytest.fixture(scope="module")
def int8_and_inputs():
    model, x = trained_plain_cnn_qat(16)
    int8 = export.convert_model(model, x).int8
    input_details, _ = runtime.io_details(int8.data)
    return int8, tflite_export.convert.quantize_inputs(x[:4], input_details)


def _litert_off_from(monkeypatch, int8, position, steps):
    """LiteRT made to compute op ``position`` (and so every later op) ``steps`` higher:
    a kernel that rounds differently from TFLM's, as the RELU that rescales does."""
    real = LITERT_OUTPUTS
    outputs = [int(op.outputs[0]) for op in flatbuffer.read(int8.data).subgraphs[0].operators]

    def litert_outputs(data, inputs):
        tensor = int(flatbuffer.read(data).subgraphs[0].outputs[0])
        result = real(data, inputs)
        if outputs.index(tensor) >= position:
            result = np.clip(result.astype(np.int64) + steps, -128, 127).astype(result.dtype)
        return result

    monkeypatch.setattr(verify.runtime, "litert_outputs", litert_outputs)


def test_the_runtimes_agree_on_a_plain_cnn(int8_and_inputs):
    int8, inputs = int8_and_inputs
    assert verify.first_disagreeing_op(int8, inputs, ARENA) is None


def test_the_first_op_where_they_part_is_found(int8_and_inputs, monkeypatch):
    int8, inputs = int8_and_inputs
    operators = flatbuffer.read(int8.data).subgraphs[0].operators
    for position in (1, len(operators) // 2, len(operators) - 1):
        _litert_off_from(monkeypatch, int8, position, 1)
        first = verify.first_disagreeing_op(int8, inputs, ARENA)
        assert first["index"] == position and first["steps"] == 1 and first["inputs_agree"]
        assert first["op"] == flatbuffer.op_name(flatbuffer.read(int8.data), operators[position])


def test_a_one_step_kernel_rounding_is_reported_and_more_is_an_error(int8_and_inputs,
                                                                     monkeypatch):
    int8, inputs = int8_and_inputs
    position = 2
    _litert_off_from(monkeypatch, int8, position, 1)
    litert = runtime.litert_outputs(int8.data, inputs)
    tflm = runtime.micro_outputs(int8.data, inputs, ARENA)
    with pytest.raises(tflite_export.ExportError, match="disagree on the int8 file by up to 1"):
        verify.check_litert_equals_tflm(litert, tflm)  # nothing to locate it with
    report = verify.check_litert_equals_tflm(litert, tflm, int8, inputs, ARENA)
    assert report["max_steps"] == 1 and report["first_op"]["index"] == position
    _litert_off_from(monkeypatch, int8, position, 2)  # two steps: not a rounding difference
    litert = runtime.litert_outputs(int8.data, inputs)
    with pytest.raises(tflite_export.ExportError, match="first part at"):
        verify.check_litert_equals_tflm(litert, tflm, int8, inputs, ARENA)


def test_on_a_branched_graph_the_search_walks_back_to_where_the_divergence_began(monkeypatch):
    """LiteRT made to disagree at one op and, as a real divergence would, at every op
    downstream of it in the graph (not in execution order): the op found is that op,
    including when it sits on a branch the bisection steps over."""
    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 3))
    stem = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(image)
    branches = [keras.layers.Conv2D(4, 1, activation="relu", name=f"branch{k}")(stem)
                for k in range(3)]
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Concatenate()(branches))
    model = tfq_pareto.apply(keras.Model(image, keras.layers.Dense(4, name="logits")(x)),
                             conv_bits=8, act_bits=8)
    x = np.random.default_rng(0).uniform(0, 1, (16, 16, 16, 3)).astype("float32")
    model.compile(keras.optimizers.SGD(0.0), "mse")
    model.fit(x, np.zeros((16, 4)), batch_size=16, epochs=1, verbose=0)
    int8 = export.convert_model(model, x).int8
    input_details, _ = runtime.io_details(int8.data)
    inputs = tflite_export.convert.quantize_inputs(x[:2], input_details)
    operators = flatbuffer.read(int8.data).subgraphs[0].operators
    consumers = {}
    for k, op in enumerate(operators):
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(k)
    skipping = [k for k, op in enumerate(operators)  # outputs read further down than k + 1
                if any(c > k + 1 for c in consumers.get(int(op.outputs[0]), []))]
    assert len(skipping) >= 2, "the branches must run one after another"
    for start in skipping:
        downstream, pending = {start}, [start]
        while pending:
            for c in consumers.get(int(operators[pending.pop()].outputs[0]), []):
                if c not in downstream:
                    downstream.add(c)
                    pending.append(c)
        tensors = {int(operators[k].outputs[0]) for k in downstream}

        def litert_outputs(data, rows, tensors=tensors):
            result = LITERT_OUTPUTS(data, rows)
            if int(flatbuffer.read(data).subgraphs[0].outputs[0]) in tensors:
                result = np.where(result < 127, result + 1, result - 1).astype(result.dtype)
            return result

        monkeypatch.setattr(verify.runtime, "litert_outputs", litert_outputs)
        first = verify.first_disagreeing_op(int8, inputs, ARENA)
        assert first["index"] == start and first["inputs_agree"] and first["steps"] == 1
