"""The packed model as C++ source for firmware: ``<name>_model_data.cc`` / ``.h``."""

import os
import re

#: Names usable as C identifiers and file names.
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Ops whose MicroMutableOpResolver method is not the CamelCase of the op name.
_RESOLVER_METHODS = {"TFLM_DECODE": "AddDecode"}


def resolver_method(op):
    """``"CONV_2D"`` -> ``"AddConv2D"``; ``"TFLM_DECODE"`` -> ``"AddDecode"``."""
    if op in _RESOLVER_METHODS:
        return _RESOLVER_METHODS[op]
    return "Add" + "".join(p if p[:1].isdigit() else p.capitalize() for p in op.split("_"))


def check_name(name):
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"name must be a C identifier (letters, digits, '_', not starting with a digit), "
            f"since it names files and C arrays; received {name!r}"
        )
    return name


def write_c_arrays(model_bytes, out_dir, name, ops, arena_bytes):
    """Writes ``<name>_model_data.h`` and ``.cc``; returns their paths.

    The arrays are ``alignas(16) const unsigned char g_<name>_model_data[]`` and
    ``const unsigned int g_<name>_model_data_len``. The header's comment lists the
    ops a ``tflite::MicroMutableOpResolver`` must register and the arena size.
    """
    check_name(name)
    symbol = f"g_{name}_model_data"
    guard = f"{name.upper()}_MODEL_DATA_H_"
    methods = [resolver_method(op) for op in ops]
    register = "\n".join(f"//     resolver.{m}();" for m in methods)
    header = f"""// Packed TFLite Micro model '{name}' written by tflite_export (tfq_pareto).
// b-bit weights are stored as b-bit LUT indices decoded at run time by DECODE.
//
// Register these {len(ops)} ops ({', '.join(ops)}):
//     tflite::MicroMutableOpResolver<{len(ops)}> resolver;
{register}
// Tensor arena: at least {arena_bytes} bytes (measured on the TFLM interpreter):
//     alignas(16) static uint8_t tensor_arena[{name}_kArenaSize];
#ifndef {guard}
#define {guard}

constexpr unsigned int {name}_kArenaSize = {arena_bytes};
extern const unsigned char {symbol}[];
extern const unsigned int {symbol}_len;

#endif  // {guard}
"""
    rows = []
    for start in range(0, len(model_bytes), 12):
        chunk = model_bytes[start:start + 12]
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    source = (
        f'#include "{name}_model_data.h"\n\n'
        f"alignas(16) const unsigned char {symbol}[] = {{\n"
        + "\n".join(rows)
        + f"\n}};\nconst unsigned int {symbol}_len = {len(model_bytes)};\n"
        + f'static_assert(sizeof({symbol}) == {len(model_bytes)}, "model size");\n'
    )
    header_path = os.path.join(out_dir, f"{name}_model_data.h")
    source_path = os.path.join(out_dir, f"{name}_model_data.cc")
    with open(header_path, "w", encoding="ascii") as f:
        f.write(header)
    with open(source_path, "w", encoding="ascii") as f:
        f.write(source)
    return source_path, header_path


def read_c_array(source_path):
    """The bytes held by the array in a ``_model_data.cc`` file (for checks).

    TensorFlow's ``flatbuffer_utils.xxd_output_to_bytes`` reads it: the file's
    only lines that start with hex bytes are the array's.
    """
    from tensorflow.lite.tools import flatbuffer_utils  # pylint: disable=import-outside-toplevel

    return flatbuffer_utils.xxd_output_to_bytes(os.fspath(source_path))
