"""RAM-aware packing: filters split by output channels so that no DECODE writes more than a cap."""

import importlib

import numpy as np
import pytest

import tfq_pareto
import tflite_export
from tflite_export import flatbuffer, runtime, split
from tfq_pareto import keras

from conftest import trained_plain_cnn_qat

# tflite_export.export and .verify are also the names of the package's functions.
export = importlib.import_module("tflite_export.export")
verify = importlib.import_module("tflite_export.verify")

ARENA = 1 << 20


@pytest.fixture(scope="module")
def qat():
    return trained_plain_cnn_qat(32)


@pytest.fixture(scope="module")
def converted(qat):
    model, x = qat
    result = export.convert_model(model, x)
    layers = export.match_layers(result)
    input_details, _ = runtime.io_details(result.int8.data)
    inputs = tflite_export.convert.quantize_inputs(x, input_details)
    return result.int8, layers, inputs


def _ops(data):
    return flatbuffer.op_names(flatbuffer.parse(data)), [
        flatbuffer.op_name(flatbuffer.parse(data).model, op)
        for op in flatbuffer.parse(data).model.subgraphs[0].operators]


@pytest.mark.parametrize("channels,per_channel,cap", [
    (16, 72, 300), (16, 72, 72), (16, 72, 1000), (180, 1620, 32768), (7, 100, 50), (5, 10, 10**6)])
def test_channel_groups_cover_every_channel_once_within_the_cap(channels, per_channel, cap):
    groups = split.channel_groups(channels, per_channel, cap)
    assert groups[0][0] == 0 and groups[-1][1] == channels
    assert all(a < b for a, b in groups)
    assert all(groups[k][1] == groups[k + 1][0] for k in range(len(groups) - 1))
    if per_channel <= cap:  # every group within the cap, and no more groups than needed
        assert all((b - a) * per_channel <= cap for a, b in groups)
        assert len(groups) == -(-channels // (cap // per_channel))
    else:  # a channel larger than the cap is a group of its own
        assert all(b - a == 1 for a, b in groups)


def test_split_rewrites_the_layer_and_keeps_every_output_bit_exact(converted):
    int8, layers, inputs = converted
    conv2 = next(l for l in layers if l["name"] == "conv2")  # 16 x 3x3x8 int8 = 1152 B
    result = split.split_filters(int8, layers, 300)
    (done,) = result.splits
    assert done.name == "conv2" and done.groups == ((0, 4), (4, 8), (8, 12), (12, 16))
    assert done.decode_bytes == 4 * 72 <= 300
    model = flatbuffer.parse(result.data).model
    graph = model.subgraphs[0]
    original = flatbuffer.parse(int8).model.subgraphs[0].tensors[conv2["tensor"]]
    whole = np.frombuffer(bytes(bytearray(
        flatbuffer.parse(int8).model.buffers[original.buffer].data)), np.int8).reshape(16, -1)
    for (a, b), index in zip(done.groups, done.tensors):
        tensor = graph.tensors[index]
        values = np.frombuffer(bytes(bytearray(model.buffers[tensor.buffer].data)), np.int8)
        assert list(tensor.shape) == [b - a, 3, 3, 8]
        assert np.array_equal(values.reshape(b - a, -1), whole[a:b])  # its channels' rows
        assert np.allclose(tensor.quantization.scale, np.asarray(original.quantization.scale)[a:b])
    _, ops = _ops(result.data)
    _, before = _ops(int8.data)
    assert ops.count("CONV_2D") == before.count("CONV_2D") + 3  # one conv became four
    assert ops.count("CONCATENATION") == 1 and len(ops) == len(before) + 4
    # Exact: LiteRT and TFLM compute the unsplit model's outputs bit for bit.
    assert np.array_equal(runtime.litert_outputs(result.data, inputs),
                          runtime.litert_outputs(int8.data, inputs))
    assert np.array_equal(runtime.micro_outputs(result.data, inputs, ARENA),
                          runtime.micro_outputs(int8.data, inputs, ARENA))
    # Every other packed layer keeps its filter (a new index after the rewrite).
    assert set(result.filter_tensors) == {l["name"] for l in layers if l["bits"] < 8}
    assert result.filter_tensors["conv2"] == done.tensors


def test_more_groups_than_concatenation_takes_are_joined_in_a_tree(converted):
    int8, layers, inputs = converted
    result = split.split_filters(int8, layers, 72)  # one channel per group: 16 groups
    assert len(result.splits[0].groups) == 16 > split.MAX_CONCAT_INPUTS
    _, ops = _ops(result.data)
    assert ops.count("CONCATENATION") == 3  # 8 + 8 joined, then the two halves
    assert np.array_equal(runtime.micro_outputs(result.data, inputs, ARENA),
                          runtime.micro_outputs(int8.data, inputs, ARENA))


def test_no_cap_or_a_cap_above_every_filter_changes_nothing(converted):
    int8, layers, _ = converted
    for cap in (None, 10**6):
        result = split.split_filters(int8, layers, cap)
        assert result.data == int8.data and result.splits == ()
        assert result.filter_tensors == {l["name"]: (l["tensor"],) for l in layers
                                         if l["bits"] < 8}


def _metadata(data):
    model = flatbuffer.read(data)
    return {m.name: bytes(model.buffers[m.buffer].data) for m in model.metadata or []}


def test_a_split_model_keeps_its_metadata(converted):
    """Dropping the unsplit filters' buffers renumbers the buffers after them; the
    metadata entries (min_runtime_version, the converter's) must follow, or they
    point at a weight buffer, or past the end (TFLM's compressor then fails)."""
    int8, layers, _ = converted
    before = _metadata(int8.data)
    assert b"min_runtime_version" in before
    result = split.split_filters(int8, layers, 300)
    assert result.splits
    assert len(flatbuffer.read(result.data).buffers) != len(flatbuffer.read(int8.data).buffers)
    assert _metadata(result.data) == before


def test_packed_groups_decode_within_the_cap_and_pass_verification(converted):
    int8, layers, inputs = converted
    layers = [dict(l) for l in layers]
    packed = export.pack_within(int8, layers, inputs[:1], max_decode_bytes=300)
    conv2 = next(l for l in layers if l["name"] == "conv2")
    assert conv2["groups"] == [[0, 4], [4, 8], [8, 12], [12, 16]] and conv2["decode_bytes"] == 288
    items = flatbuffer.packed_tensors(packed.data)
    assert len(items) == 4 and all(int(np.prod(i.shape)) <= 300 for i in items)
    assert verify.check_packed_tensors(int8, flatbuffer.parse(packed.data), layers) == 4
    verify.check_packed_equals_int8(runtime.micro_outputs(int8.data, inputs, ARENA),
                                    runtime.micro_outputs(packed.data, inputs, ARENA))
    # A packed file whose groups were dropped is caught by check 2.
    unsplit = [dict(l) for l in layers]
    del next(l for l in unsplit if l["name"] == "conv2")["groups"]
    with pytest.raises(tflite_export.ExportError, match="holds 4 packed filters; the layers need 1"):
        verify.check_packed_tensors(int8, flatbuffer.parse(packed.data), unsplit)


@pytest.mark.parametrize("bad", [0, -5, 1.5, "big", True])
def test_a_bad_cap_is_refused_before_any_work(qat, tmp_path, bad):
    model, x = qat
    with pytest.raises(ValueError, match="max_decode_bytes must be None, 'auto' or an int >= 1"):
        tflite_export.export(model, x, str(tmp_path / "out"), max_decode_bytes=bad)
    assert not (tmp_path / "out").exists()


def test_export_with_a_cap_reports_the_split_and_certifies_its_arena(qat, tmp_path):
    model, x = qat
    capped = tflite_export.export(model, x, str(tmp_path / "capped"), max_decode_bytes=300)
    packing = capped.manifest["packing"]
    assert packing["split_layers"] == {"conv2": 4} and packing["largest_decode_bytes"] <= 300
    assert packing["decode_cap_used"] == 300
    # The certified arena runs the packed file; 16 bytes less does not.
    arena = capped.totals["tflm_arena_bytes_packed"]
    packed = open(capped.files["packed"], "rb").read()
    int8 = open(capped.files["int8"], "rb").read()  # LiteRT reads the int8 file's input details
    inputs = tflite_export.convert.quantize_inputs(x[:1], runtime.io_details(int8)[0])
    runtime.micro_outputs(packed, inputs, arena)
    with pytest.raises(runtime.MicroError):
        runtime.micro_outputs(packed, inputs, arena - runtime.ARENA_STEP)


def test_a_grouped_conv_is_left_whole_and_the_rest_is_split(tmp_path):
    """RegNet's grouped convs: a part with a fraction of a group crashes TFLM (SIGFPE)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.ReLU()(keras.layers.Conv2D(16, 3, padding="same", name="stem")(inputs))
    x = keras.layers.ReLU()(keras.layers.Conv2D(16, 3, padding="same", groups=4,
                                                name="grouped")(x))
    x = keras.layers.ReLU()(keras.layers.Conv2D(16, 3, padding="same", name="plain")(x))
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    qat = tfq_pareto.apply(keras.Model(inputs, outputs), conv_bits=1, first_last_bits=8)
    x = np.random.default_rng(0).random((16, 8, 8, 3)).astype("float32")
    qat.compile("adam", "mse")
    qat.fit(x, np.zeros((16, 2)), verbose=0)
    # grouped: 16 filters x 3x3x4 = 576 B; plain: 16 x 3x3x16 = 2304 B; cap 300 B.
    result = tflite_export.export(qat, x, str(tmp_path), max_decode_bytes=300)
    assert result.manifest["packing"]["split_layers"] == {"plain": 16 // (300 // 144)}
    assert result.manifest["verification"]["keras_max_output_steps"] <= 8


def _wide_cnn():
    """A 1-bit 3x3 conv of 64 -> 64 channels on a 4x4 map: a 36,864 B decoded filter,
    far more than the activations' arena."""
    inputs = keras.Input((4, 4, 3))
    x = inputs
    for k, channels in enumerate((64, 64)):
        x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"c{k}")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))


@pytest.mark.slow
def test_auto_splits_only_when_the_arena_would_exceed_the_allowance(tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    model = tfq_pareto.apply(_wide_cnn(), conv_bits=1)
    x = np.random.default_rng(0).uniform(0, 1, (16, 4, 4, 3)).astype("float32")
    whole = tflite_export.export(model, x, str(tmp_path / "whole"), max_decode_bytes=None)
    auto = tflite_export.export(model, x, str(tmp_path / "auto"))  # 64 KiB allowance: no split
    assert auto.manifest["packing"]["split_layers"] == {}
    assert open(auto.files["packed"], "rb").read() == open(whole.files["packed"], "rb").read()
    # With an 8 KiB allowance the 36,864 B decode no longer fits: c1 is split.
    monkeypatch.setattr(export, "ARENA_ALLOWANCE_BYTES", 8 * 1024)
    tight = tflite_export.export(model, x, str(tmp_path / "tight"))
    totals, before = tight.totals, whole.totals
    assert "c1" in tight.manifest["packing"]["split_layers"]
    assert totals["tflm_arena_bytes_packed"] <= totals["tflm_arena_bytes_int8"] + 8 * 1024
    assert before["tflm_arena_bytes_packed"] > before["tflm_arena_bytes_int8"] + 8 * 1024
    # At most 300 bytes of graph and tables per group, and the weights cost the same.
    groups = tight.manifest["packing"]["split_layers"]["c1"]
    assert totals["packed_file_bytes"] - before["packed_file_bytes"] <= 300 * groups
    assert totals["packed_weight_bytes"] == before["packed_weight_bytes"]


def _simulated_search(monkeypatch, arena_at, largest=1 << 20, int8_arena=100_000):
    """pack_within's "auto" search with the arena at each cap given by ``arena_at``.

    Splitting, packing and measuring are replaced by a record of the caps asked
    for, so the test sees only the search. Returns (packed, caps tried).
    """
    asked = []

    def split_filters(int8, layers, cap):
        asked.append(cap)
        return split.SplitModel(data=b"", splits=(), filter_tensors={})

    monkeypatch.setattr(export.split, "split_filters", split_filters)
    monkeypatch.setattr(export.pack, "pack", lambda data, layers, tensors: b"")
    monkeypatch.setattr(export.runtime, "micro_arena_size", lambda data, inputs: arena_at(asked[-1]))
    layers = [{"name": "c", "bits": 1, "int8_bytes": largest}]
    packed = export.pack_within(None, layers, None, int8_arena=int8_arena, arena_allowance=64 * 1024)
    return packed, asked


def _u_curve(best_cap):
    """An arena that falls and then rises as the cap shrinks, lowest at ``best_cap``:
    decode buffers grow with the cap, per-group bookkeeping with 1 / cap."""
    def arena_at(cap):
        if cap is None:
            return 5_000_000
        return 400_000 + 2 * cap + 2 * best_cap ** 2 // cap
    return arena_at


@pytest.mark.parametrize("best_cap", [2048, 32 * 1024, 256 * 1024])
def test_auto_search_finds_the_smallest_arena_among_power_of_two_caps(monkeypatch, best_cap):
    arena_at = _u_curve(best_cap)
    packed, asked = _simulated_search(monkeypatch, arena_at)
    powers = [1 << k for k in range(10, 20)]  # MIN_DECODE_BYTES .. below the largest filter
    expected = min(powers, key=arena_at)
    assert expected == best_cap
    assert packed.max_decode_bytes == best_cap and packed.arena == arena_at(best_cap)
    assert [cap for cap, _ in packed.tried] == asked
    # A descent, not a sweep: no split, the start, one wrong way at most, the
    # steps that shrank the arena and one past the best.
    steps = abs(int(np.log2(best_cap)) - 15)
    assert len(asked) <= steps + 4 < len(powers)


def test_auto_search_stops_at_the_first_cap_within_the_allowance(monkeypatch):
    arena_at = _u_curve(1024)  # keeps falling as the cap halves
    packed, asked = _simulated_search(monkeypatch, arena_at, int8_arena=arena_at(8192) - 64 * 1024)
    assert asked == [None, 32768, 16384, 8192]
    assert packed.max_decode_bytes == 8192


def test_auto_search_does_not_split_when_no_cap_beats_the_whole_filters(monkeypatch):
    packed, asked = _simulated_search(monkeypatch, lambda cap: 200_000 if cap is None else 900_000)
    assert packed.max_decode_bytes is None and packed.arena == 200_000
    assert asked == [None, 32768, 16384, 65536]  # neither direction shrinks the arena
