"""``fit_budget``: the most accurate model that fits a device's flash, RAM and MACs.

For every precision pair (conv bits, depthwise bits) of the family:

1. **Widest fitting width.** The QAT model (untrained: sizes and arenas do not
   depend on the weight values) is exported with :func:`tflite_export.export`
   at candidate widths, and each export's measured ``fit`` certificate (packed
   file bytes, TFLM arena + CMSIS-NN scratch bound, MACs) is checked against the
   budget. Fit grows with width, so a bisection on the width multiplier (in log
   space, between ``min_width`` and ``max_width``) finds the widest width that
   fits. Every probe is kept in ``out_dir/probes.json`` (a rerun exports none
   again). A pair that does not fit even at ``min_width`` is infeasible; the
   reason names the constraint and by how much it is over.
2. **Train.** The feasible pairs train as keras-tuner trials of a
   :class:`tfq_pareto.search.PrecisionTuner` (resumable, distributable as
   ``search``); infeasible pairs are recorded as FAILED trials with the reason.
3. **Pick and certify.** The most accurate trained candidate is exported with
   the budget enforced; the certificate is the export's ``fit`` section,
   measured on the trained model's files. Should it not fit (a trained model's
   value tables can differ slightly from the probe's), the next most accurate
   candidate is tried.

Each candidate says what stops it from being wider (``bound_by``: ``"flash"``,
``"ram"``, ``"macs"``, or ``"max_width"`` when the searched range ends first)
and the share of each limit it uses (``budget_use``).

Widening a model costs MACs roughly as the square of the width multiplier (both
a layer's input and output channels grow), which Eq. (6) size does not show;
every candidate's MACs are in the results.
"""

import dataclasses
import importlib
import json
import math
import os
import tempfile

import keras_tuner as kt
import numpy as np

from tflite_export.fit import Budget, BudgetError, DEVICES
from tfq_pareto import apply, data, experiment, load_model, search, training
from tfq_pareto.checks import check_int
from tfq_pareto.quantizers import check_bits
from tfq_pareto.records import jsonable

#: Files in ``out_dir``.
PROBES_FILE = "probes.json"

#: Calibration (and verification) inputs of a probe export: sizes and arenas do not
#: depend on them, and fewer make each probe faster.
PROBE_SAMPLES = 8

# The module, not the package's function of the same name.
export_lib = importlib.import_module("tflite_export.export")
RESULTS_FILE = "results.json"
PLOT_FILE = "fit.png"
EXPORT_DIR = "export"


def _probe_key(conv_bits, dw_bits, width):
    return f"{conv_bits}/{dw_bits}@{width:.6f}"


def measure_fit(model, samples, **export_kwargs):
    """Flash, RAM and MACs of ``model`` exported with :func:`tflite_export.export`.

    Exports into a temporary folder (the outputs are only compared, with no
    tolerance: ``max_output_steps=None``) and returns ``{"flash_bytes",
    "ram_bytes" (the arena + CMSIS-NN scratch bound), "macs", "eq6_bits"}``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        result = export_lib.export(model, samples, tmp, name="probe", max_output_steps=None,
                                   **export_kwargs)
    fit = result.manifest["fit"]
    return {"flash_bytes": fit["flash_bytes"], "ram_bytes": fit["ram_bytes_upper_bound"],
            "macs": fit["macs"], "eq6_bits": result.totals["eq6_bits"]}


def _trained_like(model, seed=0):
    """``model`` with BatchNormalization statistics as training leaves them.

    Untrained, every folded bias is 0 and the converter stores one shared zero
    buffer for them, so the probe's file would be smaller than the trained
    model's (measured: 45,712 B probed vs 48,752 B trained for a 1-bit ResNet-20).
    """
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        name = weight.name
        if "gamma" in name or "moving_variance" in name:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
        elif "beta" in name or "moving_mean" in name:
            weight.assign(rng.normal(0.0, 0.2, weight.shape).astype("float32"))
    return model


class _Probes:
    """Measured fits of untrained QAT models, by (precision, width); saved as they come."""

    def __init__(self, path, config, datasets, samples):
        self.path, self.config, self.datasets, self.samples = path, config, datasets, samples
        self.values = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.values = json.load(f)

    def __call__(self, conv_bits, dw_bits, width):
        key = _probe_key(conv_bits, dw_bits, width)
        if key not in self.values:
            config = dataclasses.replace(self.config, conv_bits=conv_bits, dw_bits=dw_bits,
                                         width_multiplier=width)
            model = experiment.build_float_model(config, self.datasets.info)
            qat = apply(model, conv_bits=conv_bits, dw_bits=dw_bits,
                        first_last_bits=config.first_last_bits, act_bits=config.act_bits)
            self.values[key] = measure_fit(_trained_like(qat), self.samples,
                                           activation_ranges="calibration")
            training.write_json(self.path, self.values)
        return self.values[key]


def _shares(budget, fit):
    """The share of each limit ``fit`` uses: ``{"flash": .., "ram": ..[, "macs": ..]}``."""
    use = {"flash": fit["flash_bytes"] / budget.flash_bytes,
           "ram": fit["ram_bytes"] / budget.ram_bytes}
    if budget.max_macs is not None:
        use["macs"] = fit["macs"] / budget.max_macs
    return use


def _load(budget, fit):
    """The most used share of the budget: max of flash, RAM (and MACs) over their limits."""
    return max(_shares(budget, fit).values())


def bound_by(budget, fit, width, max_width):
    """What stops a candidate from being wider: ``"max_width"`` (the searched range,
    not the budget) when it reached ``max_width``, else the constraint it uses most
    of (``"flash"``, ``"ram"`` or ``"macs"``; None for an infeasible candidate).

    Also returns the share of each limit the candidate uses (``{"flash": 0.97, ...}``).
    """
    use = {k: round(v, 4) for k, v in _shares(budget, fit).items()}
    if width is None:
        return None, use
    if width >= max_width:
        return "max_width", use
    return max(use, key=use.get), use


def widest_fitting_width(probe, budget, conv_bits, dw_bits, *, min_width=0.25, max_width=4.0,
                         steps=6, precision=0.05):
    """The widest width multiplier whose probed fit meets ``budget``.

    The budget's load (the largest of flash / limit, RAM / limit, MACs / limit)
    grows with width about as a power of it, so each step probes where the
    straight line through the bracket's two ends in log(width), log(load) reaches
    1 (kept at least 10% of the bracket away from its ends), until the bracket
    is within ``precision`` (relative) or ``steps`` probes were spent.

    Args:
      probe: ``probe(conv_bits, dw_bits, width) -> {"flash_bytes", "ram_bytes", "macs"}``.
      budget: a :class:`tflite_export.Budget`.
      min_width, max_width: the range searched.
      steps: probes after the two ends, at most.
      precision: the bracket's relative width at which the search stops.

    Returns:
      ``(width, fit, reason)``: the width and its fit, or ``(None, fit at
      min_width, reason)`` when even ``min_width`` is over (the reason names the
      constraints and by how much).
    """
    def check(width):
        fit = probe(conv_bits, dw_bits, width)
        return budget.check({"flash_bytes": fit["flash_bytes"], "ram_bytes_upper_bound":
                             fit["ram_bytes"], "macs": fit["macs"]}), fit

    low_check, low_fit = check(min_width)
    if not low_check["fits"]:
        label = f"{conv_bits}-bit" if dw_bits is None else f"{conv_bits}/{dw_bits}-bit"
        return None, low_fit, (f"{label} does not fit even at width "
                               f"{min_width}: {'; '.join(low_check['over'])}")
    high_check, high_fit = check(max_width)
    if high_check["fits"]:
        return max_width, high_fit, None
    low, high = (min_width, low_fit), (max_width, high_fit)
    for _ in range(steps):
        if high[0] / low[0] <= 1 + precision:
            break
        log_low, log_high = math.log(low[0]), math.log(high[0])
        load_low, load_high = math.log(_load(budget, low[1])), math.log(_load(budget, high[1]))
        if load_high > load_low:
            t = (0.0 - load_low) / (load_high - load_low)
        else:
            t = 0.5
        t = min(max(t, 0.1), 0.9)
        middle = round(math.exp(log_low + t * (log_high - log_low)), 4)
        if middle in (low[0], high[0]):
            break
        middle_check, middle_fit = check(middle)
        if middle_check["fits"]:
            low = (middle, middle_fit)
        else:
            high = (middle, middle_fit)
    return low[0], low[1], None


def _budget_summary(budget):
    return dataclasses.asdict(budget)


def _plot(candidates, pick, path, budget):
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    done = [c for c in candidates if c.get("accuracy") is not None]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=110)
    for ax, key, limit, label in ((axes[0], "flash_bytes", budget.flash_bytes, "flash [KiB]"),
                                  (axes[1], "ram_bytes", budget.ram_bytes, "RAM (arena) [KiB]"),
                                  (axes[2], "macs", budget.max_macs, "MACs [M]")):
        scale = 1e6 if key == "macs" else 1024
        for c in done:
            ax.errorbar(c[key] / scale, 100 * c["accuracy"], fmt="o", ms=7, capsize=3,
                        yerr=None if c.get("accuracy_std") is None else 100 * c["accuracy_std"],
                        label=c["label"])
            ax.annotate(f"w={c['width_multiplier']:.2f}", (c[key] / scale, 100 * c["accuracy"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=7)
        if pick is not None:
            ax.scatter(pick[key] / scale, 100 * pick["accuracy"], s=160, facecolors="none",
                       edgecolors="k")
        if limit:
            ax.axvline(limit / scale, color="r", lw=1, ls="--")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy [%]")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"fit-budget {budget.name or ''}: candidates (circle: pick, dashed: budget)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fit_budget(config, budget, *, bits=(1, 2, 4, 8), recipe, out_dir, datasets=None,
               data_dir=None, image_size=16, strategy=None, verbose=0, min_width=0.25,
               max_width=4.0, calibration_samples=64, validation_samples=500, name="model",
               seeds=1):
    """The most accurate model of ``config``'s family that fits ``budget``, trained and exported.

    Args:
      config: :class:`tfq_pareto.experiment.RunConfig` of the family and data (its
        precision and width are what this searches).
      budget: a :class:`tflite_export.Budget`, or the name of a part of
        :data:`tflite_export.DEVICES` (its budget less the documented reserves).
      bits: the precision set: every pair of it (conv x depthwise) for families with
        depthwise convs, every precision otherwise.
      recipe: :class:`tfq_pareto.training.Recipe` each candidate trains with.
      out_dir: results folder (resumable: probes, trials and the export are kept).
      datasets: ``(train, test, info)``; default: load ``config.dataset``.
      min_width, max_width: the width multipliers searched. The default narrowest,
        0.25, leaves a 16-channel stage 4 channels; much narrower models can have
        dead (all-zero) activations whose zero range makes the TFLM interpreter
        abort while preparing its kernels (seen at 0.05: one channel per stage).
      calibration_samples, validation_samples: training images that calibrate the
        exports, test images the pick's manifest measures accuracy on.
      name: file and C symbol prefix of the exported pick.
      seeds: trainings per candidate (seeds 0..seeds-1): candidates are ranked by
        their mean accuracy, each row of results.json has every seed's accuracy
        and their standard deviation, and the pick's most accurate seed is the
        model exported.

    Returns:
      ``{"pick": candidate, "certificate": the pick's manifest fit section, "candidates":
      [...], "records": [TrialRecord, ...], "files": {...}}``; also ``out_dir/results.json``
      and ``out_dir/fit.png``.

    Raises:
      BudgetError: no pair fits the budget at ``min_width`` (the message names each
        pair's unmet constraint), or no trained candidate's export fits.
    """
    if isinstance(budget, str):
        budget = Budget.for_device(budget)
    if not isinstance(budget, Budget):
        raise ValueError(f"budget must be a tflite_export.Budget or a device name of "
                         f"{sorted(DEVICES)}; received {budget!r}")
    if not 0 < min_width < max_width:
        raise ValueError(f"need 0 < min_width < max_width; received {min_width}, {max_width}")
    bits = list(bits)
    if not bits:
        raise ValueError(f"bits must name at least one precision; received {bits!r}")
    for b in bits:
        check_bits("bits", b)
    check_int("seeds", seeds)
    if datasets is None:
        datasets = data.load(config.dataset, data_dir=data_dir, image_size=image_size)
    datasets = data.as_datasets(datasets)
    if config.act_bits is None:
        config = dataclasses.replace(config, act_bits=recipe.act_bits)
    _, depthwise = experiment.check_config(dataclasses.replace(config, dw_bits=None),
                                           datasets.info)
    os.makedirs(out_dir, exist_ok=True)
    calibration, validation = data.datasets_arrays(
        datasets, calibration_samples=calibration_samples, validation_samples=validation_samples)
    probe = _Probes(os.path.join(out_dir, PROBES_FILE), config, datasets,
                    calibration[:PROBE_SAMPLES])

    unique = sorted(set(bits))
    pairs = [(c, d if depthwise else None) for c in unique for d in (unique if depthwise else [0])]
    widths, fits, reasons = {}, {}, {}
    for conv_bits, dw_bits in pairs:
        width, fit, reason = widest_fitting_width(probe, budget, conv_bits, dw_bits,
                                                  min_width=min_width, max_width=max_width)
        widths[(conv_bits, dw_bits)], fits[(conv_bits, dw_bits)] = width, fit
        if reason:
            reasons[(conv_bits, dw_bits)] = reason
    if len(reasons) == len(pairs):
        raise BudgetError(f"no candidate fits budget {budget.name or ''} "
                          f"({budget.flash_bytes:,} B flash, {budget.ram_bytes:,} B RAM"
                          + (f", {budget.max_macs:,.0f} MACs" if budget.max_macs else "")
                          + "): " + " | ".join(reasons.values())
                          + f" (narrower models than min_width={min_width} may fit: lower "
                            f"min_width, --min-width on the command line, or try a family "
                            f"with smaller activations)")

    hp = kt.HyperParameters()
    hp.Choice(search.tuner.HP_CONV_BITS, unique)
    if depthwise:
        hp.Choice(search.tuner.HP_DW_BITS, unique)
    tuner = search.PrecisionTuner(
        search.make_oracle("grid", hp), base_config=config, recipe=recipe, datasets=datasets,
        directory=out_dir, project_name="tuner", strategy=strategy, verbose=verbose,
        seeds=seeds)

    def trial_config(hyperparameters):
        values = hyperparameters.values
        pair = (int(values[search.tuner.HP_CONV_BITS]),
                int(values[search.tuner.HP_DW_BITS]) if depthwise else None)
        if pair in reasons:
            raise kt.errors.FailedTrialError(reasons[pair])
        return dataclasses.replace(config, conv_bits=pair[0], dw_bits=pair[1],
                                   width_multiplier=widths[pair])

    tuner.trial_config = trial_config
    tuner.search(verbose=verbose)
    records = []
    for record in tuner.trial_records():
        fit = fits[(record.conv_bits, record.dw_bits)]
        records.append(record.replace(
            width_multiplier=widths[(record.conv_bits, record.dw_bits)],
            flash_bytes=fit["flash_bytes"], ram_bytes=fit["ram_bytes"], macs=fit["macs"]))
    limits = {pair: bound_by(budget, fits[pair], widths[pair], max_width) for pair in fits}
    candidates = [{"label": r.label, "conv_bits": r.conv_bits, "dw_bits": r.dw_bits,
                   "width_multiplier": r.width_multiplier, "status": r.status,
                   "reason": reasons.get((r.conv_bits, r.dw_bits))
                   or (r.message.strip().splitlines()[-1] if r.message else None),
                   "eq6_bits": fits[(r.conv_bits, r.dw_bits)]["eq6_bits"],
                   "bound_by": limits[(r.conv_bits, r.dw_bits)][0],
                   "budget_use": limits[(r.conv_bits, r.dw_bits)][1],
                   "flash_bytes": r.flash_bytes, "ram_bytes": r.ram_bytes, "macs": r.macs,
                   "accuracy": r.accuracy, "accuracy_std": r.accuracy_std,
                   "accuracies": r.accuracies, "seeds": r.seeds,
                   "model_file": r.model_file} for r in records]

    pick, certificate, refused = None, None, []
    export_dir = os.path.join(out_dir, EXPORT_DIR)
    for candidate in sorted((c for c in candidates if c["accuracy"] is not None),
                            key=lambda c: c["accuracy"], reverse=True):
        try:
            result = export_lib.export(load_model(candidate["model_file"]), calibration,
                                       export_dir, name=name, validation_data=validation,
                                       budget=budget, enforce_budget=True)
        except BudgetError as error:
            refused.append(f"{candidate['label']}: {error}")
            continue
        certificate = result.manifest["fit"]
        pick = {**candidate, "flash_bytes": certificate["flash_bytes"],
                "ram_bytes": certificate["ram_bytes_upper_bound"], "macs": certificate["macs"],
                "files": result.files}
        break
    summary = {"kind": "fit_budget", "budget": _budget_summary(budget),
               "config": dataclasses.asdict(config), "recipe": dataclasses.asdict(recipe),
               "bits": unique, "seeds": seeds, "width_range": [min_width, max_width],
               "ram_measure": "TFLM arena + largest CMSIS-NN scratch buffer (upper bound)",
               "candidate_fit_measure": "export of the untrained QAT model at the candidate's "
                                        "width (probe); the pick's figures are its own export's",
               "candidates": candidates, "pick": pick, "certificate": certificate,
               "refused_after_training": refused, "records": records}
    training.write_json(os.path.join(out_dir, RESULTS_FILE), jsonable(summary))
    plot = os.path.join(out_dir, PLOT_FILE)
    if any(c["accuracy"] is not None for c in candidates):
        _plot(candidates, pick, plot, budget)
    if pick is None:
        raise BudgetError("no trained candidate's export fits the budget: " + " | ".join(
            refused or [f"{c['label']}: " + (c["reason"] or c["status"]).strip().splitlines()[-1]
                        for c in candidates]))
    return {"pick": pick, "certificate": certificate, "candidates": candidates,
            "records": records, "files": {"results": os.path.join(out_dir, RESULTS_FILE),
                                          "plot": plot, **pick["files"]}}
