"""tf_keras.applications through apply -> one fit step -> export -> TFLite Micro.

For the smallest member of every CNN family in ``tf_keras.applications`` (built
with ``weights=None`` at a small input, ``include_top=False``, average pooling
and a 10-way Dense head), runs DualPrecision ``tfq_pareto.apply(model,
conv_bits=1, dw_bits=4)``, one training step, and ``tflite_export.export``, which
converts, packs, runs both files on TFLM (and the int8 file on LiteRT) and
verifies them. A family passes when all of that works; otherwise the record keeps
the error, which must name the layer (or op) at fault. MobileNetV3 runs twice:
minimalistic (ReLU, no squeeze-and-excitation) and in full (hard-swish).

Every family runs twice: built with tf_keras (Keras 2) and with Keras 3's
``keras.applications``, whose model ``apply`` first rebuilds as tf_keras
(``tfq_pareto.to_tf_keras``). Keras 3 has no ResNetRS and no RegNet; their
Keras 3 records say so.

    python benchmarks/applications.py                      # every family, both Kerases
    python benchmarks/applications.py --apps MobileNet VGG --keras 3 --out /tmp/apps.json
    python benchmarks/applications.py --apps EfficientNet --rerun   # measure it again

Writes ``benchmarks/results/applications.json`` (a record per family and Keras
version, kept as each finishes: a rerun skips finished ones) and prints the
README table. Each record carries the ``export_revision`` it was measured with;
``--rerun`` measures the chosen families again when their record is older than
:data:`EXPORT_REVISION` and replaces each record only when its new one is done,
so an interrupted rerun resumes where it stopped and loses nothing.

The export runs with ``max_output_steps=None``: the models are untrained past one
step, so the Keras-vs-file comparison is reported (``keras_max_output_steps``) but
not held to the default bound, which is for trained models exported with exact
8-bit activation ranges.
"""

import argparse
import importlib
import json
import os
import re
import tempfile
import time

import numpy as np

import tflite_export
import tfq_pareto
from tfq_pareto import keras
from tfq_pareto.training import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "applications.json")

#: Bumped when the export changes what a record measures: 1, halving decode-cap
#: search (records without the field); 2, the decode-cap descent of
#: ``tflite_export.export.pack_within`` (up and down from 32 KiB).
EXPORT_REVISION = 2

#: family -> (smallest member, input side, constructor options, the other members)
FAMILIES = {
    "MobileNet": ("MobileNet", 32, {"alpha": 0.25}, []),
    "MobileNetV2": ("MobileNetV2", 32, {"alpha": 0.35}, []),
    "MobileNetV3": ("MobileNetV3Small", 32, {"alpha": 0.75, "minimalistic": True},
                    ["MobileNetV3Large"]),
    "MobileNetV3-hardswish": ("MobileNetV3Small", 32, {"alpha": 0.75}, ["MobileNetV3Large"]),
    "ResNet": ("ResNet50", 32, {}, ["ResNet101", "ResNet152"]),
    "ResNetV2": ("ResNet50V2", 32, {}, ["ResNet101V2", "ResNet152V2"]),
    "ResNetRS": ("ResNetRS50", 32, {}, ["ResNetRS101", "...", "ResNetRS420"]),
    "VGG": ("VGG16", 32, {}, ["VGG19"]),
    "DenseNet": ("DenseNet121", 32, {}, ["DenseNet169", "DenseNet201"]),
    "InceptionV3": ("InceptionV3", 75, {}, []),
    "InceptionResNetV2": ("InceptionResNetV2", 75, {}, []),
    "Xception": ("Xception", 71, {}, []),
    "NASNet": ("NASNetMobile", 32, {}, ["NASNetLarge"]),
    "EfficientNet": ("EfficientNetB0", 32, {}, ["EfficientNetB1", "...", "EfficientNetB7"]),
    "EfficientNetV2": ("EfficientNetV2B0", 32, {}, ["EfficientNetV2B1", "...", "EfficientNetV2L"]),
    "RegNetX": ("RegNetX002", 32, {}, ["RegNetX004", "...", "RegNetX320"]),
    "RegNetY": ("RegNetY002", 32, {}, ["RegNetY004", "...", "RegNetY320"]),
    "ConvNeXt": ("ConvNeXtTiny", 32, {}, ["ConvNeXtSmall", "...", "ConvNeXtXLarge"]),
}


def _keras(version):
    """The Keras module that builds version ``version``'s models: tf_keras (2) or Keras 3."""
    if version == 2:
        return keras
    return importlib.import_module("keras")


def build(family, version=2, seed=0):
    """The family's smallest member with a 10-way head, built by Keras ``version``.

    The initial weights are seeded (``seed``), so that a rerun measures the same model.
    """
    name, side, options, _ = FAMILIES[family]
    k = _keras(version)
    k.utils.set_random_seed(seed)
    constructor = getattr(k.applications, name)
    base = constructor(include_top=False, weights=None, input_shape=(side, side, 3),
                       pooling="avg", **options)
    outputs = k.layers.Dense(10, name="logits")(base.output)
    return k.Model(base.input, outputs, name=name.lower())


def check(family, version=2):
    """Runs one family; returns its record (``status``: "passes", "apply", "export" or "absent")."""
    name, side, options, others = FAMILIES[family]
    record = {"family": family, "keras": version, "model": name, "input": side,
              "options": options, "other_members": others, "export_revision": EXPORT_REVISION,
              "init_seed": 0}
    start = time.perf_counter()
    if not hasattr(_keras(version).applications, name):
        record.update(status="absent", error=f"Keras {version} has no {name}")
        return record
    model = build(family, version)
    record["params"] = int(model.count_params())
    try:
        qat = tfq_pareto.apply(model, conv_bits=1, dw_bits=4)
    except (ValueError, TypeError) as error:
        record.update(status="apply", error=str(error).splitlines()[0][:400])
        return record
    rng = np.random.default_rng(0)
    x = rng.random((8, side, side, 3)).astype("float32")
    y = rng.integers(0, 10, 8)
    qat.compile(keras.optimizers.SGD(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, batch_size=8, epochs=1, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = tflite_export.export(qat, x[:4], tmp, name="app", max_output_steps=None)
        except tflite_export.ExportError as error:
            record.update(status="export", error=str(error)[:400])
            return record
    totals = result.totals
    record.update(
        status="passes", ops=result.manifest["ops"],
        eq6_bytes=totals["eq6_bytes"], int8_file_bytes=totals["int8_file_bytes"],
        packed_file_bytes=totals["packed_file_bytes"], ratio_to_limit=totals["ratio_to_limit"],
        arena_bytes_packed=totals["tflm_arena_bytes_packed"],
        arena_bytes_int8=totals["tflm_arena_bytes_int8"],
        preprocessing_in_float=[p["class"] for p in result.manifest["input"].get(
            "preprocessing", [])],
        keras_max_output_steps=result.manifest["verification"]["keras_max_output_steps"],
        decode_caps_tried=[c["max_decode_bytes"] for c in result.manifest["packing"]["caps_tried"]],
        decode_cap=result.manifest["packing"]["decode_cap_used"],
        split_layers=len(result.manifest["packing"]["split_layers"]),
        litert_vs_tflm=result.manifest["verification"].get("litert_vs_tflm"),
        seconds=time.perf_counter() - start)
    return record


def _short(error):
    """The refusal in a table cell: the first layer named and the classes at fault."""
    named = re.findall(r"'([^']+) \(([A-Za-z0-9_]+)\)'", error)
    if named:
        classes = ", ".join(sorted({c for _, c in named}))
        return f"unsupported layers named, e.g. '{named[0][0]} ({named[0][1]})'; classes: {classes}"
    missing = re.search(r"no kernel for op\(s\) \[([^\]]+)\], produced by layer\(s\) \['([^']+)'",
                        error)
    if missing:
        ops = missing.group(1).replace("'", "")
        return f"TFLM has no kernel for {ops}; layers named, e.g. '{missing.group(2)}'"
    nested = re.search(r"nested models \['([^']+)'", error)
    if nested:
        return f"nested models named ({nested.group(1)}, ...): rebuild flat"
    return error


#: Ops of every passing model, left out of the table's note.
COMMON_OPS = ("CONV_2D", "FULLY_CONNECTED", "TFLM_DECODE")


def markdown(records):
    lines = ["| family (tested member, input) | Keras | result | packed / int8 file | TFLM arena "
             "packed / int8 | note |", "|---|---|---|---|---|---|"]
    for r in records:
        version = r.get("keras", 2)  # records from before Keras 3 rows are tf_keras ones
        member = f"{r['model']} {r['input']}x{r['input']}"
        if r["options"]:
            member += " " + ", ".join(f"{k}={v}" for k, v in r["options"].items())
        if r["status"] == "passes":
            note = "ops: " + ", ".join(o for o in r["ops"] if o not in COMMON_OPS)
            if r.get("preprocessing_in_float"):
                note += "; float preprocessing folded into the input: " + ", ".join(
                    r["preprocessing_in_float"])
            if r.get("litert_vs_tflm"):
                first = r["litert_vs_tflm"]["first_op"]
                note += (f"; LiteRT and TFLM part by one step at {first['op']} "
                         f"'{first['output']}' (rounding), {r['litert_vs_tflm']['max_steps']} "
                         "at the output")
            if r.get("export_revision", 1) < EXPORT_REVISION:
                note += "; measured with the export before the decode-cap descent"
            arenas = (f"{r['arena_bytes_packed']:,} / {r['arena_bytes_int8']:,} B"
                      if "arena_bytes_packed" in r else "not recorded")  # records before arenas
            lines.append(f"| {r['family']} ({member}) | {version} | passes | "
                         f"{r['packed_file_bytes']:,} / "
                         f"{r['int8_file_bytes']:,} B | {arenas} | {note} |")
        elif r["status"] == "absent":
            lines.append(f"| {r['family']} ({member}) | {version} | not in Keras {version} | - "
                         f"| - | - |")
        else:
            error = _short(r["error"]).replace("|", "/")
            lines.append(f"| {r['family']} ({member}) | {version} | refused by `{r['status']}` "
                         f"| - | - | {error} |")
    return "\n".join(lines)


def _key(record):
    return record["family"], record.get("keras", 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", nargs="+", choices=sorted(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--keras", nargs="+", type=int, choices=(2, 3), default=[2, 3],
                        help="Keras versions to build the models with (default: both)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--rerun", action="store_true",
                        help="run the families of --apps again when their record is older than "
                             f"export revision {EXPORT_REVISION} (each record is replaced when its "
                             "new one is done)")
    args = parser.parse_args()
    results = {"records": []}
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            results = json.load(f)
    done = {_key(r) for r in results["records"]
            if not args.rerun or r.get("export_revision", 1) >= EXPORT_REVISION}
    for version in args.keras:
        for family in args.apps:
            if (family, version) in done:
                continue
            record = check(family, version)
            results["records"] = [r for r in results["records"] if _key(r) != _key(record)]
            results["records"].append(record)
            write_json(args.out, results)
            print(f"{family} (Keras {version}): {record['status']} "
                  f"{record.get('error', '')[:200]}", flush=True)
    order = {f: i for i, f in enumerate(FAMILIES)}
    results["records"].sort(key=lambda r: (order[r["family"]], r.get("keras", 2)))
    write_json(args.out, results)
    print(markdown(results["records"]))


if __name__ == "__main__":
    main()
