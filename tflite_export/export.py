"""export(): QAT model -> int8 .tflite -> packed TFLM .tflite -> C arrays, verified.

The pipeline only; each stage is a function with a typed result and its own tests:

  1. :func:`convert_model`: float twin with Q(W) in every kernel
     (:mod:`tflite_export.twin`), b-bit grid check, full-integer int8
     conversion (:mod:`tflite_export.convert`) -> :class:`Converted`;
  2. :func:`match_layers`: each quantized kernel paired with its int8 filter
     -> the manifest's layer rows;
  3. :func:`tflite_export.pack.pack`: filters of b < 8 bits LUT-packed with
     b-bit indices (TFLM compression);
  4. :func:`tflite_export.slim.slim`: what the packed flatbuffer carries besides
     weights removed, each pass checked bit-exact on TFLM -> ``Slimmed``;
  5. :func:`tflite_export.verify.verify`: five checks, each its own function;
  6. :func:`measure`: per-layer packed bytes and the totals;
  7. :func:`write_files`: .tflite files, C arrays, manifest.

Each file is parsed once (:class:`tflite_export.flatbuffer.ParsedModel`).
"""

import dataclasses
import json
import os

import numpy as np

import tfq_pareto
from tflite_export import c_arrays, convert, flatbuffer, pack, runtime, slim, split, twin
from tflite_export import fit as fit_lib
from tflite_export.errors import ExportError
from tflite_export.verify import DEFAULT_MAX_OUTPUT_STEPS, MAX_VERIFY_SAMPLES, verify

#: Manifest format version.
MANIFEST_VERSION = 1
#: Bytes per output channel the size limit allows on top of Eq. (6):
#: one float32 scale and one int32 bias.
LIMIT_BYTES_PER_CHANNEL = 8
#: Each slimming step is checked bit-exact on this many of the verification
#: inputs (the final verification then compares the slimmed file with the int8
#: file on all).
SLIMMING_CHECK_SAMPLES = 8

#: With ``max_decode_bytes="auto"``, packing may make the TFLM arena at most this many
#: bytes larger than the int8 file's arena (when splitting filters can achieve it).
ARENA_ALLOWANCE_BYTES = 64 * 1024
#: The smallest decode cap ``"auto"`` tries before it gives up on the allowance.
MIN_DECODE_BYTES = 1024

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


def _layers_of_ops(int8, ops):
    """Keras layer names whose converted ops are ``ops`` (from the converter's tensor names)."""
    model = flatbuffer.parse(int8).model
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


def _check_micro_ops(int8, inputs):
    """Raises :class:`ExportError` naming the layers whose ops TFLM cannot run."""
    try:
        runtime.micro_outputs(int8.data, inputs[:1], max(1 << 22, 8 * len(int8.data)))
    except runtime.MicroError as error:
        if error.missing_ops:
            layers = _layers_of_ops(int8, error.missing_ops)
            raise ExportError(
                f"TFLite Micro has no kernel for op(s) {list(error.missing_ops)}, produced by "
                f"layer(s) {layers}; replace them with layers TFLM supports (e.g. ReLU/ReLU6 "
                "for GELU) and retrain") from error
        if not error.arena_too_small:
            raise ExportError(f"TFLite Micro cannot run the int8 model: {error}") from error


def _accuracy(predictions, labels):
    return float(np.mean(np.argmax(predictions.reshape(len(labels), -1), axis=1) == labels))


def _accuracies(model, int8_bytes, packed_bytes, validation_data, arena):
    x, y = convert.labelled_arrays(validation_data, model)
    input_details, _ = runtime.io_details(int8_bytes)
    inputs = convert.quantize_inputs(convert.model_inputs(x, model), input_details)
    keras_pred = np.asarray(model.predict(x, batch_size=256, verbose=0))
    int8_pred = runtime.litert_outputs(int8_bytes, inputs)
    packed_pred = runtime.micro_outputs(packed_bytes, inputs, arena)
    result = {"samples": int(len(y)), "keras": _accuracy(keras_pred, y),
              "int8_litert": _accuracy(int8_pred, y), "packed_tflm": _accuracy(packed_pred, y)}
    result["int8_minus_keras"] = result["int8_litert"] - result["keras"]
    return result


def _activation_bits(model):
    """The distinct activation bits of the QAT model, from its quantization plan."""
    return tfq_pareto.plan_of(model).activation_bits


@dataclasses.dataclass(frozen=True)
class Converted:
    """Stage 1's result: the int8 file and what it was made from.

    Attributes:
      int8: the int8 model, parsed (:class:`tflite_export.flatbuffer.ParsedModel`).
      kernels: the twin's :class:`tflite_export.twin.QuantizedKernel` per quantized layer.
      activation_ranges: ``"qat"`` or ``"calibration"``: the ranges actually used.
      ranges_note: why QAT ranges were replaced by calibration, or None.
    """

    int8: flatbuffer.ParsedModel
    kernels: list
    activation_ranges: str
    ranges_note: str = None


def convert_model(model, samples, activation_ranges="qat"):
    """Stage 1: float twin with Q(W), b-bit grid check, int8 conversion.

    When the converter refuses the QAT ranges (an op's quantization constraints
    conflict with them), every range is calibrated instead and the result says so.
    """
    qat_twin, kernels = twin.float_twin(model, activation_ranges_from=activation_ranges)
    twin.check_grid(kernels)
    ranges_note = None
    try:
        int8_bytes = convert.to_int8(qat_twin, samples)
    except ExportError as error:
        if activation_ranges != "qat":
            raise
        ranges_note = f"QAT ranges refused by the converter ({error}); all ranges calibrated"
        activation_ranges = "calibration"
        qat_twin, kernels = twin.float_twin(model, activation_ranges_from="calibration")
        int8_bytes = convert.to_int8(qat_twin, samples)
    return Converted(flatbuffer.ParsedModel(int8_bytes), kernels, activation_ranges, ranges_note)


def match_layers(converted):
    """Stage 2: the manifest's layer rows, each kernel paired with its int8 filter tensor."""
    return _layer_table(match_filters(converted.kernels, flatbuffer.filter_tensors(converted.int8)))


@dataclasses.dataclass(frozen=True)
class Packed:
    """Stage 3's result: the packed model before slimming, and how it was split.

    Attributes:
      data: the packed model bytes.
      arena: its measured TFLM arena bytes.
      split: the :class:`tflite_export.split.SplitModel` it was packed from.
      max_decode_bytes: the decode cap used (None: no cap).
      tried: ``[(cap, arena bytes), ...]`` for every cap tried (``"auto"``).
    """

    data: bytes
    arena: int
    split: split.SplitModel
    max_decode_bytes: int = None
    tried: tuple = ()


def check_max_decode_bytes(value):
    """Raises ValueError unless ``value`` is None, "auto" or an int > 0."""
    if value is None or value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"max_decode_bytes must be None, 'auto' or an int >= 1 (bytes); "
                         f"received {value!r}")


def pack_within(int8, layers, inputs, *, max_decode_bytes="auto", int8_arena=None,
                arena_allowance=None):
    """Stage 3: filters below 8 bits packed, large ones split so that DECODE stays small.

    Args:
      int8: the parsed int8 model.
      layers: the manifest's layer rows; a split layer's row gains ``groups``
        (``[start, stop)`` output-channel ranges) and ``decode_bytes``.
      inputs: int8 inputs for measuring TFLM arenas.
      max_decode_bytes: the most bytes one DECODE may write into the arena (an
        int), None for no cap, or ``"auto"``: no split when the packed arena is
        within ``arena_allowance`` of ``int8_arena``; otherwise a descent over
        power-of-two caps from ``arena_allowance / 2``: halved while the measured
        arena shrinks, or, when the first halving does not shrink it, doubled
        while it shrinks. It stops at the first cap within the allowance, at the
        first step that does not shrink the arena, or at :data:`MIN_DECODE_BYTES`
        (below) / the largest decoded filter (above); the smallest arena found is
        kept. The descent assumes the arena falls and then rises as the cap
        shrinks: a smaller cap shrinks the DECODE buffers, but every group adds a
        DECODE, an op and their tensors, whose bookkeeping TFLM also keeps in the
        arena (on a 1-bit ResNet50 at 32x32 input, a 1 KiB cap makes the arena
        about 14 times larger than a 32 KiB cap does).
      int8_arena: the int8 file's measured arena (``"auto"`` only).
      arena_allowance: bytes the packed arena may exceed the int8 one (``"auto"``;
        default :data:`ARENA_ALLOWANCE_BYTES`).

    Returns:
      :class:`Packed`.
    """
    check_max_decode_bytes(max_decode_bytes)
    if arena_allowance is None:
        arena_allowance = ARENA_ALLOWANCE_BYTES

    def attempt(cap):
        model = split.split_filters(int8, layers, cap)
        data = pack.pack(model.data if model.splits else int8, layers, model.filter_tensors)
        return Packed(data, runtime.micro_arena_size(data, inputs), model, cap)

    if max_decode_bytes != "auto":
        result = attempt(max_decode_bytes)
        return _record_groups(layers, dataclasses.replace(
            result, tried=((max_decode_bytes, result.arena),)))
    limit = int8_arena + arena_allowance
    result = attempt(None)
    tried = [(None, result.arena)]
    largest = max((layer["int8_bytes"] for layer in layers if layer["bits"] < 8), default=0)

    def measured(cap):
        nonlocal result
        candidate = attempt(cap)
        tried.append((cap, candidate.arena))
        if candidate.arena < result.arena:
            result = candidate
        return candidate.arena

    def walk(cap, step, previous):
        """Tries ``cap``, ``cap * step``, ... while each shrinks the arena; how many did."""
        shrank = 0
        while MIN_DECODE_BYTES <= cap < largest and result.arena > limit:
            arena = measured(cap)
            if arena >= previous:
                break
            shrank, previous, cap = shrank + 1, arena, int(cap * step)
        return shrank

    start = max(arena_allowance // 2, MIN_DECODE_BYTES)
    if result.arena > limit and start < largest:
        at_start = measured(start)
        if walk(start // 2, 0.5, at_start) == 0:  # halving does not help: larger caps
            walk(start * 2, 2, at_start)
    return _record_groups(layers, dataclasses.replace(result, tried=tuple(tried)))


def _record_groups(layers, result):
    """Writes each split layer's ``groups`` and every layer's ``decode_bytes``; returns ``result``."""
    groups = {s.name: s for s in result.split.splits}
    for layer in layers:
        if layer["name"] in groups:
            layer["groups"] = [list(g) for g in groups[layer["name"]].groups]
            layer["decode_bytes"] = groups[layer["name"]].decode_bytes
        else:
            layer.pop("groups", None)
            layer["decode_bytes"] = layer["int8_bytes"] if layer["bits"] < 8 else 0
    return result


def measure(layers, int8, packed, *, raw_packed_bytes, int8_arena, packed_arena):
    """Stage 6: per-layer packed bytes (added to ``layers``) and the manifest's totals.

    Args:
      layers: the layer rows (updated in place with ``packed_*_bytes``).
      int8, packed: the parsed int8 and final packed models.
      raw_packed_bytes: size of the packed file before slimming.
      int8_arena, packed_arena: measured TFLM arena bytes.

    Returns:
      the ``totals`` dict.
    """
    packed_items, taken = {}, set()
    filters = {f.tensor: f for f in flatbuffer.filter_tensors(int8)}
    for item in flatbuffer.packed_tensors(packed):
        for layer in layers:
            for group in layer.get("groups") or [None]:
                key = (layer["name"], None if group is None else tuple(group))
                reference = filters[layer["tensor"]].values
                if group is not None:
                    reference = reference[group[0]:group[1]]
                if layer["bits"] < 8 and key not in taken and reference.shape == \
                        item.decoded.shape and np.array_equal(reference, item.decoded):
                    packed_items.setdefault(layer["name"], []).append(item)
                    taken.add(key)
                    break
            else:
                continue
            break
    for layer in layers:
        items = packed_items.get(layer["name"])
        layer["packed_index_bytes"] = (sum(i.index_bytes for i in items) if items
                                       else layer["int8_bytes"])
        layer["packed_table_bytes"] = sum(i.table_bytes for i in items) if items else 0
        layer["packed_bytes"] = layer["packed_index_bytes"] + layer["packed_table_bytes"]

    eq6_bits = sum(l["eq6_bits"] for l in layers)
    channels = sum(l["filters"] for l in layers)
    roles = flatbuffer.constant_bytes(packed)
    weight_bytes = roles["packed_indices"] + roles["filters"]
    quant_bytes = flatbuffer.quantization_bytes(packed)
    limit = eq6_bits / 8 + LIMIT_BYTES_PER_CHANNEL * channels
    return {
        "eq6_bits": eq6_bits,
        "eq6_bytes": eq6_bits / 8,
        "output_channels": channels,
        "int8_file_bytes": len(int8),
        "packed_file_bytes": len(packed),
        "packed_file_bytes_before_slimming": raw_packed_bytes,
        "packed_weight_bytes": weight_bytes,
        "other_bytes": len(packed) - weight_bytes,
        "other_bytes_itemized": {
            "lut_tables_and_headers": roles["tables"],
            "biases_int32": roles["biases"],
            "other_constants": roles["other"],
            "quantization_scales_and_zero_points": quant_bytes,
            "graph_and_flatbuffer_overhead": len(packed) - weight_bytes - roles["tables"]
            - roles["biases"] - roles["other"] - quant_bytes,
        },
        "limit_bytes": limit,
        "ratio_to_limit": len(packed) / limit,
        "int8_weight_bytes": sum(l["int8_bytes"] for l in layers),
        "tflm_arena_bytes_int8": int8_arena,
        "tflm_arena_bytes_packed": packed_arena,
    }


def _io_entry(details):
    return {"shape": [int(d) for d in details["shape"]],
            "dtype": np.dtype(details["dtype"]).name,
            "scale": float(details["quantization"][0]),
            "zero_point": int(details["quantization"][1])}


def _input_entry(details, model):
    """The manifest's input: the int8 tensor, and what the firmware computes to fill it.

    Without preprocessing layers the firmware quantizes the model's input with
    ``scale`` and ``zero_point``. With leading ``Rescaling``/``Normalization``
    layers (left out of the file, :mod:`tfq_pareto.preprocessing`) they are
    listed, and folded into per-channel ``raw_input_quantization``: the int8
    value of a raw pixel ``x`` of channel ``c`` is ``clamp(round(x / scale[c] +
    zero_point[c]), -128, 127)``.
    """
    entry = _io_entry(details)
    chain = tfq_pareto.preprocessing.leading_preprocessing(model)
    if chain:
        scale, zero_point = tfq_pareto.preprocessing.folded_input_quantization(
            chain, entry["scale"], entry["zero_point"], entry["shape"][-1])
        entry["preprocessing"] = tfq_pareto.preprocessing.describe(chain)
        entry["raw_input_quantization"] = {
            "scale": scale, "zero_point": zero_point,
            "formula": "q[c] = clamp(round(x[c] / scale[c] + zero_point[c]), -128, 127) for a "
                       "raw input x (before the preprocessing layers, which are not in the file)"}
    return entry


def write_files(out_dir, name, int8, packed, manifest):
    """Stage 7: writes the two .tflite files, the C arrays and the manifest; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    files = {"int8": os.path.join(out_dir, f"{name}_int8.tflite"),
             "packed": os.path.join(out_dir, f"{name}_packed.tflite"),
             "manifest": os.path.join(out_dir, f"{name}_manifest.json")}
    for key, parsed in (("int8", int8), ("packed", packed)):
        with open(files[key], "wb") as f:
            f.write(parsed.data)
    files["cc"], files["h"] = c_arrays.write_c_arrays(
        packed.data, out_dir, name, manifest["ops"], manifest["totals"]["tflm_arena_bytes_packed"])
    with open(files["manifest"], "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return files


def export(model, representative_data, out_dir, *, name="model", validation_data=None,
           max_output_steps="auto", activation_ranges="qat", time_invoke=False,
           max_decode_bytes="auto", budget=None, enforce_budget=False):
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
      max_decode_bytes: the most bytes one DECODE op may write into the TFLM
        arena. A packed conv or fully connected layer whose decoded filter is
        larger is split by output channels into groups within the cap (one
        DECODE + op per group, joined by CONCATENATION: bit-exact, see
        :mod:`tflite_export.split`). ``"auto"`` (default): split only when the
        packed arena would exceed the int8 file's by more than
        :data:`ARENA_ALLOWANCE_BYTES`, with the largest cap that keeps it
        within; None: never split (the arena then holds the largest decoded
        filter). The manifest's ``packing`` section says what was done.
      budget: a :class:`tflite_export.Budget` (flash, RAM, MACs): the manifest's
        ``fit`` section then says whether the packed model fits it and each
        margin.
      enforce_budget: raise :class:`tflite_export.BudgetError` (naming what is
        over and by how many bytes) instead of writing files that do not fit.

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
    check_max_decode_bytes(max_decode_bytes)
    if budget is not None and not isinstance(budget, fit_lib.Budget):
        raise ValueError(f"budget must be a tflite_export.Budget; received {budget!r}")
    if enforce_budget and budget is None:
        raise ValueError("enforce_budget=True needs a budget")
    samples = convert.samples_array(representative_data, model)
    if validation_data is not None:
        convert.labelled_arrays(validation_data, model, max_samples=1)  # fail early
    file_samples = convert.model_inputs(samples, model)  # after float preprocessing layers
    converted = convert_model(model, file_samples, activation_ranges)
    int8 = converted.int8
    activation_bits = _activation_bits(model)
    if max_output_steps == "auto":
        exact = converted.activation_ranges == "qat" and all(b >= 8 for b in activation_bits)
        max_output_steps = DEFAULT_MAX_OUTPUT_STEPS if exact else None
    input_details, output_details = runtime.io_details(int8.data)
    check_inputs = convert.quantize_inputs(file_samples[:MAX_VERIFY_SAMPLES], input_details)
    _check_micro_ops(int8, check_inputs)

    layers = match_layers(converted)
    int8_arena = runtime.micro_arena_size(int8.data, check_inputs[:1])
    packed_raw = pack_within(int8, layers, check_inputs[:1], max_decode_bytes=max_decode_bytes,
                             int8_arena=int8_arena)
    raw_packed = packed_raw.data
    slimmed = slim.slim(raw_packed, check_inputs[:SLIMMING_CHECK_SAMPLES], packed_raw.arena)
    packed = flatbuffer.ParsedModel(slimmed.data)

    packed_arena = runtime.micro_arena_size(packed.data, check_inputs[:1])
    report = verify(int8, packed, samples, layers=layers, model=model,
                    max_output_steps=max_output_steps, arena_size=max(int8_arena, packed_arena))
    totals = measure(layers, int8, packed, raw_packed_bytes=len(raw_packed),
                     int8_arena=int8_arena, packed_arena=packed_arena)
    if time_invoke:
        int8_s, packed_s = runtime.interleaved_invoke_seconds(
            [int8.data, packed.data], check_inputs, [int8_arena, packed_arena])
        totals.update({"tflm_invoke_seconds_int8": int8_s, "tflm_invoke_seconds_packed": packed_s,
                       "invoke_ratio": packed_s / int8_s})
    else:
        (packed_s,) = runtime.interleaved_invoke_seconds([packed.data], check_inputs,
                                                         [packed_arena], repeats=3, inner=1)
    fit = fit_lib.fit_section(flash_bytes=len(packed.data), arena_bytes=packed_arena, int8=int8,
                              invoke_seconds=packed_s)
    if budget is not None:
        fit["budget"] = (fit_lib.enforce(budget, fit) if enforce_budget else budget.check(fit))
    ops = flatbuffer.op_names(packed)
    manifest = {
        "version": MANIFEST_VERSION,
        "name": name,
        "model": model.name,
        "input": _input_entry(input_details, model),
        "output": _io_entry(output_details),
        "activation_bits_qat": activation_bits,
        "activation_bits_exported": 8,
        "activation_ranges": converted.activation_ranges,
        "activation_ranges_note": converted.ranges_note,
        "ops": ops,
        "tflm_resolver_methods": [c_arrays.resolver_method(op) for op in ops],
        "layers": layers,
        "totals": totals,
        "packing": {
            "max_decode_bytes": max_decode_bytes,
            "decode_cap_used": packed_raw.max_decode_bytes,
            "arena_allowance_bytes": ARENA_ALLOWANCE_BYTES if max_decode_bytes == "auto" else None,
            "split_layers": {s.name: len(s.groups) for s in packed_raw.split.splits},
            "largest_decode_bytes": max((l["decode_bytes"] for l in layers), default=0),
            "caps_tried": [{"max_decode_bytes": cap, "arena_bytes_before_slimming": arena}
                           for cap, arena in packed_raw.tried],
        },
        "fit": fit,
        "slimming": slimmed.steps,
        "verification": report,
    }
    if activation_bits and min(activation_bits) < 8:
        manifest["note"] = (f"activations were quantized to {min(activation_bits)} bits in "
                            "training; TFLite has no int4 activations, so they are int8 here")
    if validation_data is not None:
        manifest["accuracy"] = _accuracies(model, int8.data, packed.data, validation_data,
                                           max(int8_arena, packed_arena))
    return ExportResult(files=write_files(out_dir, name, int8, packed, manifest),
                        manifest=manifest)
