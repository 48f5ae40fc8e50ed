"""The exporter's stages one by one (convert -> match -> pack -> slim -> verify -> measure -> write)."""

import hashlib
import importlib
import json
import os

import numpy as np
import pytest

from tflite_export import errors, flatbuffer, pack, slim

# tflite_export.export and .verify are also the names of the package's functions.
export = importlib.import_module("tflite_export.export")
verify = importlib.import_module("tflite_export.verify")

from conftest import trained_plain_cnn_qat


@pytest.fixture(scope="module")
def qat():
    return trained_plain_cnn_qat(64)


@pytest.fixture(scope="module")
def converted(qat):
    model, x = qat
    return export.convert_model(model, x)


def test_convert_model_gives_a_parsed_int8_file_and_one_kernel_per_quantized_layer(converted):
    assert isinstance(converted.int8, flatbuffer.ParsedModel)
    assert converted.int8.data[4:8] == b"TFL3"
    assert [(k.layer, k.bits) for k in converted.kernels] == [
        ("conv1", 8), ("conv2", 2), ("logits", 8)]  # first and last at 8 bits
    assert converted.activation_ranges == "qat" and converted.ranges_note is None


def test_match_layers_pairs_each_kernel_with_its_int8_filter(converted):
    layers = export.match_layers(converted)
    assert [l["name"] for l in layers] == ["conv1", "conv2", "logits"]
    filters = {f.tensor: f for f in flatbuffer.filter_tensors(converted.int8)}
    for layer in layers:
        tensor = filters[layer["tensor"]]
        assert tensor.op == layer["op"] and tensor.channels == layer["filters"]
        assert layer["eq6_bits"] == layer["filters"] * layer["fan_in"] * layer["bits"]
    assert layers[1]["max_distinct_per_filter"] <= 3  # 2 bits: ternary


def test_pack_packs_only_the_layers_below_eight_bits(converted):
    layers = export.match_layers(converted)
    packed = pack.pack(converted.int8, layers)
    items = flatbuffer.packed_tensors(packed)
    assert [i.bits for i in items] == [2]
    assert len(packed) < len(converted.int8)
    eight = [dict(l, bits=8) for l in layers]
    assert pack.pack(converted.int8, eight) == converted.int8.data  # nothing to pack


def test_each_verification_check_refuses_what_it_checks(converted, qat):
    model, x = qat
    layers = export.match_layers(converted)
    packed = flatbuffer.ParsedModel(pack.pack(converted.int8, layers))
    verify.check_int8_grid(converted.int8, layers)
    with pytest.raises(errors.ExportError, match="'conv1' \\(1-bit\\).*more than the 2"):
        verify.check_int8_grid(converted.int8, [dict(layers[0], bits=1)])
    assert verify.check_packed_tensors(converted.int8, packed, layers) == 1
    with pytest.raises(errors.ExportError, match="holds 1 packed filters; the layers need 2"):
        verify.check_packed_tensors(converted.int8, packed, [dict(l, bits=4) for l in layers[:2]])
    out = np.zeros((2, 4), np.int8)
    verify.check_packed_equals_int8(out, out.copy())
    with pytest.raises(errors.ExportError, match="differs .* by up to 3 steps on 1 of 2 inputs"):
        verify.check_packed_equals_int8(out, out + np.array([[0, 0, 0, 0], [3, 0, 0, 0]], np.int8))
    with pytest.raises(errors.ExportError, match="disagree on the int8 file by up to 1 steps"):
        verify.check_litert_equals_tflm(out + 1, out)
    details = {"quantization": (0.5, 0)}
    keras_out = np.asarray(model(x[:4], training=False))
    far = np.round(keras_out / 0.5).astype(np.int8) + 9
    with pytest.raises(errors.ExportError, match="up to 9\\.[0-5] output steps \\(allowed 8\\)"):
        verify.check_against_keras(model, x[:4], far, details, 8)
    report = verify.check_against_keras(model, x[:4], far, details, None)  # measure only
    assert 8.5 <= report["keras_max_output_steps"] <= 9.5  # 9 steps, +- the rounding of far


def test_export_reads_each_file_once(qat, tmp_path, monkeypatch):
    model, x = qat
    parsed = []
    real_init, real_read = flatbuffer.ParsedModel.__init__, flatbuffer.read

    def counting_init(self, data):
        real_init(self, data)
        parsed.append(hashlib.sha256(self.data).hexdigest())

    def counting_read(model_bytes):
        data = model_bytes.data if isinstance(model_bytes, flatbuffer.ParsedModel) else model_bytes
        parsed.append(hashlib.sha256(bytes(data)).hexdigest())
        return real_read(model_bytes)

    monkeypatch.setattr(flatbuffer.ParsedModel, "__init__", counting_init)
    monkeypatch.setattr(flatbuffer, "read", counting_read)
    monkeypatch.setattr(slim, "read", counting_read)
    result = export.export(model, x, str(tmp_path), name="tiny")
    for key in ("int8", "packed"):
        with open(result.files[key], "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        assert parsed.count(digest) == 1, key


def test_measure_and_write_files_agree_with_the_files(qat, tmp_path):
    model, x = qat
    result = export.export(model, x, str(tmp_path), name="tiny")
    totals = result.manifest["totals"]
    for key, size_key in (("int8", "int8_file_bytes"), ("packed", "packed_file_bytes")):
        assert os.path.getsize(result.files[key]) == totals[size_key]
    assert sorted(result.files) == ["cc", "h", "int8", "manifest", "packed"]
    with open(result.files["manifest"], encoding="utf-8") as f:
        assert json.load(f) == json.loads(json.dumps(result.manifest))
    layers = result.manifest["layers"]
    assert totals["eq6_bits"] == sum(l["eq6_bits"] for l in layers)
    assert [l["packed_index_bytes"] for l in layers if l["bits"] < 8] == [
        -(-l["filters"] * l["fan_in"] * l["bits"] // 8) for l in layers if l["bits"] < 8]
    itemized = totals["other_bytes_itemized"]
    assert sum(itemized.values()) == totals["other_bytes"]
    assert totals["packed_weight_bytes"] + totals["other_bytes"] == totals["packed_file_bytes"]


def test_to_int8_falls_back_to_from_keras_model_when_the_frozen_conversion_fails(
        plain_cnn, monkeypatch):
    from tfq_pareto.backend import tf  # pylint: disable=import-outside-toplevel

    convert = importlib.import_module("tflite_export.convert")
    x = np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 1)).astype("float32")
    frozen = convert.to_int8(plain_cnn, x)
    keras_path = convert.to_int8(plain_cnn, x, frozen=False)
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("frozen conversion refused")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_concrete_functions", refuse)
    assert convert.to_int8(plain_cnn, x) == keras_path and len(calls) == 1
    assert flatbuffer.op_names(keras_path) == flatbuffer.op_names(frozen)  # the same model
    # Both paths refused: one ExportError, from the Keras path's error.
    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_keras_model", refuse)
    with pytest.raises(errors.ExportError, match="cannot make an int8 model of 'plain_cnn'"):
        convert.to_int8(plain_cnn, x)
    assert len(calls) == 3
