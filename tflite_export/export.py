"""export(): QAT model -> int8 .tflite -> packed TFLM .tflite -> C arrays, verified.

Pipeline:
  1. float twin with Q(W) in every kernel (:mod:`tflite_export.twin`), b-bit grid check;
  2. full-integer int8 conversion with the representative data (per-channel);
  3. every filter of b < 8 bits LUT-packed with b-bit indices (TFLM compression);
  4. slimming of what the packed flatbuffer carries besides weights, each step
     checked bit-exact on the TFLM interpreter;
  5. :func:`verify`, C arrays, manifest.
"""

import contextlib
import dataclasses
import io
import json
import os
import warnings

import numpy as np

from tflite_export import c_arrays, convert, flatbuffer, runtime, twin
from tflite_export.twin import ExportError

#: Manifest format version.
MANIFEST_VERSION = 1
#: Bytes per output channel the size limit allows on top of Eq. (6):
#: one float32 scale and one int32 bias.
LIMIT_BYTES_PER_CHANNEL = 8
#: Verification runs the interpreters on at most this many representative inputs.
MAX_VERIFY_SAMPLES = 64
#: Each slimming step is checked bit-exact on this many of them (the final
#: verification then compares the slimmed file with the int8 file on all).
SLIMMING_CHECK_SAMPLES = 8
#: Tolerance, in output quantization steps, between the Keras QAT model and the int8
#: file when the int8 file uses QAT's 8-bit activation ranges. Integer
#: requantization rounds differently from float fake-quant and the differences
#: add up over depth (measured: 2 on 2-epoch test models, 6 on a 30-epoch one).
DEFAULT_MAX_OUTPUT_STEPS = 8

_KERAS_TO_OP = {"Conv2D": "CONV_2D", "DepthwiseConv2D": "DEPTHWISE_CONV_2D", "Dense": "FULLY_CONNECTED"}


@dataclasses.dataclass
class ExportResult:
    """What :func:`export` wrote and measured.

    Attributes:
      files: ``{"int8", "packed", "cc", "h", "manifest"}`` -> path.
      manifest: the manifest as written (a dict).
    """

    files: dict
    manifest: dict

    @property
    def totals(self):
        return self.manifest["totals"]

    def sizes_table(self):
        """Eq. (6) ideal, int8 file and packed file bytes, side by side (text)."""
        t = self.totals
        rows = [("Eq. (6) ideal", t["eq6_bytes"]), ("int8 .tflite", t["int8_file_bytes"]),
                ("packed .tflite (TFLM)", t["packed_file_bytes"])]
        lines = [f"{'artifact':<24}{'bytes':>12}{'KiB':>10}{'x Eq. (6)':>11}"]
        for label, size in rows:
            lines.append(f"{label:<24}{size:>12,}{size / 1024:>10.2f}{size / t['eq6_bytes']:>11.2f}")
        return "\n".join(lines)


def _row_matrix(kernel):
    """Q(W) of a Keras kernel as ``(channels, fan_in)`` in the TFLite filter layout."""
    values = kernel.values
    if kernel.type == "Conv2D":
        return np.transpose(values, (3, 0, 1, 2)).reshape(values.shape[-1], -1)
    if kernel.type == "DepthwiseConv2D":
        kh, kw, c, m = values.shape
        return values.reshape(kh * kw, c * m).T
    return values.T


def _similarity(rows_a, rows_b):
    """Mean over channels of |cos| between matching rows (1 for two all-zero rows)."""
    a = rows_a.astype(np.float64)
    b = rows_b.astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = np.abs(np.sum(a * b, axis=1)) / np.maximum(na * nb, 1e-30)
    cos[both_zero] = 1.0
    return float(np.mean(cos))


def match_filters(kernels, filters):
    """Pairs each quantized Keras kernel with its int8 filter tensor.

    BN folding scales each channel and may flip its sign, so channels are compared
    by |cosine|. Returns a list of ``(kernel, filter)``.

    Raises:
      ExportError: naming a layer whose filter is not in the converted model.
    """
    pairs, taken = [], set()
    for kernel in kernels:
        rows = _row_matrix(kernel)
        best, best_score = None, 0.0
        for position, candidate in enumerate(filters):
            allowed = {_KERAS_TO_OP[kernel.type]} | ({"CONV_2D"} if kernel.type == "Dense" else set())
            if position in taken or candidate.op not in allowed:
                continue
            if candidate.rows().shape != rows.shape:
                continue
            score = _similarity(candidate.rows(), rows)
            if score > best_score:
                best, best_score = position, score
        if best is None or best_score < 0.99:
            raise ExportError(
                f"layer {kernel.layer!r} ({kernel.type}, {kernel.bits}-bit) has no matching "
                "filter in the converted int8 model (the converter changed it beyond BN "
                "folding); export supports Conv2D, DepthwiseConv2D and Dense kernels"
            )
        taken.add(best)
        pairs.append((kernel, filters[best]))
    return pairs


def _layer_table(pairs):
    """Per-layer rows for the manifest (before packing), in operator order."""
    rows = []
    for kernel, tensor in sorted(pairs, key=lambda p: p[1].op_index):
        rows.append({
            "name": kernel.layer,
            "type": kernel.type,
            "op": tensor.op,
            "tensor": tensor.tensor,
            "bits": kernel.bits,
            "filters": kernel.filters,
            "fan_in": kernel.fan_in,
            "eq6_bits": kernel.size_bits,
            "eq6_bytes": kernel.size_bits / 8,
            "int8_bytes": int(tensor.values.size),
            "max_distinct_per_filter": max(tensor.distinct_counts()),
        })
    return rows


def _pack(int8_bytes, layers):
    """LUT-packs every layer of b < 8 bits with b-bit indices on its channel axis."""
    from tflite_micro import compression  # pylint: disable=import-outside-toplevel
    from tflite_micro.tensorflow.lite.micro.compression import spec  # pylint: disable=import-outside-toplevel

    builder = compression.SpecBuilder()
    packed_any = False
    for layer in layers:
        if layer["bits"] >= 8:
            continue
        builder.add_tensor(0, layer["tensor"]).with_lut(
            layer["bits"], spec.PerChannel(flatbuffer.FILTER_OPS[layer["op"]]))
        packed_any = True
    if not packed_any:
        return bytes(int8_bytes)
    # The compressor prints a note when fewer bits would do and warns when a tiny
    # tensor grows; both are reported in the manifest instead.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return bytes(compression.compress(bytes(int8_bytes), builder.build()))


def _slim(packed_bytes, inputs, arena):
    """Applies :data:`flatbuffer.SLIMMING_STEPS`, each checked bit-exact on TFLM.

    A step whose result TFLM refuses or computes differently is not applied; the
    returned record says so.
    """
    reference = runtime.micro_outputs(packed_bytes, inputs, arena)
    steps = []
    current = packed_bytes
    for label, step in flatbuffer.SLIMMING_STEPS:
        candidate = step(current)
        try:
            exact = np.array_equal(runtime.micro_outputs(candidate, inputs, arena), reference)
        except runtime.MicroError:
            exact = False
        steps.append({"step": label, "bytes_before": len(current),
                      "bytes_after": len(candidate) if exact else len(current),
                      "saved_bytes": len(current) - len(candidate) if exact else 0,
                      "tflm_bit_exact": exact, "applied": exact})
        if exact:
            current = candidate
    return current, steps


def _steps_error(keras_out, int8_out, details):
    """Worst |difference| in output steps between Keras outputs and int8 outputs."""
    scale, zero_point = details["quantization"]
    expected = keras_out.reshape(len(keras_out), -1) / scale + zero_point
    return np.abs(int8_out.astype(np.float64) - expected)


def verify(int8_model, packed_model, representative_data, *, layers, model=None,
           max_output_steps=DEFAULT_MAX_OUTPUT_STEPS, arena_size=None):
    """Checks an int8 / packed pair; raises :class:`ExportError` naming what is wrong.

    Checks, in order:
      1. per-channel distinct-value counts of each layer's int8 filter are within
         2 (1 bit), 3 (2 bits), 2^b - 1 (b bits);
      2. every packed tensor stores ceil(n*b/8) index bytes, and its indices decoded
         through its tables equal the int8 filter exactly;
      3. TFLM output of the packed file == TFLM output of the int8 file, bit for bit;
      4. LiteRT (reference kernels) output of the int8 file == its TFLM output;
      5. with ``model`` (the Keras QAT model): the int8 file's outputs are within
         ``max_output_steps`` output quantization steps of the Keras outputs
         (None: measure only).

    Args:
      int8_model, packed_model: .tflite bytes or paths.
      representative_data: inputs as :func:`export` takes them.
      layers: the manifest's ``layers`` (name, bits, op, tensor index per layer).
      model: the Keras QAT model, for check 5.
      max_output_steps: tolerance of check 5.
      arena_size: TFLM arena bytes; None measures it.

    Returns:
      A dict of what was measured (worst output steps, top-1 agreement, counts).
    """
    int8_bytes, packed_bytes = (_read_bytes(m) for m in (int8_model, packed_model))
    # 1. b-bit grid in the int8 file.
    filters = {f.tensor: f for f in flatbuffer.filter_tensors(int8_bytes)}
    for layer in layers:
        tensor = filters.get(layer["tensor"])
        if tensor is None:
            raise ExportError(f"layer {layer['name']!r}: tensor {layer['tensor']} is not an "
                              "int8 filter of the int8 model")
        counts = tensor.distinct_counts()
        limit = twin.max_levels(layer["bits"])
        worst = int(np.argmax(counts))
        if counts[worst] > limit:
            raise ExportError(
                f"layer {layer['name']!r} ({layer['bits']}-bit): int8 filter {worst} holds "
                f"{counts[worst]} distinct values, more than the {limit} a {layer['bits']}-bit "
                "filter may hold"
            )
    # 2. packed tensors: sizes and exact decoding.
    by_op = {}
    for tensor in filters.values():
        by_op.setdefault(tensor.op, []).append(tensor)
    packed = flatbuffer.packed_tensors(packed_bytes)
    expected_packed = [l for l in layers if l["bits"] < 8]
    if len(packed) != len(expected_packed):
        raise ExportError(f"the packed model holds {len(packed)} packed filters; the layers "
                          f"need {len(expected_packed)} (every layer below 8 bits)")
    unused = {l["name"]: l for l in expected_packed}
    for item in packed:
        match = None
        for layer in unused.values():
            reference = filters[layer["tensor"]].values
            if reference.shape == item.shape and np.array_equal(reference, item.decoded):
                match = layer
                break
        if match is None:
            raise ExportError(
                f"packed tensor read by operator {item.consumer} ({item.op}, shape "
                f"{item.shape}) does not decode to any int8 filter of the int8 model"
            )
        needed = -(-int(np.prod(item.shape)) * match["bits"] // 8)
        if item.bits != match["bits"] or item.index_bytes != needed:
            raise ExportError(
                f"layer {match['name']!r}: packed with {item.bits}-bit indices in "
                f"{item.index_bytes} bytes; expected {match['bits']}-bit indices in "
                f"ceil(n*b/8) = {needed} bytes"
            )
        del unused[match["name"]]
    # 3-4. interpreters.
    input_details, output_details = runtime.io_details(int8_bytes)
    samples = convert.samples_array(representative_data, model, max_samples=MAX_VERIFY_SAMPLES,
                                    input_shape=None if model is not None
                                    else input_details["shape"][1:])
    inputs = convert.quantize_inputs(samples, input_details)
    arena = arena_size or runtime.micro_arena_size(packed_bytes, inputs)
    tflm_int8 = runtime.micro_outputs(int8_bytes, inputs, arena)
    tflm_packed = runtime.micro_outputs(packed_bytes, inputs, arena)
    if not np.array_equal(tflm_int8, tflm_packed):
        diff = np.abs(tflm_int8.astype(int) - tflm_packed.astype(int))
        raise ExportError(f"TFLM output of the packed file differs from the int8 file's by up to "
                          f"{diff.max()} steps on {int(np.sum(diff.max(axis=1) > 0))} of "
                          f"{len(inputs)} inputs; they must be bit-identical")
    litert = runtime.litert_outputs(int8_bytes, inputs)
    if not np.array_equal(litert, tflm_int8):
        raise ExportError("LiteRT (reference kernels) and TFLM disagree on the int8 file by up to "
                          f"{np.abs(litert.astype(int) - tflm_int8.astype(int)).max()} steps")
    report = {"inputs": len(inputs), "packed_tensors": len(packed),
              "tflm_packed_equals_int8": True, "litert_equals_tflm": True}
    # 5. against Keras.
    if model is not None:
        keras_out = np.asarray(model(samples, training=False))
        steps = _steps_error(keras_out, tflm_int8, output_details)
        top1 = float(np.mean(np.argmax(keras_out.reshape(len(samples), -1), axis=1)
                             == np.argmax(tflm_int8, axis=1)))
        report.update({"keras_max_output_steps": float(steps.max()),
                       "keras_mean_output_steps": float(steps.mean()),
                       "keras_top1_agreement": top1,
                       "max_output_steps_allowed": max_output_steps})
        if max_output_steps is not None and steps.max() > max_output_steps:
            raise ExportError(
                f"the int8 file differs from the Keras QAT model by up to {steps.max():.1f} "
                f"output steps (allowed {max_output_steps}); top-1 agreement {100 * top1:.1f}%. "
                "Calibrate on more representative inputs, or pass max_output_steps=None to "
                "only report it"
            )
    return report


def _layers_of_ops(int8_bytes, ops):
    """Keras layer names whose converted ops are ``ops`` (from the converter's tensor names)."""
    model = flatbuffer.read(int8_bytes)
    graph = model.subgraphs[0]
    layers = []
    for op in graph.operators:
        if flatbuffer.op_name(model, op) in ops:
            for index in op.outputs:
                name = (graph.tensors[index].name or b"").decode()
                for part in name.split(";"):
                    pieces = part.split("/")
                    if len(pieces) > 1 and pieces[1] not in layers:
                        layers.append(pieces[1])
    return layers


def _check_micro_ops(int8_bytes, inputs):
    """Raises :class:`ExportError` naming the layers whose ops TFLM cannot run."""
    try:
        runtime.micro_outputs(int8_bytes, inputs[:1], max(1 << 22, 8 * len(int8_bytes)))
    except runtime.MicroError as error:
        if error.missing_ops:
            layers = _layers_of_ops(int8_bytes, error.missing_ops)
            raise ExportError(
                f"TFLite Micro has no kernel for op(s) {list(error.missing_ops)}, produced by "
                f"layer(s) {layers}; replace them with layers TFLM supports (e.g. ReLU/ReLU6 "
                "for GELU) and retrain") from error
        if not error.arena_too_small:
            raise ExportError(f"TFLite Micro cannot run the int8 model: {error}") from error


def _read_bytes(model):
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    with open(os.fspath(model), "rb") as f:
        return f.read()


def _accuracy(predictions, labels):
    return float(np.mean(np.argmax(predictions.reshape(len(labels), -1), axis=1) == labels))


def _accuracies(model, int8_bytes, packed_bytes, validation_data, arena):
    x, y = convert.labelled_arrays(validation_data, model)
    input_details, _ = runtime.io_details(int8_bytes)
    inputs = convert.quantize_inputs(x, input_details)
    keras_pred = np.asarray(model.predict(x, batch_size=256, verbose=0))
    int8_pred = runtime.litert_outputs(int8_bytes, inputs)
    packed_pred = runtime.micro_outputs(packed_bytes, inputs, arena)
    result = {"samples": int(len(y)), "keras": _accuracy(keras_pred, y),
              "int8_litert": _accuracy(int8_pred, y), "packed_tflm": _accuracy(packed_pred, y)}
    result["int8_minus_keras"] = result["int8_litert"] - result["keras"]
    return result


def _activation_bits(model):
    bits = set()
    for layer in model.layers:
        config = getattr(layer, "quantize_config", None)
        if config is None:
            continue
        for _, quantizer in config.get_activations_and_quantizers(layer.layer):
            if getattr(quantizer, "num_bits", None):
                bits.add(int(quantizer.num_bits))
        for quantizer in config.get_output_quantizers(layer.layer):
            if getattr(quantizer, "num_bits", None):
                bits.add(int(quantizer.num_bits))
    return sorted(bits)


def export(model, representative_data, out_dir, *, name="model", validation_data=None,
           max_output_steps="auto", activation_ranges="qat", time_invoke=False):
    """Exports a QAT model to an int8 .tflite, a packed TFLM .tflite and C arrays.

    Args:
      model: a QAT model made by :func:`tfq_pareto.apply` (or loaded in
        :func:`tfq_pareto.quantize_scope`).
      representative_data: calibration inputs: a NumPy array ``(n, h, w, c)``, a
        ``tf.data.Dataset`` (inputs or ``(inputs, labels)``, batched or not), or a
        converter-style generator of ``[x]`` lists. The first 500 calibrate the
        activation ranges; the first 64 drive the verification.
      out_dir: folder to write into (created).
      name: file and C symbol prefix; a C identifier.
      validation_data: optional ``(x, y)`` or Dataset of ``(x, y)``: the manifest
        then holds the accuracy of the Keras model, the int8 file and the packed file.
      max_output_steps: tolerance between Keras and int8 outputs, in output
        quantization steps; None only reports it. ``"auto"``: 8
        (:data:`DEFAULT_MAX_OUTPUT_STEPS`) when the int8
        file reproduces QAT exactly up to rounding (8-bit activations, QAT
        ranges), else None (4-bit activations are exported at 8 bits, so they
        differ by design: the manifest reports the accuracy change).
      activation_ranges: ``"qat"`` (default) exports the activation ranges QAT
        learned; ``"calibration"`` lets the converter calibrate every range on
        ``representative_data``.
      time_invoke: also time TFLM invokes, packed vs int8 (interleaved).

    Returns:
      :class:`ExportResult` with the file paths and the manifest.

    Raises:
      ExportError: for a float model, weights off their b-bit grid, an op TFLM
        cannot run, representative data of the wrong shape, or any failed check
        of :func:`verify` (each names the layer or input).

    Files written into ``out_dir``: ``<name>_int8.tflite``, ``<name>_packed.tflite``,
    ``<name>_model_data.cc``/``.h`` and ``<name>_manifest.json``.
    """
    c_arrays.check_name(name)
    samples = convert.samples_array(representative_data, model)
    if validation_data is not None:
        convert.labelled_arrays(validation_data, model, max_samples=1)  # fail early
    qat_twin, kernels = twin.float_twin(model, activation_ranges_from=activation_ranges)
    twin.check_grid(kernels)
    ranges_note = None
    try:
        int8_bytes = convert.to_int8(qat_twin, samples)
    except ExportError as error:
        if activation_ranges != "qat":
            raise
        # Some op's quantization constraints conflict with the QAT ranges: calibrate all.
        ranges_note = f"QAT ranges refused by the converter ({error}); all ranges calibrated"
        activation_ranges = "calibration"
        qat_twin, kernels = twin.float_twin(model, activation_ranges_from="calibration")
        int8_bytes = convert.to_int8(qat_twin, samples)
    activation_bits = _activation_bits(model)
    if max_output_steps == "auto":
        exact = activation_ranges == "qat" and all(b >= 8 for b in activation_bits)
        max_output_steps = DEFAULT_MAX_OUTPUT_STEPS if exact else None
    input_details, output_details = runtime.io_details(int8_bytes)
    check_inputs = convert.quantize_inputs(samples[:MAX_VERIFY_SAMPLES], input_details)
    _check_micro_ops(int8_bytes, check_inputs)

    pairs = match_filters(kernels, flatbuffer.filter_tensors(int8_bytes))
    layers = _layer_table(pairs)
    raw_packed = _pack(int8_bytes, layers)
    raw_arena = runtime.micro_arena_size(raw_packed, check_inputs[:1])
    packed_bytes, slimming = _slim(raw_packed, check_inputs[:SLIMMING_CHECK_SAMPLES], raw_arena)

    int8_arena = runtime.micro_arena_size(int8_bytes, check_inputs[:1])
    packed_arena = runtime.micro_arena_size(packed_bytes, check_inputs[:1])
    report = verify(int8_bytes, packed_bytes, samples, layers=layers, model=model,
                    max_output_steps=max_output_steps, arena_size=max(int8_arena, packed_arena))

    # Per-layer packed bytes.
    packed_items = {}
    filters = {f.tensor: f for f in flatbuffer.filter_tensors(int8_bytes)}
    for item in flatbuffer.packed_tensors(packed_bytes):
        for layer in layers:
            if layer["bits"] < 8 and layer["name"] not in packed_items and \
                    np.array_equal(filters[layer["tensor"]].values, item.decoded):
                packed_items[layer["name"]] = item
                break
    for layer in layers:
        item = packed_items.get(layer["name"])
        layer["packed_index_bytes"] = item.index_bytes if item else layer["int8_bytes"]
        layer["packed_table_bytes"] = item.table_bytes if item else 0
        layer["packed_bytes"] = layer["packed_index_bytes"] + layer["packed_table_bytes"]

    eq6_bits = sum(l["eq6_bits"] for l in layers)
    channels = sum(l["filters"] for l in layers)
    roles = flatbuffer.constant_bytes(packed_bytes)
    weight_bytes = roles["packed_indices"] + roles["filters"]
    quant_bytes = flatbuffer.quantization_bytes(packed_bytes)
    limit = eq6_bits / 8 + LIMIT_BYTES_PER_CHANNEL * channels
    ops = flatbuffer.op_names(packed_bytes)
    totals = {
        "eq6_bits": eq6_bits,
        "eq6_bytes": eq6_bits / 8,
        "output_channels": channels,
        "int8_file_bytes": len(int8_bytes),
        "packed_file_bytes": len(packed_bytes),
        "packed_file_bytes_before_slimming": len(raw_packed),
        "packed_weight_bytes": weight_bytes,
        "other_bytes": len(packed_bytes) - weight_bytes,
        "other_bytes_itemized": {
            "lut_tables_and_headers": roles["tables"],
            "biases_int32": roles["biases"],
            "other_constants": roles["other"],
            "quantization_scales_and_zero_points": quant_bytes,
            "graph_and_flatbuffer_overhead": len(packed_bytes) - weight_bytes - roles["tables"]
            - roles["biases"] - roles["other"] - quant_bytes,
        },
        "limit_bytes": limit,
        "ratio_to_limit": len(packed_bytes) / limit,
        "int8_weight_bytes": sum(l["int8_bytes"] for l in layers),
        "tflm_arena_bytes_int8": int8_arena,
        "tflm_arena_bytes_packed": packed_arena,
    }
    if time_invoke:
        int8_s, packed_s = runtime.interleaved_invoke_seconds(
            [int8_bytes, packed_bytes], check_inputs, [int8_arena, packed_arena])
        totals.update({"tflm_invoke_seconds_int8": int8_s, "tflm_invoke_seconds_packed": packed_s,
                       "invoke_ratio": packed_s / int8_s})
    manifest = {
        "version": MANIFEST_VERSION,
        "name": name,
        "model": model.name,
        "input": {"shape": [int(d) for d in input_details["shape"]],
                  "dtype": np.dtype(input_details["dtype"]).name,
                  "scale": float(input_details["quantization"][0]),
                  "zero_point": int(input_details["quantization"][1])},
        "output": {"shape": [int(d) for d in output_details["shape"]],
                   "dtype": np.dtype(output_details["dtype"]).name,
                   "scale": float(output_details["quantization"][0]),
                   "zero_point": int(output_details["quantization"][1])},
        "activation_bits_qat": activation_bits,
        "activation_bits_exported": 8,
        "activation_ranges": activation_ranges,
        "activation_ranges_note": ranges_note,
        "ops": ops,
        "tflm_resolver_methods": [c_arrays.resolver_method(op) for op in ops],
        "layers": layers,
        "totals": totals,
        "slimming": slimming,
        "verification": report,
    }
    if activation_bits and min(activation_bits) < 8:
        manifest["note"] = (f"activations were quantized to {min(activation_bits)} bits in "
                            "training; TFLite has no int4 activations, so they are int8 here")
    if validation_data is not None:
        manifest["accuracy"] = _accuracies(model, int8_bytes, packed_bytes, validation_data,
                                           max(int8_arena, packed_arena))

    os.makedirs(out_dir, exist_ok=True)
    files = {"int8": os.path.join(out_dir, f"{name}_int8.tflite"),
             "packed": os.path.join(out_dir, f"{name}_packed.tflite"),
             "manifest": os.path.join(out_dir, f"{name}_manifest.json")}
    for key, data in (("int8", int8_bytes), ("packed", packed_bytes)):
        with open(files[key], "wb") as f:
            f.write(data)
    files["cc"], files["h"] = c_arrays.write_c_arrays(packed_bytes, out_dir, name, ops, packed_arena)
    with open(files["manifest"], "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return ExportResult(files=files, manifest=manifest)


def verify_dir(out_dir, representative_data, *, name="model", model=None,
               max_output_steps=DEFAULT_MAX_OUTPUT_STEPS):
    """:func:`verify` on the files :func:`export` wrote into ``out_dir``."""
    with open(os.path.join(out_dir, f"{name}_manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    return verify(os.path.join(out_dir, f"{name}_int8.tflite"),
                  os.path.join(out_dir, f"{name}_packed.tflite"), representative_data,
                  layers=manifest["layers"], model=model, max_output_steps=max_output_steps)
