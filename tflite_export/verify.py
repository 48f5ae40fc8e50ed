"""Verification of an int8 / packed pair: one function per check, and :func:`verify`.

Each check raises :class:`tflite_export.errors.ExportError` naming the layer,
tensor or input that fails it; :func:`verify` runs them in order and returns
what it measured.
"""

import json
import os

import numpy as np

from tflite_export import convert, flatbuffer, runtime, twin
from tflite_export.errors import ExportError

#: Verification runs the interpreters on at most this many representative inputs.
MAX_VERIFY_SAMPLES = 64
#: Tolerance, in output quantization steps, between the Keras QAT model and the int8
#: file when the int8 file uses QAT's 8-bit activation ranges. Integer
#: requantization rounds differently from float fake-quant and the differences
#: add up over depth (measured: 2 on 2-epoch test models, 6 on a 30-epoch one).
DEFAULT_MAX_OUTPUT_STEPS = 8


def check_int8_grid(int8, layers):
    """Check 1: each layer's int8 filter holds at most 2 (1 bit), 3 (2 bits), 2^b - 1 values per channel."""
    filters = {f.tensor: f for f in flatbuffer.filter_tensors(int8)}
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


def check_packed_tensors(int8, packed, layers):
    """Check 2: every layer below 8 bits is packed in ceil(n*b/8) index bytes and decodes exactly.

    A layer split by output channels (its row's ``groups``, see
    :mod:`tflite_export.split`) is packed once per group, each decoding exactly to
    its channels of the int8 filter.

    Returns:
      the number of packed tensors.
    """
    filters = {f.tensor: f for f in flatbuffer.filter_tensors(int8)}
    items = flatbuffer.packed_tensors(packed)
    unused = {(l["name"], tuple(g) if g else None): l for l in layers if l["bits"] < 8
              for g in (l.get("groups") or [None])}
    if len(items) != len(unused):
        raise ExportError(f"the packed model holds {len(items)} packed filters; the layers "
                          f"need {len(unused)} (every layer below 8 bits, one per channel "
                          "group of a split layer)")
    for item in items:
        match = key = None
        for key, layer in unused.items():
            reference = filters[layer["tensor"]].values
            if key[1] is not None:
                reference = reference[key[1][0]:key[1][1]]
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
        del unused[key]
    return len(items)


def check_packed_equals_int8(tflm_int8, tflm_packed):
    """Check 3: TFLM's outputs of the packed file equal those of the int8 file, bit for bit."""
    if not np.array_equal(tflm_int8, tflm_packed):
        diff = np.abs(tflm_int8.astype(int) - tflm_packed.astype(int))
        raise ExportError(f"TFLM output of the packed file differs from the int8 file's by up to "
                          f"{diff.max()} steps on {int(np.sum(diff.max(axis=1) > 0))} of "
                          f"{len(tflm_int8)} inputs; they must be bit-identical")


def check_litert_equals_tflm(litert, tflm_int8, int8=None, inputs=None, arena=None):
    """Check 4: LiteRT (reference kernels) and TFLM compute the same int8 outputs.

    When they do not and ``int8``/``inputs``/``arena`` are given, the first op at
    which the two runtimes part is found (:func:`first_disagreeing_op`). If that
    op's inputs agree and its outputs differ by one step, the two runtimes'
    kernels for that op round differently (as LiteRT's and TFLM's int8 RELU do
    when it rescales: input and output scales differ): that is reported, not
    raised, since either runtime computes the file as written. Anything else
    raises.

    Returns:
      None when the outputs are equal, else the report: ``max_steps`` on the
      outputs and the ``first_op`` at which they part.
    """
    if np.array_equal(litert, tflm_int8):
        return None
    steps = int(np.abs(litert.astype(int) - tflm_int8.astype(int)).max())
    message = f"LiteRT (reference kernels) and TFLM disagree on the int8 file by up to {steps} steps"
    if int8 is None:
        raise ExportError(message)
    first = first_disagreeing_op(int8, inputs, arena)
    if first is None or not first["inputs_agree"] or first["steps"] > 1:
        raise ExportError(message + (f"; they first part at {first}" if first else ""))
    return {"max_steps": steps, "first_op": first}


def _steps_apart(data, tensors, inputs, arena):
    """Largest LiteRT-vs-TFLM difference (steps) over ``tensors`` made the model's output."""
    worst, arena = 0, max(4 * arena, 1 << 22)  # an output kept alive may need more arena
    for tensor in tensors:
        model = flatbuffer.read(data)
        model.subgraphs[0].outputs = [int(tensor)]
        edited = flatbuffer.write(model)
        litert = runtime.litert_outputs(edited, inputs).astype(np.int64)
        tflm = runtime.micro_outputs(edited, inputs, arena).astype(np.int64)
        worst = max(worst, int(np.abs(litert - tflm).max()))
    return worst


def first_disagreeing_op(int8, inputs, arena):
    """The first op whose output LiteRT and TFLM compute differently from equal inputs.

    Bisects the op list (execution order), making one op's output the model's
    output at a time, to an op that disagrees right after one that agrees. In a
    graph with branches that op's inputs may still disagree (the divergence began
    on another branch), so the search then walks up the graph, from an op to the
    producer of an input that disagrees, until it reaches an op whose inputs all
    agree: that op's kernels differ. Returns ``{"index", "op", "output", "steps",
    "inputs_agree"}`` (``steps``: that op's output difference; ``inputs_agree``
    False only if the walk reached a graph input), or None when the outputs agree.
    """
    data = bytes(int8.data if hasattr(int8, "data") else int8)
    model = flatbuffer.read(data)
    graph = model.subgraphs[0]
    operators = graph.operators
    output_of = [int(op.outputs[0]) for op in operators]
    producer = {int(t): k for k, op in enumerate(operators) for t in op.outputs}
    measured = {}  # tensor -> output steps apart; each tensor is measured once

    def steps_apart(tensor):
        if tensor not in measured:
            measured[tensor] = _steps_apart(data, [tensor], inputs, arena)
        return measured[tensor]

    low, high = 0, len(operators) - 1
    if not steps_apart(output_of[high]):
        return None
    while low < high:  # invariant: op ``high`` disagrees
        middle = (low + high) // 2
        if steps_apart(output_of[middle]):
            high = middle
        else:
            low = middle + 1
    index, inputs_agree = high, False
    while True:
        variable = [int(t) for t in operators[index].inputs
                    if t >= 0 and not _is_constant(model, graph.tensors[int(t)])]
        apart = [t for t in variable if steps_apart(t)]
        if not apart:
            inputs_agree = True
            break
        if apart[0] not in producer:  # a graph input: cannot happen with equal inputs
            break
        index = producer[apart[0]]
    name = graph.tensors[output_of[index]].name
    return {"index": index, "op": flatbuffer.op_name(model, operators[index]),
            "output": name.decode() if isinstance(name, bytes) else name,
            "steps": steps_apart(output_of[index]),
            "inputs_agree": inputs_agree}


def _is_constant(model, tensor):
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def output_steps(keras_out, int8_out, details):
    """|difference| in output quantization steps between Keras outputs and int8 outputs."""
    scale, zero_point = details["quantization"]
    expected = keras_out.reshape(len(keras_out), -1) / scale + zero_point
    return np.abs(int8_out.astype(np.float64) - expected)


def check_against_keras(model, samples, tflm_int8, output_details, max_output_steps):
    """Check 5: the int8 outputs are within ``max_output_steps`` steps of the Keras QAT model's.

    Returns:
      what was measured: worst and mean output steps, top-1 agreement, the tolerance.
    """
    keras_out = np.asarray(model(samples, training=False))
    steps = output_steps(keras_out, tflm_int8, output_details)
    top1 = float(np.mean(np.argmax(keras_out.reshape(len(samples), -1), axis=1)
                         == np.argmax(tflm_int8, axis=1)))
    report = {"keras_max_output_steps": float(steps.max()),
              "keras_mean_output_steps": float(steps.mean()),
              "keras_top1_agreement": top1,
              "max_output_steps_allowed": max_output_steps}
    if max_output_steps is not None and steps.max() > max_output_steps:
        raise ExportError(
            f"the int8 file differs from the Keras QAT model by up to {steps.max():.1f} "
            f"output steps (allowed {max_output_steps}); top-1 agreement {100 * top1:.1f}%. "
            "Calibrate on more representative inputs, or pass max_output_steps=None to "
            "only report it"
        )
    return report


def read_bytes(model):
    """Model bytes from bytes, a :class:`~tflite_export.flatbuffer.ParsedModel` or a path."""
    if isinstance(model, flatbuffer.ParsedModel):
        return model
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    with open(os.fspath(model), "rb") as f:
        return f.read()


def verify(int8_model, packed_model, representative_data, *, layers, model=None,
           max_output_steps=DEFAULT_MAX_OUTPUT_STEPS, arena_size=None):
    """Checks an int8 / packed pair; raises :class:`ExportError` naming what is wrong.

    Checks, in order:
      1. per-channel distinct-value counts of each layer's int8 filter are within
         2 (1 bit), 3 (2 bits), 2^b - 1 (b bits): :func:`check_int8_grid`;
      2. every packed tensor stores ceil(n*b/8) index bytes, and its indices decoded
         through its tables equal the int8 filter exactly: :func:`check_packed_tensors`;
      3. TFLM output of the packed file == TFLM output of the int8 file, bit for
         bit: :func:`check_packed_equals_int8`;
      4. LiteRT (reference kernels) output of the int8 file == its TFLM output:
         :func:`check_litert_equals_tflm` (a one-step rounding difference of one
         op's kernels, located, is reported instead);
      5. with ``model`` (the Keras QAT model): the int8 file's outputs are within
         ``max_output_steps`` output quantization steps of the Keras outputs
         (None: measure only): :func:`check_against_keras`.

    Args:
      int8_model, packed_model: .tflite bytes, paths or parsed models.
      representative_data: inputs as :func:`tflite_export.export` takes them.
      layers: the manifest's ``layers`` (name, bits, op, tensor index per layer).
      model: the Keras QAT model, for check 5 (``representative_data`` are then its
        raw inputs: its leading preprocessing layers run before they are quantized).
      max_output_steps: tolerance of check 5.
      arena_size: TFLM arena bytes; None measures it.

    Returns:
      A dict of what was measured (worst output steps, top-1 agreement, counts).
    """
    int8 = flatbuffer.parse(read_bytes(int8_model))
    packed = flatbuffer.parse(read_bytes(packed_model))
    check_int8_grid(int8, layers)
    packed_count = check_packed_tensors(int8, packed, layers)
    input_details, output_details = runtime.io_details(int8.data)
    samples = convert.samples_array(representative_data, model, max_samples=MAX_VERIFY_SAMPLES,
                                    input_shape=None if model is not None
                                    else input_details["shape"][1:])
    inputs = convert.quantize_inputs(convert.model_inputs(samples, model), input_details)
    arena = arena_size or runtime.micro_arena_size(packed.data, inputs)
    tflm_int8 = runtime.micro_outputs(int8.data, inputs, arena)
    check_packed_equals_int8(tflm_int8, runtime.micro_outputs(packed.data, inputs, arena))
    apart = check_litert_equals_tflm(runtime.litert_outputs(int8.data, inputs), tflm_int8,
                                     int8, inputs, arena)
    report = {"inputs": len(inputs), "packed_tensors": packed_count,
              "tflm_packed_equals_int8": True, "litert_equals_tflm": apart is None}
    if apart is not None:
        report["litert_vs_tflm"] = apart
    if model is not None:
        report.update(check_against_keras(model, samples, tflm_int8, output_details,
                                          max_output_steps))
    return report


def verify_dir(out_dir, representative_data, *, name="model", model=None,
               max_output_steps=DEFAULT_MAX_OUTPUT_STEPS):
    """:func:`verify` on the files :func:`tflite_export.export` wrote into ``out_dir``."""
    with open(os.path.join(out_dir, f"{name}_manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    return verify(os.path.join(out_dir, f"{name}_int8.tflite"),
                  os.path.join(out_dir, f"{name}_packed.tflite"), representative_data,
                  layers=manifest["layers"], model=model, max_output_steps=max_output_steps)
