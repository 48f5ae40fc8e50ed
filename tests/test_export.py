"""tflite_export: int8 and packed TFLM artifacts of QAT models, and their verification."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

import tfq_pareto
import tflite_export
from tflite_export import convert, flatbuffer, runtime
from tfq_pareto import keras
from tfq_pareto.backend import tf, tfmot

from conftest import build_mobilenet_like


def build_depthwise_net(input_shape=(12, 12, 3), num_classes=5):
    """Conv -> BN -> ReLU -> depthwise (multiplier 2) -> BN -> ReLU -> 1x1 conv + add -> dense."""
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False,
                                     name="dw2")(x)
    y = keras.layers.BatchNormalization(name="dw2_bn")(y)
    y = keras.layers.ReLU(name="dw2_relu")(y)
    y = keras.layers.Conv2D(8, 1, use_bias=False, name="project")(y)
    y = keras.layers.BatchNormalization(name="project_bn")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.ReLU(name="add_relu")(x)
    x = keras.layers.Conv2D(12, 3, strides=2, padding="same", name="conv")(x)
    x = keras.layers.ReLU(name="conv_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="depthwise_net")


def _data(shape, n=96, classes=5, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.rand(n, *shape).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) * 3 * classes).astype(int) % classes
    return x, y


def _trained(model, x, y, epochs=2):
    """A few QAT steps, so activation ranges and BN statistics are those of a trained model."""
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


BIT_MIXES = [  # (conv_bits, dw_bits, first_last_bits); the fast suite runs 2 of 7, which
    # between them pack 1-, 2- and 4-bit filters and a 1-bit first and last layer
    (1, 4, 8), (1, 2, 1),
    pytest.param(1, 1, 8, marks=pytest.mark.slow), pytest.param(4, 4, 8, marks=pytest.mark.slow),
    pytest.param(2, 2, 8, marks=pytest.mark.slow), pytest.param(8, 8, 8, marks=pytest.mark.slow),
    pytest.param(2, 8, 8, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("build,shape,classes", [
    (build_mobilenet_like, (16, 16, 3), 10),
    pytest.param(build_depthwise_net, (12, 12, 3), 5, marks=pytest.mark.slow)])
@pytest.mark.parametrize("conv_bits,dw_bits,first_last_bits", BIT_MIXES)
def test_export_passes_every_verification(tmp_path, build, shape, classes, conv_bits, dw_bits,
                                          first_last_bits):
    x, y = _data(shape, classes=classes)
    qat = _trained(tfq_pareto.apply(build(num_classes=classes), conv_bits=conv_bits,
                                    dw_bits=dw_bits, first_last_bits=first_last_bits), x, y)
    result = tflite_export.export(qat, x, str(tmp_path), name="net", validation_data=(x, y))
    manifest = result.manifest
    int8 = open(result.files["int8"], "rb").read()
    packed = open(result.files["packed"], "rb").read()

    # Per-channel distinct values of each layer's int8 filter, recounted here.
    filters = {f.tensor: f for f in tflite_export.filter_tensors(int8)}
    for layer in manifest["layers"]:
        counts = filters[layer["tensor"]].distinct_counts()
        assert max(counts) <= tflite_export.max_levels(layer["bits"]), layer
    # Every layer below 8 bits is packed in ceil(n*b/8) bytes and decodes exactly.
    packed_items = tflite_export.packed_tensors(packed)
    low = [l for l in manifest["layers"] if l["bits"] < 8]
    assert len(packed_items) == len(low)
    for layer in low:
        n = layer["int8_bytes"]
        assert layer["packed_index_bytes"] == -(-n * layer["bits"] // 8)
        assert any(np.array_equal(item.decoded, filters[layer["tensor"]].values)
                   for item in packed_items)
    # TFLM packed == TFLM int8 == LiteRT int8, recomputed on fresh inputs.
    inputs = convert.quantize_inputs(_data(shape, n=8, seed=1)[0],
                                     runtime.io_details(int8)[0])
    arena = manifest["totals"]["tflm_arena_bytes_packed"]
    tflm_packed = runtime.micro_outputs(packed, inputs, arena)
    np.testing.assert_array_equal(tflm_packed, runtime.micro_outputs(int8, inputs, arena + 4096))
    np.testing.assert_array_equal(tflm_packed, runtime.litert_outputs(int8, inputs))
    # The int8 file reproduces the Keras QAT model up to rounding.
    report = manifest["verification"]
    assert report["keras_max_output_steps"] <= 4
    assert report["keras_top1_agreement"] >= 0.9
    assert abs(manifest["accuracy"]["int8_litert"] - manifest["accuracy"]["keras"]) <= 0.05
    assert manifest["accuracy"]["packed_tflm"] == manifest["accuracy"]["int8_litert"]
    assert all(step["applied"] for step in manifest["slimming"])
    totals = manifest["totals"]
    assert totals["eq6_bits"] == tfq_pareto.model_size(qat)
    assert totals["packed_file_bytes"] == len(packed)
    assert totals["packed_weight_bytes"] + totals["other_bytes"] == len(packed)
    assert sum(totals["other_bytes_itemized"].values()) == totals["other_bytes"]


def test_one_bit_packed_weights_are_an_eighth_of_int8(tmp_path):
    x, y = _data((12, 12, 3))
    qat = _trained(tfq_pareto.apply(build_depthwise_net(), conv_bits=1, dw_bits=1,
                                    first_last_bits=1), x, y)
    result = tflite_export.export(qat, x, str(tmp_path))
    layers = result.manifest["layers"]
    assert all(l["bits"] == 1 for l in layers)
    int8_bytes = sum(l["int8_bytes"] for l in layers)
    index_bytes = sum(l["packed_index_bytes"] for l in layers)
    assert index_bytes == sum(-(-l["int8_bytes"] // 8) for l in layers)
    assert int8_bytes / 8 <= index_bytes < int8_bytes / 8 + len(layers)
    totals = result.totals
    assert totals["packed_weight_bytes"] == index_bytes
    assert totals["packed_file_bytes"] < totals["int8_file_bytes"]


@pytest.mark.slow
def test_resnet20_one_bit_file_is_within_the_size_goal(tmp_path):
    """ResNet-20 (CIFAR-10) at 1 bit: packed file <= 1.2 x (Eq. 6 + 8 bytes per channel)."""
    qat = tfq_pareto.apply(tfq_pareto.models.resnet_cifar(depth=20, num_classes=10), conv_bits=1)
    rng = np.random.RandomState(0)
    for weight in qat.weights:  # BN statistics of a trained model: no duplicate biases
        if "gamma" in weight.name or "moving_variance" in weight.name:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape))
        elif "beta" in weight.name or "moving_mean" in weight.name:
            weight.assign(rng.normal(0.0, 0.2, weight.shape))
    x = rng.rand(8, 32, 32, 3).astype("float32")
    result = tflite_export.export(qat, x, str(tmp_path), activation_ranges="calibration")
    totals = result.totals
    assert totals["eq6_bytes"] == tfq_pareto.model_size(qat) / 8 == 34_800
    assert totals["ratio_to_limit"] <= 1.2
    assert sum(s["saved_bytes"] for s in result.manifest["slimming"]) > 0.3 * totals[
        "packed_file_bytes_before_slimming"]


class _NotAQuantizer(tfq_pareto.PerFilterWeightQuantizer):
    """Claims num_bits but returns the float weights: a tampered model."""

    def __call__(self, inputs, training, weights, **kwargs):
        return inputs


def test_weights_off_the_grid_are_refused_naming_the_layer(tmp_path):
    x, _ = _data((16, 16, 3))
    qat = tfq_pareto.apply(build_mobilenet_like(), conv_bits=2, dw_bits=4)
    wrapper = qat.get_layer("quant_expand")
    weight, _, variables = wrapper._weight_vars[0]  # pylint: disable=protected-access
    wrapper._weight_vars[0] = (weight, _NotAQuantizer(2), variables)  # pylint: disable=protected-access
    with pytest.raises(tflite_export.ExportError, match=r"'expand'.*2-bit.*grid"):
        tflite_export.export(qat, x, str(tmp_path))
    assert not os.listdir(tmp_path)


def test_verify_refuses_a_tampered_int8_file_naming_the_layer(tmp_path):
    x, y = _data((16, 16, 3))
    qat = _trained(tfq_pareto.apply(build_mobilenet_like(), conv_bits=1, dw_bits=4), x, y)
    result = tflite_export.export(qat, x, str(tmp_path))
    assert tflite_export.verify_dir(str(tmp_path), x, model=qat)["tflm_packed_equals_int8"]
    layer = next(l for l in result.manifest["layers"] if l["bits"] == 1)
    model = flatbuffer.read(open(result.files["int8"], "rb").read())
    tensor = model.subgraphs[0].tensors[layer["tensor"]]
    data = np.array(model.buffers[tensor.buffer].data, np.uint8)
    data[0] = np.uint8(np.int8(3).view(np.uint8))  # a third value in filter 0
    model.buffers[tensor.buffer].data = data
    tampered = flatbuffer.write(model)
    with pytest.raises(tflite_export.ExportError, match=rf"'{layer['name']}'.*1-bit.*3 distinct"):
        tflite_export.verify(tampered, result.files["packed"], x, layers=result.manifest["layers"])


def test_packed_file_that_decodes_differently_is_refused(tmp_path):
    x, y = _data((16, 16, 3))
    qat = _trained(tfq_pareto.apply(build_mobilenet_like(), conv_bits=2, dw_bits=4), x, y)
    result = tflite_export.export(qat, x, str(tmp_path))
    model = flatbuffer.read(open(result.files["packed"], "rb").read())
    graph = model.subgraphs[0]
    decode = next(op for op in graph.operators if flatbuffer.op_name(model, op) == "TFLM_DECODE")
    buffer = model.buffers[graph.tensors[decode.inputs[0]].buffer]
    data = np.array(buffer.data, np.uint8)
    original = [t.decoded for t in flatbuffer.packed_tensors(open(result.files["packed"], "rb").read())]
    # Flip the first byte whose change alters a decoded weight (a per-channel lookup
    # table may hold a level twice, so not every flip does).
    for index in range(len(data)):
        tampered_data = data.copy()
        tampered_data[index] ^= 0xFF
        buffer.data = tampered_data
        tampered = flatbuffer.write(model)
        decoded = [t.decoded for t in flatbuffer.packed_tensors(tampered)]
        if any(not np.array_equal(a, b) for a, b in zip(original, decoded)):
            break
    else:
        pytest.fail("no single-byte change of the packed data alters a decoded weight")
    with pytest.raises(tflite_export.ExportError, match="does not decode"):
        tflite_export.verify(result.files["int8"], tampered, x, layers=result.manifest["layers"])


def test_c_arrays_compile_and_hold_the_packed_file(tmp_path):
    x, y = _data((12, 12, 3))
    qat = _trained(tfq_pareto.apply(build_depthwise_net(), conv_bits=1, dw_bits=4), x, y)
    result = tflite_export.export(qat, x, str(tmp_path), name="kws_net")
    packed = open(result.files["packed"], "rb").read()
    assert tflite_export.read_c_array(result.files["cc"]) == packed
    header = open(result.files["h"]).read()
    for method in result.manifest["tflm_resolver_methods"]:
        assert f"resolver.{method}();" in header
    assert "AddDecode" in header
    assert f"kws_net_kArenaSize = {result.totals['tflm_arena_bytes_packed']}" in header
    if shutil.which("g++") is None:
        pytest.skip("no g++ on this machine")
    check = tmp_path / "check_size.cc"
    check.write_text(f'#include "kws_net_model_data.h"\n'
                     f'int main() {{ return g_kws_net_model_data_len == {len(packed)} &&\n'
                     f'    g_kws_net_model_data[0] == {packed[0]} ? 0 : 1; }}\n')
    for source in (result.files["cc"], str(check)):
        subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-c", source, "-I", str(tmp_path),
                        "-o", str(tmp_path / (os.path.basename(source) + ".o"))], check=True)
    subprocess.run(["g++", str(tmp_path / "kws_net_model_data.cc.o"),
                    str(tmp_path / "check_size.cc.o"), "-o", str(tmp_path / "check")], check=True)
    subprocess.run([str(tmp_path / "check")], check=True)


@pytest.mark.slow
def test_manifest_on_disk_matches_the_result(tmp_path):
    x, y = _data((16, 16, 3))
    qat = _trained(tfq_pareto.apply(build_mobilenet_like(), conv_bits=1, dw_bits=4), x, y)
    result = tflite_export.export(qat, x, str(tmp_path), name="m")
    on_disk = json.load(open(tmp_path / "m_manifest.json"))
    assert on_disk == json.loads(json.dumps(result.manifest))
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["m_int8.tflite", "m_packed.tflite", "m_model_data.cc", "m_model_data.h", "m_manifest.json"])
    layer = on_disk["layers"][0]
    for key in ("name", "type", "bits", "filters", "fan_in", "eq6_bytes", "int8_bytes", "packed_bytes"):
        assert key in layer
    assert "TFLM_DECODE" in on_disk["ops"]
    assert result.totals["tflm_arena_bytes_packed"] > 0
    assert result.totals["tflm_arena_bytes_int8"] > 0
    assert "Eq. (6) ideal" in result.sizes_table()


@pytest.mark.slow
def test_four_bit_activations_export_as_int8_and_report_the_change(tmp_path):
    x, y = _data((16, 16, 3))
    qat = _trained(tfq_pareto.apply(build_mobilenet_like(), conv_bits=1, dw_bits=4, act_bits=4), x, y)
    result = tflite_export.export(qat, x, str(tmp_path), validation_data=(x, y))
    manifest = result.manifest
    assert manifest["activation_bits_qat"] == [4, 8]
    assert manifest["activation_bits_exported"] == 8
    assert "4 bits" in manifest["note"]
    accuracy = manifest["accuracy"]
    assert accuracy["int8_minus_keras"] == pytest.approx(accuracy["int8_litert"] - accuracy["keras"])
    assert manifest["verification"]["max_output_steps_allowed"] is None  # reported, not enforced
    assert manifest["verification"]["keras_top1_agreement"] >= 0.8


@pytest.mark.slow  # whole-model work: ~20 s of the fast suite
def test_saved_and_reloaded_model_exports_the_same_int8_file(tmp_path):
    x, y = _data((16, 16, 3))
    qat = _trained(tfq_pareto.apply(build_mobilenet_like(), conv_bits=1, dw_bits=4), x, y)
    tfq_pareto.save_model(qat, str(tmp_path / "qat.h5"))
    loaded = tfq_pareto.load_model(str(tmp_path / "qat.h5"))
    first = tflite_export.export(qat, x, str(tmp_path / "a"))
    second = tflite_export.export(loaded, x, str(tmp_path / "b"))
    assert open(first.files["int8"], "rb").read() == open(second.files["int8"], "rb").read()
    assert open(first.files["packed"], "rb").read() == open(second.files["packed"], "rb").read()


def test_representative_data_forms_agree():
    model = build_mobilenet_like()
    x = np.random.RandomState(0).rand(20, 16, 16, 3).astype("float32")
    as_array = convert.samples_array(x, model)
    as_dataset = convert.samples_array(tf.data.Dataset.from_tensor_slices((x, np.zeros(20))).batch(7),
                                       model)
    as_unbatched = convert.samples_array(tf.data.Dataset.from_tensor_slices(x), model)
    as_generator = convert.samples_array(lambda: ([row[None]] for row in x), model)
    for other in (as_dataset, as_unbatched, as_generator):
        np.testing.assert_array_equal(other, as_array)


def test_float_model_is_refused(tmp_path):
    with pytest.raises(tflite_export.ExportError, match="float model.*tfq_pareto.apply"):
        tflite_export.export(build_mobilenet_like(), np.zeros((2, 16, 16, 3), "float32"),
                             str(tmp_path))


@pytest.mark.parametrize("data,pattern", [
    (np.zeros((4, 8, 8, 3), "float32"), r"shape \(8, 8, 3\).*'image' expects \(16, 16, 3\)"),
    (np.zeros((0, 16, 16, 3), "float32"), "empty"),
    (np.full((2, 16, 16, 3), np.nan, "float32"), "NaN"),
    (lambda: iter([]), "no samples"),
])
def test_bad_representative_data_is_refused_before_work(tmp_path, data, pattern):
    qat = tfq_pareto.apply(build_mobilenet_like(), conv_bits=1, dw_bits=4)
    with pytest.raises(tflite_export.ExportError, match=pattern):
        tflite_export.export(qat, data, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_bad_name_is_refused(tmp_path):
    qat = tfq_pareto.apply(build_mobilenet_like(), conv_bits=1, dw_bits=4)
    with pytest.raises(ValueError, match=r"C identifier.*'my-model'"):
        tflite_export.export(qat, np.zeros((2, 16, 16, 3), "float32"), str(tmp_path), name="my-model")


class _NoQuantize(tfmot.quantization.keras.QuantizeConfig):
    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


def test_op_tflm_cannot_run_is_refused_naming_the_layer(tmp_path):
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = annotate(keras.layers.Activation("gelu", name="gelu_act"), _NoQuantize())(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    annotated = tfmot.quantization.keras.quantize_annotate_model(keras.Model(inputs, outputs))
    with tfq_pareto.quantize_scope({"_NoQuantize": _NoQuantize}):
        qat = tfmot.quantization.keras.quantize_apply(
            annotated, tfq_pareto.DualPrecisionScheme(conv_bits=4, dw_bits=4))
    with pytest.raises(tflite_export.ExportError, match=r"GELU.*'gelu_act'"):
        tflite_export.export(qat, np.random.rand(4, 8, 8, 3).astype("float32"), str(tmp_path))


def test_unpack_indices_reads_the_compressor_bit_order():
    from tflite_micro.tensorflow.lite.micro.compression import lut  # pylint: disable=import-outside-toplevel

    rng = np.random.RandomState(0)
    for bits in (1, 2, 3, 4, 7):
        indices = rng.randint(0, 2 ** bits, size=37)
        packed = lut.pack_indices(indices, bits)
        assert len(packed) == -(-37 * bits // 8)
        np.testing.assert_array_equal(flatbuffer.unpack_indices(packed, 37, bits), indices)


def test_resolver_method_names():
    assert tflite_export.resolver_method("CONV_2D") == "AddConv2D"
    assert tflite_export.resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert tflite_export.resolver_method("FULLY_CONNECTED") == "AddFullyConnected"
    assert tflite_export.resolver_method("AVERAGE_POOL_2D") == "AddAveragePool2D"
    assert tflite_export.resolver_method("TFLM_DECODE") == "AddDecode"


def test_pooling_keeps_its_input_scale_so_qat_ranges_still_convert(tmp_path):
    """AVERAGE_POOL_2D / MAX_POOL_2D must keep their input's scale (DenseNet's transitions)."""
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.AveragePooling2D(2, name="avg")(x)
    x = keras.layers.Conv2D(8, 1, name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="max")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(5, name="logits")(x)
    x_data, y = _data((12, 12, 3))
    qat = _trained(tfq_pareto.apply(keras.Model(inputs, outputs), conv_bits=2), x_data, y)
    result = tflite_export.export(qat, x_data, str(tmp_path))
    assert result.manifest["activation_ranges"] == "qat"
    assert result.manifest["activation_ranges_note"] is None
    assert {"AVERAGE_POOL_2D", "MAX_POOL_2D"} <= set(result.manifest["ops"])
    assert result.manifest["verification"]["keras_max_output_steps"] <= 8


@pytest.mark.slow
def test_grouped_conv_of_table2_exports_and_runs_on_tflm(tmp_path):
    """VGG variant C with d = 4x3x3 (grouped Conv2D, Table 2): TFLM runs the packed file
    bit-exactly like the int8 one, each grouped filter with fan-in 36."""
    from tfq_pareto.models import vgg11

    keras.utils.set_random_seed(0)
    qat = tfq_pareto.apply(vgg11(0.125, "C", 10, dw_fan_in=(4, 3)), conv_bits=1, dw_bits=4,
                           act_bits=4)
    x = np.random.default_rng(0).uniform(0, 1, (64, 32, 32, 3)).astype("float32")
    _trained(qat, x, np.arange(64) % 10, epochs=1)
    result = tflite_export.export(qat, x[:32], str(tmp_path))
    grouped = [l for l in result.manifest["layers"] if l["name"].endswith("_dw")]
    assert len(grouped) == 7 and all(l["fan_in"] == 36 and l["op"] == "CONV_2D" for l in grouped)
    assert result.manifest["verification"]["tflm_packed_equals_int8"]
