"""Export size and speed: Eq. (6) vs int8 file vs packed TFLite Micro file.

For ResNet-20 (CIFAR, 10 classes) and MobileNetV2-CIFAR at 1, 2, 4 and 8 bits
and a DualPrecision pair (1-bit convs, 4-bit depthwise), each model is exported
with ``tflite_export.export`` and measured:

- ``eq6_bytes``: Eq. (6) size; ``int8_file_bytes``; ``packed_file_bytes``;
- ``ratio_to_limit`` = packed file bytes / (Eq. (6) bytes + 8 bytes per output
  channel: one float32 scale and one int32 bias). Goal: <= 1.2 for ResNet-20 at 1 bit;
- TFLM arena bytes of both files;
- ``invoke_ratio`` = TFLM invoke time of the packed file / of the int8 file, both
  timed interleaved in one process (process CPU time, median). Goal: <= 1.3.

The models are untrained, but their BN parameters are randomized as training
would leave them (otherwise every folded bias is 0 and the converter stores one
shared zero buffer, understating the file) and activation ranges are calibrated
on random inputs. Sizes do not depend on the weight values beyond that.

    python benchmarks/export_size.py                 # all models, ~15 minutes
    python benchmarks/export_size.py --models resnet20 --bits 1

Writes ``benchmarks/results/export_size.json`` (one record per model and
precision, kept after each one: a rerun skips finished records) and prints a
Markdown table for the README.
"""

import argparse
import json
import os
import platform
import tempfile

import numpy as np

import tflite_export
import tfq_pareto
from tflite_export import runtime
from tfq_pareto import models
from tfq_pareto.training import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "export_size.json")

MODELS = {
    "resnet20": lambda: models.resnet_cifar(depth=20, num_classes=10),
    "mobilenet_v2_cifar": lambda: models.mobilenet_v2_cifar(num_classes=10),
}
#: label -> (conv_bits, dw_bits)
PRECISIONS = {"1": (1, 1), "2": (2, 2), "4": (4, 4), "8": (8, 8), "dual_1_4": (1, 4)}


def _trained_like(model, seed=0):
    rng = np.random.RandomState(seed)
    for weight in model.weights:
        if "gamma" in weight.name or "moving_variance" in weight.name:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape))
        elif "beta" in weight.name or "moving_mean" in weight.name:
            weight.assign(rng.normal(0.0, 0.2, weight.shape))
    return model


def measure(model_name, label, samples, repeats):
    conv_bits, dw_bits = PRECISIONS[label]
    qat = _trained_like(tfq_pareto.apply(MODELS[model_name](), conv_bits=conv_bits,
                                         dw_bits=dw_bits))
    x = np.random.RandomState(1).rand(samples, *qat.input_shape[1:]).astype("float32")
    with tempfile.TemporaryDirectory() as tmp:
        result = tflite_export.export(qat, x, tmp, name="m", activation_ranges="calibration")
        int8 = open(result.files["int8"], "rb").read()
        packed = open(result.files["packed"], "rb").read()
    totals = result.totals
    inputs = np.random.RandomState(2).randint(-128, 128, (1,) + tuple(qat.input_shape[1:])).astype(np.int8)
    int8_s, packed_s = runtime.interleaved_invoke_seconds(
        [int8, packed], inputs, [totals["tflm_arena_bytes_int8"], totals["tflm_arena_bytes_packed"]],
        repeats=repeats, inner=2)
    return {
        "model": model_name, "precision": label, "conv_bits": conv_bits, "dw_bits": dw_bits,
        "eq6_bytes": totals["eq6_bytes"], "output_channels": totals["output_channels"],
        "int8_file_bytes": totals["int8_file_bytes"], "packed_file_bytes": totals["packed_file_bytes"],
        "packed_file_bytes_before_slimming": totals["packed_file_bytes_before_slimming"],
        "limit_bytes": totals["limit_bytes"], "ratio_to_limit": totals["ratio_to_limit"],
        "packed_weight_bytes": totals["packed_weight_bytes"],
        "other_bytes_itemized": totals["other_bytes_itemized"],
        "tflm_arena_bytes_int8": totals["tflm_arena_bytes_int8"],
        "tflm_arena_bytes_packed": totals["tflm_arena_bytes_packed"],
        "tflm_invoke_seconds_int8": int8_s, "tflm_invoke_seconds_packed": packed_s,
        "invoke_ratio": packed_s / int8_s,
        "slimming": result.manifest["slimming"],
    }


def markdown(records):
    lines = ["| model | bits (conv/dw) | Eq. (6) B | int8 file B | packed file B | ratio_to_limit "
             "| arena int8 / packed B | invoke_ratio |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(
            f"| {r['model']} | {r['conv_bits']}/{r['dw_bits']} | {r['eq6_bytes']:,.0f} | "
            f"{r['int8_file_bytes']:,} | {r['packed_file_bytes']:,} | {r['ratio_to_limit']:.3f} | "
            f"{r['tflm_arena_bytes_int8']:,} / {r['tflm_arena_bytes_packed']:,} | "
            f"{r['invoke_ratio']:.2f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--bits", nargs="+", choices=list(PRECISIONS), default=list(PRECISIONS))
    parser.add_argument("--samples", type=int, default=16, help="calibration/verification inputs")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved invoke rounds")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()

    results = {"records": []}
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            results = json.load(f)
    results["machine"] = {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                          "platform": platform.platform()}
    results["versions"] = _versions()
    done = {(r["model"], r["precision"]) for r in results["records"]}
    for model_name in args.models:
        for label in args.bits:
            if model_name == "resnet20" and label.startswith("dual"):
                continue  # no depthwise convs: DualPrecision is the 1-bit row
            if (model_name, label) in done:
                continue
            record = measure(model_name, label, args.samples, args.repeats)
            results["records"].append(record)
            write_json(args.out, results)
            print(f"{model_name} {label}: packed {record['packed_file_bytes']:,} B, ratio_to_limit "
                  f"{record['ratio_to_limit']:.3f}, invoke_ratio {record['invoke_ratio']:.2f}",
                  flush=True)
    order = {(m, p): i for i, (m, p) in enumerate((m, p) for m in MODELS for p in PRECISIONS)}
    results["records"].sort(key=lambda r: order[(r["model"], r["precision"])])
    write_json(args.out, results)
    print(markdown(results["records"]))


def _versions():
    import ai_edge_litert  # pylint: disable=import-outside-toplevel
    import tflite_micro  # pylint: disable=import-outside-toplevel
    from tfq_pareto.backend import tf  # pylint: disable=import-outside-toplevel

    return {"tensorflow": tf.__version__, "tflite_micro": tflite_micro.__version__,
            "ai_edge_litert": getattr(ai_edge_litert, "__version__", "unknown")}


if __name__ == "__main__":
    main()
