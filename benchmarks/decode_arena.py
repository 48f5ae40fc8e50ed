"""RAM-aware packing (issue 15, part 1): flash and TFLM arena before and after splitting filters.

A packed filter is decoded into the TFLM arena before its op runs, so without a
cap the arena holds the largest decoded filter. For each model below, the same
QAT model is exported twice with :func:`tflite_export.export`:

- ``before``: ``max_decode_bytes=None`` (no split: the exporter before this change);
- ``after``: ``max_decode_bytes="auto"`` (the default: filters split by output
  channels, the decode cap found by a descent on measured arenas that stops once
  the packed arena is within ``ARENA_ALLOWANCE_BYTES`` = 64 KiB of the int8
  file's arena).

Both packed files are verified bit-exact against the int8 file on the TFLM
interpreter by the export itself. Goal (issue 15): the demo's 1-bit model at
arena <= int8 arena + 64 KiB with a packed file <= 1.10 x 295,056 B.

Models: the demo's 1-bit ResNet-20 (digits 16x16x1, widened to the Eq. (6) size of
the 8-bit width-1 model, exactly as ``tfq-pareto demo`` builds it); ResNet-20
(CIFAR 32x32x3, 10 classes, width 1) at 1, 2, 4 bits; MobileNetV2-CIFAR at
1/4 bits (conv/depthwise). Untrained, with BN statistics randomized as in
``export_size.py`` (sizes and arenas do not depend on the weight values).

    python benchmarks/decode_arena.py            # ~15 minutes on 2 cores

Writes ``benchmarks/results/decode_arena.json`` after every model (a rerun
skips finished ones) and prints the table for BENCHMARKS.md.
"""

import argparse
import json
import os
import tempfile

import numpy as np

import tflite_export
import tfq_pareto
from export_size import _trained_like, _versions  # benchmarks/ is the script's folder
from tfq_pareto import data as data_lib
from tfq_pareto import experiment, models, search
from tfq_pareto.training import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "decode_arena.json")
#: The demo's model and data (``tfq_pareto_cli.demo``: DEMO_MODEL, DEMO_DEPTH,
#: DEMO_IMAGE_SIZE; benchmarks do not import the command line's package).
DEMO_MODEL, DEMO_DEPTH, DEMO_IMAGE_SIZE = "resnet_cifar", 20, 16
#: Issue 15's figure for the demo's 1-bit packed file before this change, in bytes.
DEMO_PACKED_BEFORE_ISSUE = 295_056


def _demo_model():
    """The demo's DualPrecision model: 1-bit ResNet-20 widened to the 8-bit width-1 size."""
    _, _, info = data_lib.load("digits", image_size=DEMO_IMAGE_SIZE)
    base = experiment.RunConfig(model=DEMO_MODEL, depth=DEMO_DEPTH,
                                width_multiplier=1.0, conv_bits=8, dataset="digits")
    target = search.budget_of(base, info, width_multiplier=1.0, conv_bits=8)

    def builder(width):
        return experiment.build_float_model(
            experiment.RunConfig(model=DEMO_MODEL, depth=DEMO_DEPTH,
                                 width_multiplier=width, conv_bits=1, dataset="digits"), info)

    width = tfq_pareto.width_for_size(builder, target, conv_bits=1, tolerance=0.02)
    return builder(width), width, 1, None


CASES = {
    "demo_1bit": _demo_model,
    "resnet20_1bit": lambda: (models.resnet_cifar(depth=20, num_classes=10), 1.0, 1, None),
    "resnet20_2bit": lambda: (models.resnet_cifar(depth=20, num_classes=10), 1.0, 2, None),
    "resnet20_4bit": lambda: (models.resnet_cifar(depth=20, num_classes=10), 1.0, 4, None),
    "mobilenet_v2_cifar_1_4bit": lambda: (models.mobilenet_v2_cifar(num_classes=10), 1.0, 1, 4),
}


def _row(result):
    totals, packing = result.totals, result.manifest["packing"]
    return {"int8_file_bytes": totals["int8_file_bytes"],
            "packed_file_bytes": totals["packed_file_bytes"],
            "tflm_arena_bytes_int8": totals["tflm_arena_bytes_int8"],
            "tflm_arena_bytes_packed": totals["tflm_arena_bytes_packed"],
            "largest_decode_bytes": packing["largest_decode_bytes"],
            "split_layers": packing["split_layers"], "decode_cap_used": packing["decode_cap_used"],
            "verified_bit_exact": True}  # export raises when the packed file differs


def measure(case, samples):
    model, width, conv_bits, dw_bits = CASES[case]()
    qat = _trained_like(tfq_pareto.apply(model, conv_bits=conv_bits, dw_bits=dw_bits))
    x = np.random.RandomState(1).rand(samples, *qat.input_shape[1:]).astype("float32")
    rows = {}
    for label, cap in (("before", None), ("after", "auto")):
        with tempfile.TemporaryDirectory() as tmp:
            result = tflite_export.export(qat, x, tmp, name="m", activation_ranges="calibration",
                                          max_decode_bytes=cap)
        rows[label] = _row(result)
    after, before = rows["after"], rows["before"]
    return {
        "case": case, "width_multiplier": round(width, 4), "conv_bits": conv_bits,
        "dw_bits": dw_bits, "before": before, "after": after,
        "arena_over_int8_after": after["tflm_arena_bytes_packed"] - after["tflm_arena_bytes_int8"],
        "packed_ratio_after_to_before": after["packed_file_bytes"] / before["packed_file_bytes"],
        "arena_within_int8_plus_64_kib": after["tflm_arena_bytes_packed"]
        <= after["tflm_arena_bytes_int8"] + 64 * 1024,
    }


def markdown(records):
    lines = ["| model | width | packed B before -> after | arena B int8 | arena B packed before "
             "-> after | largest DECODE B before -> after | split layers |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        b, a = r["before"], r["after"]
        lines.append(
            f"| {r['case']} | {r['width_multiplier']:.3f} | {b['packed_file_bytes']:,} -> "
            f"{a['packed_file_bytes']:,} ({r['packed_ratio_after_to_before']:.3f}x) | "
            f"{a['tflm_arena_bytes_int8']:,} | {b['tflm_arena_bytes_packed']:,} -> "
            f"{a['tflm_arena_bytes_packed']:,} | {b['largest_decode_bytes']:,} -> "
            f"{a['largest_decode_bytes']:,} | {len(a['split_layers'])} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--samples", type=int, default=16, help="calibration/verification inputs")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    if args.samples < 1:
        parser.error(f"--samples must be >= 1; received {args.samples}")
    results = {"versions": _versions(), "records": [],
               "demo_packed_bytes_in_issue": DEMO_PACKED_BEFORE_ISSUE}
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            results = json.load(f)
    for case in args.cases:
        if any(r["case"] == case for r in results["records"]):
            continue
        record = measure(case, args.samples)
        results["records"].append(record)
        results["records"].sort(key=lambda r: list(CASES).index(r["case"]))
        write_json(args.out, results)
        print(f"{case}: arena {record['before']['tflm_arena_bytes_packed']:,} -> "
              f"{record['after']['tflm_arena_bytes_packed']:,} B (int8 "
              f"{record['after']['tflm_arena_bytes_int8']:,}), packed "
              f"{record['before']['packed_file_bytes']:,} -> "
              f"{record['after']['packed_file_bytes']:,} B", flush=True)
    print(markdown(results["records"]))


if __name__ == "__main__":
    main()
