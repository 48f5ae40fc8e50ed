"""Running .tflite files: the TFLite Micro interpreter and LiteRT's reference kernels."""

import contextlib
import os
import re
import tempfile
import time

import numpy as np

#: Arena sizes are searched to this granularity (TFLM aligns allocations to 16 B).
ARENA_STEP = 16


class MicroError(RuntimeError):
    """TFLite Micro refused a model; the message carries TFLM's own reason.

    Attributes:
      missing_ops: builtin ops TFLM has no kernel for (empty for other failures).
      arena_too_small: whether the failure was an arena allocation.
    """

    def __init__(self, message, missing_ops=(), arena_too_small=False):
        super().__init__(message)
        self.missing_ops = tuple(missing_ops)
        self.arena_too_small = arena_too_small


@contextlib.contextmanager
def captured_stderr():
    """Captures what C/C++ code writes to file descriptor 2; yields a list filled on exit."""
    captured = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


def resource_variable_count(model_bytes):
    """Distinct resource variables (``VAR_HANDLE`` shared names) of a .tflite model.

    What TFLM's Python wrapper counts before it creates an interpreter, read
    here through the lazy flatbuffer accessors: only the operators are
    visited. The wrapper's own ``count_resource_variables`` first unpacks the
    whole model, every weight buffer included, into Python objects; on a
    35 MB model (ResNetRS50) that was 86% of an export's arena measurements,
    which create an interpreter per probed arena size.
    """
    from tflite_micro.tensorflow.lite.micro.python import (  # pylint: disable=import-outside-toplevel
        schema_py_generated as schema,
    )

    model = schema.Model.GetRootAsModel(bytearray(model_bytes), 0)
    names = set()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(o)
            code = model.OperatorCodes(op.OpcodeIndex())
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != (
                    schema.BuiltinOperator.VAR_HANDLE):
                continue
            options = schema.VarHandleOptions()
            table = op.BuiltinOptions()
            options.Init(table.Bytes, table.Pos)
            names.add(options.SharedName())
    return len(names)


@contextlib.contextmanager
def _fast_resource_variable_count():
    """TFLM's wrapper counts resource variables with :func:`resource_variable_count`.

    The wrapper looks its counter up in its module's globals when an
    interpreter is created; it is swapped for the lazy one, which returns the
    same number, only while this block runs. A wrapper without that function
    (another tflite-micro release) is left as it is.
    """
    from tflite_micro import runtime  # pylint: disable=import-outside-toplevel

    module_globals = runtime.Interpreter.__init__.__globals__
    original = module_globals.get("count_resource_variables")
    if original is None:
        yield
        return
    module_globals["count_resource_variables"] = resource_variable_count
    try:
        yield
    finally:
        module_globals["count_resource_variables"] = original


def _micro_interpreter(model_bytes, arena_size):
    from tflite_micro import runtime  # pylint: disable=import-outside-toplevel

    with captured_stderr() as err, _fast_resource_variable_count():
        try:
            return runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=int(arena_size))
        except RuntimeError as error:
            failure = error
    raise _micro_error(err[0], failure)


def _micro_error(log, error):
    missing = sorted(set(re.findall(r"Didn't find op for builtin opcode '([^']+)'", log)))
    if missing:
        return MicroError(f"TFLite Micro has no kernel for op(s) {missing}", missing_ops=missing)
    arena = bool(re.search(r"Failed to (allocate|resize buffer)|Requested: \d+", log))
    failed = re.findall(r"Node (\S+) \(number (\d+)\) failed to (\w+)", log)
    if failed:
        op, number, stage = failed[0]
        return MicroError(f"TFLite Micro: op {op} (operator {number}) failed to {stage}: "
                          f"{log.strip()[-300:]}", arena_too_small=arena)
    return MicroError(f"TFLite Micro: {error}: {log.strip()[-300:]}", arena_too_small=arena)


def micro_outputs(model_bytes, inputs, arena_size):
    """Runs TFLM on each row of ``inputs`` (already int8/in the model's input type).

    Returns:
      an array ``(n, ...)`` of outputs.
    """
    interpreter = _micro_interpreter(model_bytes, arena_size)
    outputs = []
    with captured_stderr() as err:
        try:
            for row in inputs:
                interpreter.set_input(row[None], 0)
                interpreter.invoke()
                outputs.append(np.array(interpreter.get_output(0)).reshape(-1))
        except RuntimeError as error:
            failure = error
        else:
            failure = None
    if failure is not None:
        raise _micro_error(err[0], failure)
    return np.stack(outputs)


def _recorded_arena_bytes(model_bytes, sample, arena_size):
    """Arena bytes TFLM's recording allocator reports after one invoke, or None."""
    interpreter = _micro_interpreter(model_bytes, arena_size)
    with captured_stderr() as log:
        interpreter.set_input(sample[:1], 0)
        interpreter.invoke()
        interpreter.print_allocations()
    found = re.search(r"Arena allocation total (\d+) bytes", log[0])
    return int(found.group(1)) if found else None


def micro_arena_size(model_bytes, sample, upper=None):
    """Smallest arena (bytes, a multiple of 16) in which TFLM prepares and invokes the model.

    Starts from the total TFLM's recording allocator reports and bisects upwards
    on real interpreter creations (TFLM plans and allocates the whole arena when
    it is created), so the result is what this TFLM build needs, including the
    interpreter's own bookkeeping. Sizes below the reported total are never
    tried: TFLM can crash, rather than fail, when its persistent structures do
    not fit.
    """
    def fits(size, strict):
        try:
            if strict:
                micro_outputs(model_bytes, sample[:1], size)
            else:
                _micro_interpreter(model_bytes, size)
            return True
        except MicroError as error:
            if strict and not error.arena_too_small:
                raise
            return False

    upper = upper or max(1 << 18, 2 * len(model_bytes))
    while not fits(upper, strict=True):
        upper *= 2
        if upper > 1 << 31:
            micro_outputs(model_bytes, sample[:1], upper)  # raises TFLM's reason
    recorded = _recorded_arena_bytes(model_bytes, sample, upper)
    if recorded is None:
        return upper
    lower = max(0, (recorded // ARENA_STEP) * ARENA_STEP - ARENA_STEP)
    if fits(lower + ARENA_STEP, strict=False):
        return lower + ARENA_STEP
    lower += ARENA_STEP
    while upper - lower > ARENA_STEP:
        middle = (lower + upper) // 2 // ARENA_STEP * ARENA_STEP
        if middle <= lower:
            break
        if fits(middle, strict=False):
            upper = middle
        else:
            lower = middle
    return upper


def interleaved_invoke_seconds(models, sample, arenas, repeats=20, inner=5):
    """Median CPU seconds per ``invoke`` of several models, timed in alternation.

    Interleaving puts every model under the same machine load, so their ratio is
    meaningful on a noisy shared machine.
    """
    interpreters = [_micro_interpreter(m, a) for m, a in zip(models, arenas)]
    for interpreter in interpreters:
        interpreter.set_input(sample[:1], 0)
        interpreter.invoke()
    times = [[] for _ in interpreters]
    for _ in range(repeats):
        for slot, interpreter in enumerate(interpreters):
            start = time.process_time()
            for _ in range(inner):
                interpreter.invoke()
            times[slot].append((time.process_time() - start) / inner)
    return [float(np.median(t)) for t in times]


def litert_outputs(model_bytes, inputs):
    """Runs LiteRT with its reference kernels (the ones TFLM's match) on each row of ``inputs``."""
    from ai_edge_litert import interpreter as litert  # pylint: disable=import-outside-toplevel

    interpreter = litert.Interpreter(
        model_content=bytes(model_bytes),
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF,
    )
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for row in inputs:
        interpreter.set_tensor(input_index, row[None])
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_tensor(output_index)).reshape(-1))
    return np.stack(outputs)


def io_details(model_bytes):
    """``(input, output)`` details (shape, dtype, scale, zero point) read with LiteRT."""
    from ai_edge_litert import interpreter as litert  # pylint: disable=import-outside-toplevel

    interpreter = litert.Interpreter(model_content=bytes(model_bytes))
    return interpreter.get_input_details()[0], interpreter.get_output_details()[0]
