"""Check 4: LiteRT and TFLM on the int8 file, and where they part when they do."""

import importlib

import numpy as np
import pytest

import tflite_export
from tflite_export import flatbuffer, runtime

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
