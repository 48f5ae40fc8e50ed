"""Fit a microcontroller (issue 15, part 4): fit-budget's pick vs the widest 8-bit model that fits.

On the real CIFAR-10 subset in ``../shared/data``, a short schedule, two budgets
(``small``: 256 KiB flash / 64 KiB RAM; ``large``: 1 MiB / 320 KiB) and the
families ResNet-20 and MobileNetV2-CIFAR: :func:`tflite_export.fit_budget`
over the precision set (every pair for MobileNetV2-CIFAR) picks the most
accurate model whose exported file fits; the 8-bit (8/8) candidate of the same
run is the widest 8-bit model that fits the same budget. Each seed is a
separate run (probes are shared). For both models the summary gives accuracy
per seed, mean and standard deviation, flash, RAM (TFLM arena + CMSIS-NN
scratch), MACs, and whether the pick's certificate holds when its packed file
is reloaded into the TFLM interpreter at exactly the certified arena size (and
fails 16 bytes below it).

    python benchmarks/mcu_fit.py --seeds 2          # hours on 2 cores

Writes ``benchmarks/results/mcu_fit/summary.json`` after every run (resumable:
each run's folder keeps its probes, trials and export; a run of some models or
budgets keeps the other rows of the summary, if they were measured on the same
schedule).
"""

import argparse
import dataclasses
import json
import os
import shutil

import numpy as np

import tflite_export
from figure1_cifar import SHARED, check_only_seed, load_cifar  # benchmarks/ is the script's folder
from tflite_export import runtime
from tfq_pareto import experiment, search, training

HERE = os.path.dirname(os.path.abspath(__file__))

#: name -> (flash KiB, RAM KiB)
BUDGETS = {"small": (256, 64), "large": (1024, 320)}
MODELS = ("resnet_cifar", "mobilenet_v2_cifar")


def _parse_budgets(text):
    budgets = {}
    for item in text.split(","):
        name, _, sizes = item.partition("=")
        flash, _, ram = sizes.partition(":")
        if not (name and flash.isdigit() and ram.isdigit()):
            raise SystemExit(f"--budgets items must be NAME=FLASH_KIB:RAM_KIB; received {item!r}")
        budgets[name] = (int(flash), int(ram))
    return budgets


def _certificate_holds(pick, certificate):
    """Reloads the pick's packed file into TFLM at the certified arena (and 16 B below)."""
    packed = open(pick["files"]["packed"], "rb").read()
    details = runtime.io_details(open(pick["files"]["int8"], "rb").read())[0]
    inputs = np.zeros((1, *details["shape"][1:]), np.int8)
    runtime.micro_outputs(packed, inputs, certificate["ram_bytes"])
    try:
        runtime.micro_outputs(packed, inputs, certificate["ram_bytes"] - runtime.ARENA_STEP)
    except runtime.MicroError:
        return len(packed) == certificate["flash_bytes"]
    return False


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--budgets", default=",".join(f"{k}={f}:{r}" for k, (f, r) in
                                                      BUDGETS.items()))
    parser.add_argument("--bits", default="1,2,4,8")
    parser.add_argument("--mobilenet-bits", default="1,4,8",
                        help="precision set of MobileNetV2-CIFAR (every pair is a candidate)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--only-seed", type=int, default=None,
                        help="run this seed (of 0..seeds-1) only, and leave the summary alone: "
                             "one process per seed can then run in parallel; a last run "
                             "without it resumes every seed (no training) and writes the summary")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=10_000)
    parser.add_argument("--test-images", type=int, default=None)
    parser.add_argument("--min-width", type=float, default=0.25,
                        help="narrowest width searched (kept per row: a row measured with "
                             "another one is replaced, the others are kept)")
    parser.add_argument("--max-width", type=float, default=4.0)
    parser.add_argument("--data-dir", default=SHARED)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "mcu_fit"))
    args = parser.parse_args()
    models = args.models.split(",")
    for model in models:
        if model not in MODELS:
            parser.error(f"--models must be from {MODELS}; received {model!r}")
    if args.seeds < 1 or args.epochs < 1:
        parser.error("--seeds and --epochs must be >= 1")
    check_only_seed(parser, args.only_seed, args.seeds)
    budgets = _parse_budgets(args.budgets)
    datasets = load_cifar(args.train_images, args.data_dir, args.test_images)
    recipe = training.Recipe(warmup_epochs=1).with_epochs(args.epochs)
    os.makedirs(args.out, exist_ok=True)
    summary_path = os.path.join(args.out, "summary.json")
    summary = {"schedule": {"epochs": args.epochs, "train_images": datasets.info.num_train,
                            "test_images": datasets.info.num_test, "act_bits": recipe.act_bits,
                            "max_width": args.max_width},
               "budgets_kib": budgets, "rows": []}
    if os.path.exists(summary_path):  # a run of some rows keeps the others' rows
        with open(summary_path, encoding="utf-8") as f:
            previous = json.load(f)
        differ = {k: (previous["schedule"][k], v) for k, v in summary["schedule"].items()
                  if k in previous.get("schedule", {}) and previous["schedule"][k] != v}
        if differ:
            parser.error(f"{summary_path} was measured on another schedule ({differ}: old, "
                         f"new); use another --out or the same settings")
        summary["rows"] = previous["rows"]
        summary["budgets_kib"] = {**previous.get("budgets_kib", {}), **budgets}
    for model in models:
        bits = [int(b) for b in (args.mobilenet_bits if model == "mobilenet_v2_cifar"
                                 else args.bits).split(",")]
        config = experiment.RunConfig(model=model, depth=20, conv_bits=8, dataset="cifar10_npz")
        for budget_name, (flash_kib, ram_kib) in budgets.items():
            budget = tflite_export.Budget(flash_kib * 1024, ram_kib * 1024, name=budget_name)
            runs = []
            seeds = range(args.seeds) if args.only_seed is None else [args.only_seed]
            for seed in seeds:
                out = os.path.join(args.out, f"{model}_{budget_name}", f"seed{seed}")
                first = os.path.join(args.out, f"{model}_{budget_name}", "seed0", "probes.json")
                if seed and os.path.exists(first) and not os.path.exists(
                        os.path.join(out, "probes.json")):
                    os.makedirs(out, exist_ok=True)
                    shutil.copy(first, out)  # the widths do not depend on the seed
                try:  # the seed goes in the config: fit_budget's trials seed their runs
                    result = tflite_export.fit_budget(
                        dataclasses.replace(config, seed=seed), budget, bits=bits, recipe=recipe,
                        out_dir=out, datasets=datasets, verbose=2, min_width=args.min_width,
                        max_width=args.max_width)
                except tflite_export.BudgetError as error:
                    runs.append({"seed": seed, "error": str(error)})
                    continue
                pick = result["pick"]
                eight = next((c for c in result["candidates"] if c["conv_bits"] == 8
                              and c["dw_bits"] in (None, 8)), None)
                runs.append({
                    "seed": seed,
                    "pick": {k: pick[k] for k in ("label", "width_multiplier", "accuracy",
                                                  "flash_bytes", "ram_bytes", "macs")},
                    "eight_bit": None if eight is None else {
                        k: eight[k] for k in ("label", "width_multiplier", "accuracy",
                                              "flash_bytes", "ram_bytes", "macs", "status")},
                    "certificate_holds_on_tflm": _certificate_holds(pick, result["certificate"]),
                })
            if args.only_seed is not None:  # the other seeds' processes may still run
                print(json.dumps({"model": model, "budget": budget_name, **runs[-1]}), flush=True)
                continue
            pick_mean, pick_std = _stats([r["pick"]["accuracy"] for r in runs if "pick" in r])
            eight_mean, eight_std = _stats([r["eight_bit"]["accuracy"] for r in runs
                                            if r.get("eight_bit")])
            row = {"model": model, "budget": budget_name, "flash_kib": flash_kib,
                   "ram_kib": ram_kib, "bits": bits, "min_width": args.min_width,
                   "runs": runs, "pick_mean": pick_mean,
                   "pick_std": pick_std, "eight_bit_mean": eight_mean,
                   "eight_bit_std": eight_std}
            if pick_mean is not None and eight_mean is not None:
                # The project's spread of a comparison: the pooled std of the two means' seeds.
                spread = search.pooled_std(pick_std, eight_std)
                row["margin_points"] = 100 * (pick_mean - eight_mean)
                row["spread_points"] = None if spread is None else 100 * spread
                row["margin_exceeds_spread"] = (None if spread is None
                                                else pick_mean - eight_mean > spread)
            summary["rows"] = [r for r in summary["rows"]
                               if (r["model"], r["budget"]) != (model, budget_name)] + [row]
            training.write_json(summary_path, summary)
            print(json.dumps({k: row[k] for k in ("model", "budget", "pick_mean",
                                                  "eight_bit_mean")}), flush=True)


if __name__ == "__main__":
    main()
