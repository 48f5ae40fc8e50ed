"""Successive halving at the budget against the 2-seed grid (issue 16, part 3).

Runs ``tfq_pareto.search.halving_search`` on the exact setting of a finished
``benchmarks/dual_precision_cifar.py`` run (its ``summary.json``: model, data,
schedule, budget, precision set, size tolerance) and compares it with that
run's grid, which trained every pair with 2 seeds:

* cost: the search's seconds against the grid's, both measured the same way
  (``model.fit``'s wall clock, plus the evaluation passes: the grid validates
  on the test set after every epoch, the search evaluates each pair once per
  rung); against the grid's 2 seeds (the issue's reference) and against one
  seed per pair;
* pick: the grid rank of the pair it returns, the grid's points below its best,
  and whether that is within the grid's seed spread (pooled standard deviation
  of the two pairs' seeds);
* rank agreement: Spearman's rho between the first rung's accuracies (every
  pair ranked there) and the grid's means.

    python benchmarks/halving_cifar.py --model resnet_cifar
    python benchmarks/halving_cifar.py --model mobilenet_v2_cifar --seed 1
    python benchmarks/halving_cifar.py --model resnet_cifar \
        --grid benchmarks/results/training_floor/summary.json

The grid may also be ``benchmarks/training_floor.py``'s (ResNet-20 at 1/2/4/8
bits, 20,000 images, 8 epochs, 8-bit activations, 2 seeds): a longer schedule
on which the grid's own order is beyond its seed spread. Its per-seed runs are
read as a grid (:func:`grid_from_floor`: each precision's full-test accuracies,
their mean and sample std, the seeds' summed seconds) and the search runs on its
setting and recipe.

``--anneal F`` ranks each rung after a probe (``halving_search(anneal=F)``: a copy
of each pair annealed to lr 0 over F of the schedule, then thrown away); the
probes' steps and evaluations count in the cost, and the rung's accuracies before
the probe are reported beside (``first_rung_unannealed_vs_grid_rank``). Its files
are ``halving_anneal_seed_<s>/`` and ``summary_halving_anneal_seed_<s>.json``.

Writes ``benchmarks/results/dual_precision_<model>/halving_seed_<s>/`` (the
search's own files; resumable) and ``summary_halving_seed_<s>.json`` beside the
grid's ``summary.json``. Run it on the machine and thread count the grid ran
with (``TF_NUM_INTRAOP_THREADS=1`` for the committed grids), or its seconds do
not compare.
"""

import argparse
import json
import os

import numpy as np
from figure1_cifar import SHARED, load_cifar  # benchmarks/ is the script's folder
from training_floor import WIDTH_TOLERANCE

from tfq_pareto import experiment, search, training
from tfq_pareto.search.halving import DEFAULT_RUNGS, check_anneal, check_rungs, pair_label

HERE = os.path.dirname(os.path.abspath(__file__))


def _key(conv_bits, dw_bits):
    return pair_label(conv_bits, dw_bits)


def grid_from_floor(floor):
    """A ``training_floor.py`` summary in the form of a ``dual_precision_cifar.py`` one.

    Each precision's runs become a grid pair (standard convs only, ``dw_bits``
    None): every seed's full-test accuracy (fractions), their mean and sample
    standard deviation (None for one seed), the seeds, the runs' summed
    ``train_seconds``, width and Eq. (6) size. The schedule and recipe are the
    floor's, the test set the full one; the width tolerance is the one the floor
    used (``setting.size_tolerance``; runs before it was recorded used
    :data:`training_floor.WIDTH_TOLERANCE`).
    """
    setting, grid = floor["setting"], []
    for bits in sorted({r["conv_bits"] for r in floor["runs"]}):
        runs = sorted((r for r in floor["runs"] if r["conv_bits"] == bits),
                      key=lambda r: r["seed"])
        accuracies = [r["accuracy_full"] for r in runs]
        grid.append({"conv_bits": bits, "dw_bits": None, "accuracies": accuracies,
                     "accuracy": float(np.mean(accuracies)),
                     "accuracy_std": float(np.std(accuracies, ddof=1))
                     if len(accuracies) > 1 else None,
                     "seeds": [r["seed"] for r in runs],
                     "train_seconds": sum(r["train_seconds"] for r in runs),
                     "width": runs[0]["width"], "size_bits": runs[0]["size_bits"]})
    recipe = setting["recipe"]
    return {"model": "resnet_cifar", "grid": grid, "bits": [g["conv_bits"] for g in grid],
            "budget_bits": setting["budget_bits"],
            "size_tolerance": setting.get("size_tolerance", WIDTH_TOLERANCE),
            "schedule": {"train_images": setting["train_images"], "test_images": None,
                         "act_bits": setting["act_bits"],
                         "first_last_bits": 8,  # RunConfig's default, which the floor kept
                         "epochs": recipe["epochs"], "warmup_epochs": recipe["warmup_epochs"],
                         "batch_size": recipe["batch_size"], "lr": recipe["learning_rate"]},
            "recipe": recipe}


def compare(summary, result):
    """The halving search's ``result`` against the grid of a dual_precision ``summary``."""
    grid = {_key(g["conv_bits"], g["dw_bits"]): g for g in summary["grid"]
            if g["accuracy"] is not None}
    ranked = sorted(grid, key=lambda k: -grid[k]["accuracy"])
    best = grid[ranked[0]]
    grid_seconds_2 = sum(g["train_seconds"] for g in grid.values())
    grid_seconds_1 = sum(g["train_seconds"] / len(g["seeds"]) for g in grid.values())
    seeds = {len(g["seeds"]) for g in grid.values()}
    pick = result["best"]
    pick_key = _key(pick.conv_bits, pick.dw_bits)
    spread = search.pooled_std(grid[pick_key]["accuracy_std"], best["accuracy_std"])
    first = result["rungs"][0]["accuracies"]
    agreement = search.rank_agreement(first, {k: g["accuracy"] for k, g in grid.items()})
    seconds = result["train_seconds"]["total"] + result["eval_seconds"]
    # Machine-independent counts beside the seconds: optimizer steps and passes over the
    # test set (the grid: every seed of every pair trains the whole schedule and validates
    # once per epoch).
    trainings = sum(len(g["seeds"]) for g in grid.values())
    # With --anneal, the probes' steps (trained, evaluated, thrown away) are part of the cost.
    probe = {k: sum(r["steps"] for r in p.get("probes", [])) for k, p in result["pairs"].items()}
    steps = sum(p["step"] for p in result["pairs"].values()) + sum(probe.values())
    # The same pair's seconds per optimizer step in the search and in the grid: when the grid
    # ran on another machine or day, this ratio shows how much of the seconds ratio is the
    # machine (the grid's seconds include its per-epoch validation pass).
    mine = [k for k, p in result["pairs"].items()
            if _key(p["conv_bits"], p["dw_bits"]) == pick_key]
    per_step = (sum(result["pairs"][k]["train_seconds"] for k in mine)
                / sum(result["pairs"][k]["step"] + probe[k] for k in mine))
    per_step_grid = grid[pick_key]["train_seconds"] / (
        len(grid[pick_key]["seeds"]) * result["total_steps"])
    evaluations = sum(len(p["rungs"]) + len(p.get("probes", []))
                      for p in result["pairs"].values())
    unannealed = result["rungs"][0].get("unannealed")
    unannealed_agreement = None if unannealed is None else search.rank_agreement(
        unannealed, {k: g["accuracy"] for k, g in grid.items()})
    return {
        "grid_seeds": sorted(seeds),
        "grid_best": ranked[0],
        "grid_ranking": ranked,
        "grid_seconds_all_seeds": grid_seconds_2,
        "grid_seconds_one_seed": grid_seconds_1,
        "halving_train_seconds": result["train_seconds"],
        "halving_eval_seconds": result["eval_seconds"],
        "halving_seconds": seconds,
        "ratio_to_grid_all_seeds": seconds / grid_seconds_2,
        "ratio_to_grid_one_seed": seconds / grid_seconds_1,
        "pick_seconds_per_step_halving": per_step,
        "pick_seconds_per_step_grid": per_step_grid,
        "halving_steps": steps,
        "halving_probe_steps": sum(probe.values()),
        "grid_steps": trainings * result["total_steps"],
        "steps_ratio_to_grid_all_seeds": steps / (trainings * result["total_steps"]),
        "halving_evaluations": evaluations,
        "grid_evaluations": trainings * summary["schedule"]["epochs"],
        "pick": pick_key,
        "pick_accuracy_halving": pick.accuracy,
        "pick_width": pick.width_multiplier,
        "grid_width_of_pick": grid[pick_key].get("width"),
        "pick_size_kib": pick.size_kib,
        "grid_rank_of_pick": 1 + ranked.index(pick_key),
        "points_below_grid_best": 100 * (best["accuracy"] - grid[pick_key]["accuracy"]),
        "pooled_std_points": None if spread is None else 100 * spread,
        "within_grid_spread": None if spread is None
        else best["accuracy"] - grid[pick_key]["accuracy"] <= spread,
        "first_rung_vs_grid_rank": {"spearman": agreement["spearman"],
                                    "p_value": agreement["p_value"],
                                    "p_value_method": agreement["p_value_method"],
                                    "pairs": agreement["n"]},
        "first_rung_unannealed_vs_grid_rank": None if unannealed_agreement is None else {
            "spearman": unannealed_agreement["spearman"],
            "p_value": unannealed_agreement["p_value"],
            "pairs": unannealed_agreement["n"]},
        "anneal": result.get("anneal", 0.0),
        "anneal_steps": result.get("anneal_steps", 0),
        "rungs": result["rungs"],
        "failed": result["failed"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet_cifar",
                        choices=["resnet_cifar", "mobilenet_v2_cifar"])
    parser.add_argument("--grid", default=None,
                        help="the grid's summary.json (default: benchmarks/results/"
                        "dual_precision_<model>/summary.json)")
    parser.add_argument("--rungs", default=",".join(f"{r:.4f}" for r in DEFAULT_RUNGS),
                        help="fractions of the schedule at which pairs are ranked")
    parser.add_argument("--eta", type=int, default=None,
                        help="halving rate (default: the smallest leaving one pair)")
    parser.add_argument("--seed", type=int, default=0, help="the search's seed")
    parser.add_argument("--anneal", type=float, default=0.0,
                        help="probe before each rung's ranking: this fraction of the schedule's "
                        "steps with the lr annealed to 0 (default 0: none); results go to "
                        "halving_anneal_seed_<s>/ and summary_halving_anneal_seed_<s>.json")
    parser.add_argument("--data-dir", default=SHARED)
    parser.add_argument("--out", default=None,
                        help="default: the grid's folder (halving_seed_<s>/ and "
                        "summary_halving_seed_<s>.json)")
    args = parser.parse_args()
    try:
        rungs = check_rungs(args.rungs.split(","))
    except ValueError as err:
        parser.error(str(err))
    if args.eta is not None and args.eta < 2:
        parser.error(f"--eta must be an int >= 2; received {args.eta}")
    try:
        check_anneal(args.anneal)
    except ValueError as err:
        parser.error(str(err))
    if args.seed < 0:
        parser.error(f"--seed must be >= 0; received {args.seed}")
    grid_path = args.grid or os.path.join(HERE, "results", f"dual_precision_{args.model}",
                                          "summary.json")
    if not os.path.exists(grid_path):
        parser.error(f"no grid summary at {grid_path}: run benchmarks/dual_precision_cifar.py "
                     f"--model {args.model} first, or pass --grid")
    with open(grid_path, encoding="utf-8") as f:
        summary = json.load(f)
    if "per_precision" in summary and "runs" in summary:  # a training_floor.py summary
        summary = grid_from_floor(summary)
    if summary["model"] != args.model:
        parser.error(f"{grid_path} is a grid of {summary['model']!r}, not {args.model!r}")
    out = args.out or os.path.dirname(os.path.abspath(grid_path))
    schedule = summary["schedule"]
    datasets = load_cifar(schedule["train_images"], args.data_dir, schedule["test_images"])
    depthwise = args.model != "resnet_cifar"
    base = experiment.RunConfig(model=args.model, width_multiplier=1.0, conv_bits=8,
                                dw_bits=8 if depthwise else None,
                                act_bits=schedule["act_bits"], dataset="cifar10_npz",
                                first_last_bits=schedule["first_last_bits"], seed=args.seed)
    if "recipe" in summary:  # the grid recorded its whole recipe
        recipe = training.Recipe(**summary["recipe"])
    else:
        recipe = training.Recipe(epochs=schedule["epochs"],
                                 warmup_epochs=schedule["warmup_epochs"],
                                 batch_size=schedule["batch_size"], learning_rate=schedule["lr"])
    tag = "_anneal" if args.anneal else ""
    result = search.halving_search(
        base, summary["budget_bits"], bits=summary["bits"], recipe=recipe,
        out_dir=os.path.join(out, f"halving{tag}_seed_{args.seed}"), rungs=rungs, eta=args.eta,
        datasets=datasets, verbose=2, tolerance=summary["size_tolerance"], anneal=args.anneal)
    report = {"model": args.model,
              "grid_summary": os.path.relpath(os.path.abspath(grid_path), os.path.abspath(out))
              if args.grid is None or args.out is None else os.path.basename(grid_path),
              "seed": args.seed, "rungs": rungs, "eta": result["eta_used"],
              "rung_steps": result["rung_steps"], "total_steps": result["total_steps"],
              "threads": os.environ.get("TF_NUM_INTRAOP_THREADS"),
              "cost_measure": "seconds of model.fit plus evaluation passes on the test set, "
                              "both for the search and for the grid (whose model.fit "
                              "validates after every epoch)",
              **compare(summary, result)}
    training.write_json(os.path.join(out, f"summary_halving{tag}_seed_{args.seed}.json"), report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
