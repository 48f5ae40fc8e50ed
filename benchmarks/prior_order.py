"""A sensitivity-based order against the 2-seed grids (issue 16, part 3). Trains nothing.

``tfq_pareto.search.prior_search`` orders the (conv_bits, dw_bits) pairs by the
paper's per-layer-type sensitivity (Table 1; ``search.sensitivity_order``: fewest
conv bits first, depthwise convs at 4 bits or more) and trains only the first
pair that reaches the budget. That one training is the grid's trial of the same
pair and seed (both are ``search.sweep`` at the budget: same width, same
``experiment.run``), so this script reads the committed grids instead of training
again, and reports for each:

* the pick (the first pair of the order that the grid could widen to its budget),
  its grid rank, the points below the grid's best and whether that is within the
  pooled seed std of the two;
* Spearman's rho between the order (its position as a score) and the grid's means,
  with the exact permutation p-value (``search.rank_agreement``);
* the cost: one training of the pick against the 2-seed grid, in optimizer steps
  (every training runs the same schedule, so ``1 / trainings``) and in seconds
  (the pick's mean seconds per seed against the grid's sum).

Grids: ``dual_precision_resnet_cifar`` and ``dual_precision_mobilenet_v2_cifar``
(3 epochs, 5,000 images) and the training floor's ResNet-20 grid (8 epochs, 20,000
images, read by ``halving_cifar.grid_from_floor``).

    python benchmarks/prior_order.py

Writes ``benchmarks/results/prior_order.json``.
"""

import argparse
import json
import os

from halving_cifar import grid_from_floor  # benchmarks/ is the script's folder

from tfq_pareto import search, training
from tfq_pareto.search.halving import pair_label

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

#: (name, summary file under results/, whether it is a training_floor.py summary)
GRIDS = (("ResNet-20, 3 epochs", "dual_precision_resnet_cifar/summary.json", False),
         ("MobileNetV2-CIFAR, 3 epochs", "dual_precision_mobilenet_v2_cifar/summary.json", False),
         ("ResNet-20, training floor, 8 epochs", "training_floor/summary.json", True))


def evaluate(summary):
    """The sensitivity order's pick on one grid summary (``dual_precision_cifar.py`` form)."""
    grid = {pair_label(g["conv_bits"], g["dw_bits"]): g for g in summary["grid"]
            if g["accuracy"] is not None}
    depthwise = any(g["dw_bits"] is not None for g in summary["grid"])
    order = [pair_label(*p) for p in search.sensitivity_order(summary["bits"], depthwise)]
    reachable = [p for p in order if p in grid]  # the grid records unreachable pairs as None
    pick = reachable[0]
    ranked = sorted(grid, key=lambda k: -grid[k]["accuracy"])
    best = grid[ranked[0]]
    spread = search.pooled_std(grid[pick]["accuracy_std"], best["accuracy_std"])
    agreement = search.rank_agreement({p: -i for i, p in enumerate(reachable)},
                                      {k: g["accuracy"] for k, g in grid.items()})
    trainings = sum(len(g["seeds"]) for g in grid.values())
    grid_seconds = sum(g["train_seconds"] for g in grid.values())
    below = best["accuracy"] - grid[pick]["accuracy"]
    return {
        "order": reachable,
        "skipped_unreachable": [p for p in order if p not in grid],
        "pick": pick,
        "pick_accuracy": grid[pick]["accuracy"],
        "pick_accuracy_std": grid[pick]["accuracy_std"],
        "grid_best": ranked[0],
        "grid_best_accuracy": best["accuracy"],
        "grid_ranking": ranked,
        "grid_rank_of_pick": 1 + ranked.index(pick),
        "points_below_grid_best": 100 * below,
        "pooled_std_points": None if spread is None else 100 * spread,
        "within_grid_spread": None if spread is None else below <= spread,
        "order_vs_grid_rank": {"spearman": agreement["spearman"],
                               "p_value": agreement["p_value"], "pairs": agreement["n"]},
        "grid_trainings": trainings,
        "steps_ratio_to_grid_all_seeds": 1 / trainings,
        "seconds_ratio_to_grid_all_seeds":
            grid[pick]["train_seconds"] / len(grid[pick]["seeds"]) / grid_seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(RESULTS, "prior_order.json"))
    args = parser.parse_args()
    rows = []
    for name, path, is_floor in GRIDS:
        with open(os.path.join(RESULTS, path), encoding="utf-8") as f:
            summary = json.load(f)
        if is_floor:
            summary = grid_from_floor(summary)
        rows.append({"setting": name, "grid_summary": path, **evaluate(summary)})
    report = {"strategy": "search.prior_search, top_k=1: the first reachable pair of "
                          "search.sensitivity_order, trained once at the budget",
              "depthwise_min_bits": search.prior.DEPTHWISE_MIN_BITS, "rows": rows}
    training.write_json(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
