"""Where in the schedule does the precisions' order settle? (issue 16, part 3)

A search that stops pairs early (successive halving, Hyperband) ranks them on
the accuracy they reach part-way through the schedule. This reads the per-epoch
test accuracies that a finished grid already logged (``history.csv`` of every
run of ``benchmarks/training_floor.py``: ResNet-20 at 1/2/4/8 bits, each widened
to one Eq. (6) size, 20,000 CIFAR-10 images, 8 epochs, 2 seeds, a grid whose
final order is beyond its seed spread) and asks, for a rung at the end of each
epoch, what such a search would have seen. It trains nothing.

For each epoch ``e`` and each seed (a one-seed search that happened to draw the
grid's own runs), and for the two seeds' mean (a two-seed search):

* the accuracies and the precision that leads;
* Spearman's rho against the grid's final means (``search.rank_agreement``);
* whether the leader is the grid's best, or within the pooled seed spread of it;
* the learning rate there as a fraction of its peak (``training.WarmupCosine``);
* the optimizer steps a one-rung halving search with the rung at ``e`` would
  train, against the 2-seed grid's: every pair to ``e``, the leader on to the
  end, ``(n * e + (E - e)) * seeds / (2 * n * E)``.

    python benchmarks/rung_ranking.py

Writes ``benchmarks/results/training_floor/rung_ranking.json``.
"""

import argparse
import json
import os

import numpy as np

from tfq_pareto import search, training

HERE = os.path.dirname(os.path.abspath(__file__))


def read_runs(floor_dir, summary):
    """``{(bits, seed): [test accuracy after each epoch]}`` from the runs' history.csv."""
    curves = {}
    for run in summary["runs"]:
        key = (run["conv_bits"], run["seed"])
        path = os.path.join(floor_dir, f"b{key[0]}_s{key[1]}", "history.csv")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: the floor's run {key} kept no per-epoch history")
        curves[key] = training.read_history(path)["val_accuracy"]
        if not np.isclose(curves[key][-1], run["accuracy_full"], atol=1e-4):
            raise ValueError(f"{path}: last epoch {curves[key][-1]:.4f} is not the run's "
                             f"accuracy {run['accuracy_full']:.4f}")
    return curves


def rung_table(summary, curves):
    """One row per (epoch, searched seeds): see the module docstring."""
    setting, recipe = summary["setting"], summary["setting"]["recipe"]
    bits = sorted({b for b, _ in curves})
    seeds = sorted({s for _, s in curves})
    epochs = recipe["epochs"]
    if {len(c) for c in curves.values()} != {epochs}:
        raise ValueError(f"every run must log {epochs} epochs; logged "
                         f"{sorted({len(c) for c in curves.values()})}")
    final = {b: float(np.mean([curves[(b, s)][-1] for s in seeds])) for b in bits}
    std = {b: float(np.std([curves[(b, s)][-1] for s in seeds], ddof=1)) for b in bits}
    best = max(bits, key=final.get)
    steps_per_epoch = -(-setting["train_images"] // recipe["batch_size"])
    schedule = training.WarmupCosine(1.0, round(recipe["warmup_epochs"] * steps_per_epoch),
                                     epochs * steps_per_epoch)
    rows = []
    for epoch in range(1, epochs + 1):
        lr = float(schedule(epoch * steps_per_epoch))
        for searched in [[s] for s in seeds] + [seeds]:
            seen = {b: float(np.mean([curves[(b, s)][epoch - 1] for s in searched]))
                    for b in bits}
            leader = max(bits, key=seen.get)
            agreement = search.rank_agreement(seen, final)
            spread = search.pooled_std(std[leader], std[best])
            n = len(bits)
            rows.append({
                "epoch": epoch, "fraction": epoch / epochs, "seeds": searched,
                "lr_fraction_of_peak": lr,
                "accuracies": {str(b): seen[b] for b in bits}, "leader": leader,
                "spearman": agreement["spearman"], "p_value": agreement["p_value"],
                "leader_is_grid_best": leader == best,
                "leader_points_below_best": 100 * (final[best] - final[leader]),
                "leader_within_spread": final[best] - final[leader] <= spread,
                "halving_steps_ratio_to_grid": (n * epoch + epochs - epoch) * len(searched)
                / (len(seeds) * n * epochs),
            })
    return {"grid_final_mean": {str(b): final[b] for b in bits},
            "grid_final_std": {str(b): std[b] for b in bits}, "grid_best": best,
            "steps_per_epoch": steps_per_epoch, "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floor", default=os.path.join(HERE, "results", "training_floor"),
                        help="a finished training_floor.py folder (summary.json, b*_s*/)")
    parser.add_argument("--out", default=None, help="default: <floor>/rung_ranking.json")
    args = parser.parse_args()
    path = os.path.join(args.floor, "summary.json")
    if not os.path.exists(path):
        parser.error(f"no training_floor summary at {path}: run benchmarks/training_floor.py")
    with open(path, encoding="utf-8") as f:
        summary = json.load(f)
    table = rung_table(summary, read_runs(args.floor, summary))
    training.write_json(args.out or os.path.join(args.floor, "rung_ranking.json"), table)
    print(f"grid best: {table['grid_best']}-bit; final means "
          + ", ".join(f"{b}: {100 * a:.2f}" for b, a in table["grid_final_mean"].items()))
    print(f"{'epoch':>5} {'seeds':>6} {'lr':>5} {'leader':>6} {'rho':>6} {'ok':>4} {'steps':>6}")
    for row in table["rows"]:
        rho = "-" if row["spearman"] is None else f"{row['spearman']:+.2f}"
        print(f"{row['epoch']:>5} {','.join(map(str, row['seeds'])):>6} "
              f"{row['lr_fraction_of_peak']:>5.2f} {row['leader']:>6} {rho:>6} "
              f"{'yes' if row['leader_within_spread'] else 'no':>4} "
              f"{row['halving_steps_ratio_to_grid']:>6.2f}")


if __name__ == "__main__":
    main()
