"""The main job: 8-bit vs DualPrecision at equal Eq. (6) size, on the embedded digits.

Trains (a) an 8-bit ResNet-20 at width 0.25 and (b) a 1-bit ResNet-20 (first and
last layer 8-bit) widened to the same Eq. (6) size, each with 2 seeds, on the 8x8
digits of scikit-learn upsampled to 16x16 (no download), and compares their mean
accuracies with the seed spread (:func:`compare`). The budget is small on purpose:
at width 1 both models reach about 99% on digits (capacity does not bind, and the
earlier one-seed demo put either one ahead from run to run); at width 0.25 the
8-bit model has 4/8/16 channels and the 1-bit one, at width 0.70, 11/22/45
(``benchmarks/demo_repeat.py``; BENCHMARKS.md). Writes into ``out_dir``:
``results.json`` (both records), ``accuracy_vs_size.png`` and one run folder
per model (history, TensorBoard logs, QAT model). It is a small
:func:`tfq_pareto.search.sweep` (precisions {8, 1} at one budget), so a rerun
resumes and skips finished models. :func:`export_dual_precision` then exports
the DualPrecision model to int8 TFLite and packed TFLite Micro files.

The demo is a program, not library code: it composes ``tfq_pareto`` (training)
with ``tflite_export`` (export), so it lives next to the command line.
"""

import dataclasses
import os

import tflite_export
from tfq_pareto import data as data_lib
from tfq_pareto import checks, experiment, saving, search, training
from tfq_pareto.records import jsonable

#: The family the demo trains, and its depth.
DEMO_MODEL = "resnet_cifar"
DEMO_DEPTH = 20
#: Side of the upsampled digits images the demo trains on.
DEMO_IMAGE_SIZE = 16
#: The size budget: the Eq. (6) size of the 8-bit model at this width multiplier.
DEMO_BUDGET_WIDTH = 0.25
#: Trainings per model (seeds 0, 1, ...): the comparison is of means, against their spread.
DEMO_SEEDS = 2

#: Name of the exported DualPrecision model's files, and their folder under ``out_dir``.
EXPORT_NAME = "demo_dual_precision"
EXPORT_DIR = "export"

RESULTS_FILE = "results.json"
PLOT_FILE = "accuracy_vs_size.png"


def _log(log, message):
    if log is not None:
        log(message)


def plot_accuracy_vs_size(records, labels, path):
    """Accuracy against Eq. (6) size (KiB), one labelled point per record."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for record, label in zip(records, labels):
        ax.scatter(record.size_kib, 100 * record.accuracy, s=60, label=label)
        ax.annotate(f"w={record.width_multiplier:.2f}", (record.size_kib, 100 * record.accuracy),
                    textcoords="offset points", xytext=(6, -10), fontsize=8)
    ax.set_xlim(0, 1.25 * max(r.size_kib for r in records))
    ax.set_xlabel("model size, Eq. (6) [KiB]")
    ax.set_ylabel("test accuracy [%]")
    ax.set_title("digits: 8-bit vs 1-bit at equal size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def compare(low, high):
    """The demo's verdict: does ``low`` (1-bit) beat ``high`` (8-bit) beyond the seed spread?

    Both are records of the same Eq. (6) size trained with the same seeds. The
    margin is the difference of the mean accuracies; the spread the pooled
    sample standard deviation ``sqrt((s_low^2 + s_high^2) / 2)``.

    Returns:
      ``{"margin_points", "pooled_std_points", "beyond_spread", "verdict"}``;
      ``beyond_spread`` is None with one seed (no spread is known).
    """
    margin = 100 * (low.accuracy - high.accuracy)
    if low.accuracy_std is None or high.accuracy_std is None:
        return {"margin_points": margin, "pooled_std_points": None, "beyond_spread": None,
                "verdict": f"{low.label} minus {high.label}: {margin:+.2f} points from one seed "
                           "each; with one seed the spread is unknown, so this does not show "
                           "that either is better (run with seeds >= 2)"}
    pooled = 100 * search.pooled_std(low.accuracy_std, high.accuracy_std)
    beyond = abs(margin) > pooled
    if beyond:
        winner, loser = (low, high) if margin > 0 else (high, low)
        verdict = (f"{winner.label} beats {loser.label} by {abs(margin):.2f} points, more than "
                   f"the seed spread ({pooled:.2f} points, pooled standard deviation)")
    else:
        verdict = (f"{low.label} minus {high.label}: {margin:+.2f} points, within the seed "
                   f"spread ({pooled:.2f} points): on this data and schedule the run does not "
                   "show that either precision is better")
    return {"margin_points": margin, "pooled_std_points": pooled, "beyond_spread": beyond,
            "verdict": verdict}


def run_demo(out_dir="runs/demo", *, epochs=12, act_bits=8, tiny=False, verbose=2, log=None,
             seeds=DEMO_SEEDS, budget_width_multiplier=DEMO_BUDGET_WIDTH, first_seed=0):
    """Runs the demo; returns ``{"records": [...], "comparison": {...}, "files": {...}}``.

    Args:
      out_dir: output folder (created).
      epochs: training epochs per model (warm-up 2 epochs, then cosine decay).
      act_bits: activation bits of both models (2..8).
      tiny: 1 epoch on a 10% subset: a smoke test of the whole pipeline.
      verbose: Keras progress (0 silent, 1 bar, 2 a line per epoch).
      log: callable receiving progress messages (e.g. ``print``), or None.
      seeds: trainings per model (seeds 0..seeds-1); the verdict compares the
        mean accuracies with their spread (:func:`compare`).
      budget_width_multiplier: the budget is the 8-bit model's size at this width.
      first_seed: the seeds are ``first_seed .. first_seed + seeds - 1`` (a seeded
        run repeats exactly; other seeds give an independent repetition).
    """
    checks.check_int("epochs", epochs)
    checks.check_int("seeds", seeds)
    checks.check_int("first_seed", first_seed, minimum=0)
    checks.check_positive("budget_width_multiplier", budget_width_multiplier)
    os.makedirs(out_dir, exist_ok=True)
    train_raw, test_raw, info = data_lib.load("digits", image_size=DEMO_IMAGE_SIZE)
    if tiny:
        epochs = 1
        train_raw = train_raw.take(info.num_train // 10)
        info = dataclasses.replace(info, num_train=info.num_train // 10)
    datasets = data_lib.Datasets(train_raw, test_raw, info)
    recipe = training.Recipe(warmup_epochs=2, batch_size=128).with_epochs(epochs)

    base = experiment.RunConfig(model=DEMO_MODEL, depth=DEMO_DEPTH,
                                width_multiplier=budget_width_multiplier,
                                conv_bits=8, act_bits=act_bits, dataset="digits",
                                seed=first_seed)
    target = search.budget_of(base, info, width_multiplier=budget_width_multiplier, conv_bits=8)
    _log(log, f"size budget: the 8-bit ResNet-20 at width {budget_width_multiplier:g} = "
              f"{target:,} bits ({target / 8192:.2f} KiB); training 8-bit and 1-bit models of "
              f"that size, {recipe.epochs} epochs each, {seeds} seed(s) each")
    # A small sweep: precisions {8, 1} at one budget, each widened to it.
    result = search.sweep(base, bits=[8, 1], budgets_bits=[target], recipe=recipe,
                          out_dir=os.path.join(out_dir, "sweep"), datasets=datasets,
                          verbose=verbose, tolerance=0.02, seeds=seeds)
    by_bits = {r.conv_bits: r for r in result["records"]}
    failed = [r for r in result["records"] if not r.done]
    if failed:
        raise RuntimeError(f"demo trials failed: {[(r.conv_bits, r.message) for r in failed]}")
    records = [by_bits[8], by_bits[1]]
    labels = [f"8-bit, width {budget_width_multiplier:g}", "1-bit DualPrecision, equal size"]
    comparison = compare(by_bits[1], by_bits[8])
    training.write_json(os.path.join(out_dir, RESULTS_FILE),
                        {"target_bits": target, "tiny": tiny, "seeds": seeds,
                         "first_seed": first_seed,
                         "budget_width_multiplier": budget_width_multiplier,
                         "epochs": recipe.epochs, "image_size": DEMO_IMAGE_SIZE,
                         "records": [{**r.to_dict(), "label": label}
                                     for r, label in zip(records, labels)],
                         "comparison": comparison,
                         "dominance": result["dominance"], "front": jsonable(result["front"])})
    plot_path = os.path.join(out_dir, PLOT_FILE)
    plot_accuracy_vs_size(records, labels, plot_path)
    return {"records": records, "labels": labels, "target_bits": target,
            "comparison": comparison,
            "files": {"results": os.path.join(out_dir, RESULTS_FILE), "plot": plot_path}}


def format_table(records, labels=None):
    """The demo's table: precision, width, size in bits and KiB, mean accuracy +- its
    standard deviation over seeds, and each seed's accuracy."""
    labels = labels or [r.label for r in records]
    header = (f"{'model':<34}{'width':>7}{'size (bits)':>13}{'size (KiB)':>12}"
              f"{'accuracy':>18}  per seed")
    lines = [header, "-" * len(header)]
    for r, label in zip(records, labels):
        spread = "" if r.accuracy_std is None else f" +- {100 * r.accuracy_std:.2f}"
        seeds = ", ".join(f"{100 * a:.2f}" for a in (r.accuracies or [r.accuracy]))
        lines.append(f"{label:<34}{r.width_multiplier:>7.3f}{r.size_bits:>13,}"
                     f"{r.size_kib:>12.2f}{f'{100 * r.accuracy:.2f}%{spread}':>18}  {seeds}")
    return "\n".join(lines)


def export_dual_precision(result, out_dir="runs/demo", *, calibration_samples=500):
    """Exports the demo's DualPrecision model to int8 TFLite and packed TFLite Micro.

    Args:
      result: what :func:`run_demo` returned.
      out_dir: the demo's output folder; the files go to ``out_dir/export``.
      calibration_samples: digits training images used to calibrate.

    Returns:
      the :class:`tflite_export.ExportResult` (sizes, accuracies, files).
    """
    dual = result["records"][-1]
    calibration, validation = data_lib.export_arrays(
        "digits", image_size=DEMO_IMAGE_SIZE, calibration_samples=calibration_samples)
    return tflite_export.export(saving.load_model(dual.model_file), calibration,
                                os.path.join(out_dir, EXPORT_DIR), name=EXPORT_NAME,
                                validation_data=validation)
