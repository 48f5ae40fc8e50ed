"""Sweeps and searches: the hyperparameter spaces, result files and plots.

* :func:`sweep` (Sec. 4): every precision at every width (or at every size
  budget, the width then found per precision), the Pareto front and the
  dominance matrix (Definition 4.1) between precisions.
* :func:`dual_precision_search` (Sec. 6): every (conv_bits, dw_bits) pair at one
  size budget, with keras-tuner's grid, random, Bayesian or Hyperband oracle;
  the best pair and the grid (Table 7).
* :func:`proxy_search`: the same choice at a fraction of the grid's cost: the
  grid on a low-width proxy (a smaller budget, a shorter recipe), then only the
  best proxy pairs at the real budget.

Both write into ``out_dir``: the keras-tuner project (``tuner/``, one folder per
trial with its QAT model, history and record), ``results.json``,
``results.csv`` and plots; run again with the same arguments they resume and
train no finished trial again.
"""

import csv
import dataclasses
import os
import tempfile

import keras_tuner as kt

from tfq_pareto import checks, data, experiment, training
from tfq_pareto.quantizers import check_bits
from tfq_pareto.records import as_record, jsonable
from tfq_pareto.search import plots
from tfq_pareto.search.front import (
    dominance_beyond_spread_matrix,
    dominance_matrix,
    pareto_front,
)
from tfq_pareto.search.tuner import (
    HP_BUDGET,
    HP_CONV_BITS,
    HP_DW_BITS,
    HP_WIDTH,
    PrecisionTuner,
    make_oracle,
)

#: Default precision set B of the DualPrecision grid.
DEFAULT_BITS = (1, 2, 4, 8)

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
PARETO_PNG = "pareto.png"
GRID_PNG = "grid.png"

_CSV_FIELDS = ("trial_id", "status", "conv_bits", "dw_bits", "width_multiplier", "budget_bits",
               "size_bits", "size_kib", "params", "accuracy", "accuracy_std", "accuracies",
               "seeds", "flash_bytes", "ram_bytes", "macs", "message", "tuner_id")


def _csv_row(record):
    row = record.to_dict()
    for key in ("accuracies", "seeds"):  # one cell: values separated by spaces
        if row.get(key) is not None:
            row[key] = " ".join(str(v) for v in row[key])
    return row


def _check_bits_list(bits, name="bits"):
    bits = list(bits)
    if not bits:
        raise ValueError(f"{name} must name at least one precision; received {bits!r}")
    for b in bits:
        if isinstance(b, (tuple, list)):
            check_bits("conv_bits", b[0])
            check_bits("dw_bits", b[1])
        else:
            check_bits(name, b)
    return bits


def _check_positive(values, name):
    values = list(values)
    if not values:
        raise ValueError(f"{name} must not be empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:  # a list: plural
            raise ValueError(f"{name} must be numbers > 0; received {v!r}")
    return values


def _precision_pairs(bits, depthwise):
    pairs = []
    for b in bits:
        conv, dw = (b[0], b[1]) if isinstance(b, (tuple, list)) else (b, b if depthwise else None)
        if not depthwise:
            dw = None
        pairs.append((int(conv), None if dw is None else int(dw)))
    return pairs


def budget_of(base_config, info, *, width_multiplier=None, conv_bits=8, dw_bits=None,
              width=None):
    """Eq. (6) size in bits of ``base_config``'s family at ``width_multiplier`` and a
    precision (e.g. "the size of the 0.25x 8-bit model"). ``width`` is the old name of
    ``width_multiplier``, still accepted."""
    from tfq_pareto.size import model_size  # pylint: disable=import-outside-toplevel

    width_multiplier = _renamed("width_multiplier", width_multiplier, "width", width)
    checks.check_positive("width_multiplier", width_multiplier)
    model = experiment.build_float_model(
        dataclasses.replace(base_config, width_multiplier=width_multiplier), info)
    return model_size(model, conv_bits=conv_bits, dw_bits=dw_bits)


def _renamed(name, value, old_name, old_value):
    """The value of an argument that was renamed (``old_name`` still accepted)."""
    if old_value is None:
        if value is None:
            raise ValueError(f"{name} is required")
        return value
    if value is not None:
        raise ValueError(f"give {name} only ({old_name} is its old name); received both")
    return old_value


def _write_results(out_dir, summary, records, plot_grid=False):
    training.write_json(os.path.join(out_dir, RESULTS_JSON),
                        jsonable({**summary, "records": records}))
    handle, tmp = tempfile.mkstemp(prefix=RESULTS_CSV + ".", suffix=".tmp", dir=out_dir)
    with os.fdopen(handle, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=_CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(_csv_row(r) for r in records)
    os.replace(tmp, os.path.join(out_dir, RESULTS_CSV))
    done = [r for r in records if r.done]
    if done:
        plots.plot_pareto(records, os.path.join(out_dir, PARETO_PNG))
        if plot_grid:
            plots.plot_grid(records, os.path.join(out_dir, GRID_PNG))


def _search(tuner, out_dir, summary, plot_grid):
    """Runs the tuner; rewrites the result files after every trial.

    A project resumed with another number of seeds than its finished trials were
    trained with is refused before any training: those trials would keep their
    old seed count (the oracle does not revisit a finished trial), and their
    means and spreads would not compare with the new ones.
    """
    for record in tuner.trial_records():
        if record.done:
            trained = len(record.accuracies) if record.accuracies else 1
            if trained != tuner.seeds:
                raise ValueError(
                    f"{out_dir!r} holds trials trained with {trained} seed(s) each; received "
                    f"seeds={tuner.seeds}: resume with seeds={trained} or use a new out_dir")
    original = tuner.on_trial_end

    def on_trial_end(trial):
        original(trial)
        _write_results(out_dir, summary, tuner.trial_records(), plot_grid)

    tuner.on_trial_end = on_trial_end
    tuner.search(verbose=tuner.run_verbose)
    records = tuner.trial_records()
    _write_results(out_dir, summary, records, plot_grid)
    return records


def _prepare(base_config, recipe, datasets, data_dir, image_size):
    if datasets is None:
        datasets = data.load(base_config.dataset, data_dir=data_dir, image_size=image_size)
    datasets = data.as_datasets(datasets)
    _, depthwise = experiment.check_config(dataclasses.replace(base_config, dw_bits=None),
                                           datasets.info)
    return datasets, depthwise


def sweep(base_config, *, bits, width_multipliers=None, budgets_bits=None, recipe, out_dir,
          datasets=None, data_dir=None, image_size=16, strategy=None, verbose=0,
          tolerance=0.03, widths=None, measure=None, seeds=1):
    """Sec. 4: (size, accuracy, width, params) for every precision at every width or budget.

    Args:
      base_config: :class:`tfq_pareto.experiment.RunConfig` of the family and data.
      bits: precisions: ints (depthwise convs get the same bits) or
        ``(conv_bits, dw_bits)`` pairs.
      width_multipliers: width multipliers, each used for every precision (``widths``:
        its old name, still accepted); or
      budgets_bits: Eq. (6) budgets; each precision is widened to each of them
        (unreachable ones are recorded as failed trials with the reason).
      recipe: :class:`tfq_pareto.training.Recipe`.
      out_dir: results folder (resumable; resumed with more widths, budgets or
        precisions, it trains only the new points).
      datasets: ``(train, test, info)``; default: load ``base_config.dataset``.
      measure: adds fields to each trained record (see
        :class:`~tfq_pareto.search.PrecisionTuner`; ``tfq-pareto sweep --measure-fit``
        passes the exported model's flash, RAM and MACs).
      seeds: trainings per point, with seeds 0..seeds-1 (see
        :class:`~tfq_pareto.search.PrecisionTuner`): each record's ``accuracy`` is
        the mean, ``accuracies`` every seed's and ``accuracy_std`` their spread.

    Returns:
      ``{"records": [TrialRecord, ...], "front": [...], "dominance": {...},
      "dominance_beyond_spread": {...}}`` (also in results.json, the records as
      dicts): see :func:`summarize_sweep`.
    """
    bits = _check_bits_list(bits)
    checks.check_int("seeds", seeds)
    if widths is not None:
        if width_multipliers is not None:
            raise ValueError("give width_multipliers only (widths is its old name); "
                             "received both")
        width_multipliers = widths
    if (width_multipliers is None) == (budgets_bits is None):
        raise ValueError("give exactly one of width_multipliers and budgets_bits")
    axis_values = _check_positive(
        width_multipliers if width_multipliers is not None else budgets_bits,
        "width_multipliers" if width_multipliers is not None else "budgets_bits")
    datasets, depthwise = _prepare(base_config, recipe, datasets, data_dir, image_size)
    pairs = _precision_pairs(bits, depthwise)
    hp = kt.HyperParameters()
    hp.Choice(HP_CONV_BITS, sorted({c for c, _ in pairs}))
    if depthwise:
        hp.Choice(HP_DW_BITS, sorted({d for _, d in pairs}))
    if width_multipliers is not None:
        hp.Choice(HP_WIDTH, [float(w) for w in axis_values])
    else:
        hp.Choice(HP_BUDGET, [float(b) for b in axis_values])
    listed = set(pairs)

    def allowed(point):  # only the listed (conv, dw) pairs, not their cross product
        return (int(point[HP_CONV_BITS]), point.get(HP_DW_BITS)) in listed

    tuner = PrecisionTuner(
        make_oracle("grid", hp, allowed=allowed), base_config=base_config, recipe=recipe,
        datasets=datasets, directory=out_dir, project_name="tuner", strategy=strategy,
        verbose=verbose, tolerance=tolerance, measure=measure, seeds=seeds)
    summary = {"kind": "sweep", "config": dataclasses.asdict(base_config),
               "recipe": dataclasses.asdict(recipe), "bits": [list(p) for p in pairs],
               "width_multipliers": width_multipliers, "budgets_bits": budgets_bits,
               "seeds": seeds}
    records = _search(tuner, out_dir, summary, plot_grid=False)
    result = summarize_sweep(records)
    training.write_json(os.path.join(out_dir, RESULTS_JSON), jsonable({**summary, **result}))
    return result


def summarize_sweep(records):
    """Front over all finished trials and the dominance matrices between precisions.

    ``dominance`` is Definition 4.1 on the (mean) accuracies;
    ``dominance_beyond_spread`` also asks that every margin exceed the pooled
    standard deviation over seeds (:func:`~tfq_pareto.search.front.dominates_beyond_spread`;
    null with one seed per point: no spread to compare with).
    """
    done = [r for r in records if r.done]
    curves, spread_curves = {}, {}
    for r in done:
        curves.setdefault(r.label, []).append((r.size_bits, r.accuracy))
        spread_curves.setdefault(r.label, []).append((r.size_bits, r.accuracy, r.accuracy_std))
    return {"records": records, "front": pareto_front(done),
            "dominance": dominance_matrix(curves),
            "dominance_beyond_spread": dominance_beyond_spread_matrix(spread_curves),
            "dominance_note": "row dominates column (Definition 4.1): higher (mean) accuracy at "
                              "every size both cover, curves linearly interpolated; null: no "
                              "overlap. beyond_spread: every margin also larger than the pooled "
                              "seed standard deviation; null: one seed, no spread known"}


def dual_precision_search(base_config, budget_bits, *, bits=DEFAULT_BITS, oracle="grid",
                          max_trials=None, recipe, out_dir, datasets=None, data_dir=None,
                          image_size=16, strategy=None, verbose=0, tolerance=0.03, seed=0,
                          measure=None, seeds=1):
    """Sec. 6: the best (conv_bits, dw_bits) at one Eq. (6) budget.

    Every pair of B x B (just B for families without depthwise convs) is widened
    to ``budget_bits`` and trained; the oracle decides the order (and, but for
    "grid", how many). ``seed`` seeds the oracle; ``seeds`` is the trainings per
    pair (see :func:`sweep`), the best pair the one with the highest mean.

    Returns:
      ``{"best": TrialRecord, "records": [TrialRecord, ...]}`` (also in results.json;
      grid.png is Table 7).
    """
    bits = _check_bits_list(bits)
    checks.check_int("seeds", seeds)
    checks.check_positive("budget_bits", budget_bits)
    datasets, depthwise = _prepare(base_config, recipe, datasets, data_dir, image_size)
    hp = kt.HyperParameters()
    hp.Choice(HP_CONV_BITS, sorted(set(bits)))
    if depthwise:
        hp.Choice(HP_DW_BITS, sorted(set(bits)))
    hp.Fixed(HP_BUDGET, float(budget_bits))
    tuner = PrecisionTuner(
        make_oracle(oracle, hp, max_trials=max_trials, max_epochs=recipe.epochs, seed=seed),
        base_config=base_config, recipe=recipe, datasets=datasets, directory=out_dir,
        project_name="tuner", strategy=strategy, verbose=verbose, tolerance=tolerance,
        measure=measure, seeds=seeds)
    summary = {"kind": "search", "oracle": oracle, "config": dataclasses.asdict(base_config),
               "recipe": dataclasses.asdict(recipe), "budget_bits": budget_bits,
               "bits": sorted(set(bits)), "seeds": seeds}
    records = _search(tuner, out_dir, summary, plot_grid=True)
    done = [r for r in records if r.done]
    best = max(done, key=lambda r: r.accuracy) if done else None
    training.write_json(os.path.join(out_dir, RESULTS_JSON),
                        jsonable({**summary, "best": best, "records": records}))
    return {"best": best, "records": records}


def _reachable(base_config, info, conv_bits, dw_bits, budget_bits, tolerance):
    from tfq_pareto.width import width_for_size  # pylint: disable=import-outside-toplevel

    config = dataclasses.replace(base_config, conv_bits=conv_bits, dw_bits=dw_bits)
    try:
        width_for_size(lambda w: experiment.build_float_model(
            dataclasses.replace(config, width_multiplier=w), info),
                       budget_bits, conv_bits=conv_bits, dw_bits=dw_bits, tolerance=tolerance)
    except ValueError:
        return False
    return True


def _train_seconds(records):
    return sum(r.train_seconds or 0.0 for r in records)


def proxy_search(base_config, budget_bits, *, bits=DEFAULT_BITS, recipe, out_dir,
                 proxy_fraction=0.25, proxy_recipe=None, top_k=1, datasets=None, data_dir=None,
                 image_size=16, strategy=None, verbose=0, tolerance=0.03, measure=None,
                 seeds=1):
    """The best (conv_bits, dw_bits) at ``budget_bits`` from a low-width proxy grid.

    1. The full grid of :func:`dual_precision_search` at ``proxy_fraction *
       budget_bits`` (every pair narrower, so cheaper to train), with
       ``proxy_recipe`` (default ``recipe``; e.g. fewer epochs).
    2. The ``top_k`` best pairs of the proxy (by accuracy; pairs no width brings
       to ``budget_bits`` within ``tolerance`` are skipped), widened to
       ``budget_bits`` and trained with ``recipe``; the best of them is the answer.

    ``seeds``: trainings per pair in both stages (see :func:`sweep`).

    Writes ``out_dir/proxy/`` and ``out_dir/final/`` (both resumable) and
    ``out_dir/results.json``.

    Returns:
      ``{"best": record, "ranking": [[conv_bits, dw_bits], ...], "unreachable_at_budget":
      [...], "proxy_records": [...],
      "records": [...], "train_seconds": {"proxy": s, "final": s}}``.
    """
    checks.check_fraction("proxy_fraction", proxy_fraction)
    checks.check_int("top_k", top_k)
    checks.check_positive("budget_bits", budget_bits)
    bits = _check_bits_list(bits)
    checks.check_int("seeds", seeds)
    datasets, depthwise = _prepare(base_config, recipe, datasets, data_dir, image_size)
    common = {"datasets": datasets, "strategy": strategy, "verbose": verbose,
              "tolerance": tolerance, "measure": measure, "seeds": seeds}
    proxy = dual_precision_search(base_config, budget_bits * proxy_fraction, bits=bits,
                                  oracle="grid", recipe=proxy_recipe or recipe,
                                  out_dir=os.path.join(out_dir, "proxy"), **common)
    done = sorted((r for r in proxy["records"] if r.done), key=lambda r: r.accuracy,
                  reverse=True)
    if not done:
        raise RuntimeError(f"no proxy trial finished at {budget_bits * proxy_fraction:.0f} bits; "
                           f"see {os.path.join(out_dir, 'proxy', RESULTS_JSON)}")
    ranking = [(r.conv_bits, r.dw_bits if depthwise else None) for r in done]
    chosen, unreachable = [], []
    for conv, dw in ranking:  # the best top_k pairs that can be widened to the budget
        if len(chosen) == top_k:
            break
        if _reachable(base_config, datasets.info, conv, dw, budget_bits, tolerance):
            chosen.append((conv, dw) if depthwise else conv)
        else:
            unreachable.append([conv, dw])
    if not chosen:
        raise RuntimeError(f"no proxy pair reaches {budget_bits:.0f} bits within tolerance "
                           f"{tolerance}: {unreachable}; raise tolerance")
    final = sweep(base_config, bits=chosen, budgets_bits=[budget_bits], recipe=recipe,
                  out_dir=os.path.join(out_dir, "final"), **common)
    finished = [r for r in final["records"] if r.done]
    best = max(finished, key=lambda r: r.accuracy) if finished else None
    result = {"kind": "proxy_search", "budget_bits": budget_bits,
              "proxy_fraction": proxy_fraction, "top_k": top_k, "seeds": seeds,
              "recipe": dataclasses.asdict(recipe),
              "proxy_recipe": dataclasses.asdict(proxy_recipe or recipe),
              "best": best, "ranking": [list(p) for p in ranking],
              "unreachable_at_budget": unreachable,
              "proxy_records": proxy["records"], "records": final["records"],
              "train_seconds": {"proxy": _train_seconds(proxy["records"]),
                                "final": _train_seconds(final["records"])}}
    training.write_json(os.path.join(out_dir, RESULTS_JSON), jsonable(result))
    return result


def replot(out_dir, size_axis="eq6"):
    """Redraws the plots of a finished (or running) sweep/search from its results.json.

    ``size_axis``: the x axis of pareto.png, one of :data:`tfq_pareto.search.plots.SIZE_AXES`
    (``flash``, ``ram`` and ``macs`` need records measured with ``measure``).
    """
    import json  # pylint: disable=import-outside-toplevel

    path = os.path.join(out_dir, RESULTS_JSON)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist: run `tfq-pareto sweep` or `search` first")
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    records = [as_record(r) for r in results["records"]]
    files = [os.path.join(out_dir, PARETO_PNG)]
    plots.plot_pareto(records, files[0], size_axis=size_axis)
    if results.get("kind") == "search":
        files.append(os.path.join(out_dir, GRID_PNG))
        plots.plot_grid(records, files[1])
    return files
