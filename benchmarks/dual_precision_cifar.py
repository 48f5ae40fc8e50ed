"""DualPrecision vs 8-bit at equal size, and what the search for the pair costs.

On real CIFAR-10 (``../shared/data``), MobileNetV2-CIFAR (``--model``: any family
with depthwise convs; VGG-11 needs ``--variant``, Table 6; ``resnet_cifar``,
ResNet-20 without depthwise convs, makes the grid one of conv bits only, the
second setting of issue 16's search-cost table), activations 4-bit:

1. The grid: every (conv_bits, dw_bits) of ``--bits`` x ``--bits`` widened to
   one Eq. (6) budget (the size of the 8-bit model at ``--budget-width``) and
   trained ``--seeds`` times (``tfq_pareto.search.dual_precision_search``).
   The best pair's mean accuracy minus the 8-bit (8/8) model's is the
   DualPrecision gain; it is beyond the seed spread when it exceeds the pooled
   standard deviation of the two.
2. The low-width proxy (the first stage of ``tfq_pareto.search.proxy_search``):
   the same grid at ``--proxy-fraction`` of the budget for ``--proxy-epochs``
   epochs, ``--proxy-seeds`` trainings per pair. Its ranking against the grid's
   (mean per pair) is Spearman's rho over every pair both trained
   (``tfq_pareto.search.rank_agreement``). For each k of ``--top-k``, its best
   k pairs that reach the budget are what ``proxy_search`` would train at the
   budget; those are the same configurations, trained with the same recipe, as
   the grid's trials of those pairs, so the grid's trials stand for them
   (training them again would add run-to-run noise to the comparison, and hours
   to a real run). A strategy's cost is the proxy grid's training seconds plus
   one training of each final pair (the grid's seconds per seed), against one
   training of every grid pair; its pick is right when it is the grid's best
   pair or within the grid's seed spread of it (mean difference below the
   pooled standard deviation).

    python benchmarks/dual_precision_cifar.py                 # ~2 hours on 2 cores
    python benchmarks/dual_precision_cifar.py --model resnet_cifar --bits 1,2,4,8
    python benchmarks/dual_precision_cifar.py --model vgg11 --variant B

Writes ``benchmarks/results/dual_precision_<model>[<variant>]/summary.json``
(and ``grid/``, ``proxy/`` with every trial). Resumable: a rerun skips
finished trials; ``--proxy-dir NAME`` with other proxy settings reuses the grid
and writes ``summary_NAME.json``.

On a machine with several cores, the seeds can train in parallel (one process
each, one thread each: ``TF_NUM_INTRAOP_THREADS=1``); ``--seed-grids`` keeps
one 1-seed grid per seed (``grid_seed_<s>/``) and combines them per pair:

    python benchmarks/dual_precision_cifar.py --seeds 2 --only-seed 0 &&
        python benchmarks/dual_precision_cifar.py --only-proxy &
    python benchmarks/dual_precision_cifar.py --seeds 2 --only-seed 1 &
    wait; python benchmarks/dual_precision_cifar.py --seeds 2 --seed-grids  # the summary
"""

import argparse
import dataclasses
import json
import os

from figure1_cifar import SHARED, check_only_seed, load_cifar  # benchmarks/ is the script's folder

from tfq_pareto import experiment, records, search, training

HERE = os.path.dirname(os.path.abspath(__file__))


def _pair(record):
    return [record.conv_bits, record.dw_bits]


def _pair_key(record):
    return tuple(_pair(record))


def _trainings(record):
    """How many trainings (seeds) a record's ``train_seconds`` sums over."""
    return len(record.seeds) if record.seeds else 1


#: Families with depthwise convs (vgg11 with a variant), and ResNet-20 (conv bits only).
MODELS = ("mobilenet_v2_cifar", "inv_resnet26", "vgg11", "resnet_cifar")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2_cifar", choices=MODELS)
    parser.add_argument("--variant", choices=("A", "B", "C"), default=None,
                        help="vgg11's depthwise-separable variant (Table 6); vgg11 only")
    parser.add_argument("--bits", default="1,4,8", help="the precision set B of the grid")
    parser.add_argument("--budget-width", type=float, default=0.2,
                        help="budget = Eq. (6) size of the 8-bit model at this width")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--warmup-epochs", type=float, default=0.25)
    parser.add_argument("--train-images", type=int, default=5_000)
    parser.add_argument("--test-images", type=int, default=None,
                        help="evaluate on the first N test images (default: all 10,000)")
    parser.add_argument("--seeds", type=int, default=2,
                        help="trainings per grid pair (seeds 0..N-1): mean and spread")
    parser.add_argument("--proxy-fraction", type=float, default=0.25)
    parser.add_argument("--proxy-epochs", type=int, default=1)
    parser.add_argument("--proxy-seeds", type=int, default=1,
                        help="trainings per proxy pair (a real proxy_search's seeds)")
    parser.add_argument("--proxy-dir", default="proxy",
                        help="folder of the proxy grid under --out; another name tries another "
                             "proxy against the same (resumed, not retrained) grid and writes "
                             "summary_<name>.json")
    parser.add_argument("--top-k", default="1,2",
                        help="comma-separated: proxy pairs trained at the budget, one run each")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="relative size tolerance when widening a pair to the budget "
                             "(channel counts are integers, so some sizes jump)")
    parser.add_argument("--seed-grids", action="store_true",
                        help="the grid as one 1-seed grid per seed, grid_seed_<s>/ (trained or "
                             "resumed in turn), combined per pair; --only-seed fills them in "
                             "parallel processes")
    parser.add_argument("--only-seed", type=int, default=None,
                        help="train seed S's grid alone (grid_seed_S/, 0 <= S < --seeds) and "
                             "stop; implies --seed-grids")
    parser.add_argument("--only-proxy", action="store_true",
                        help="train the proxy grid alone and stop (beside --only-seed runs)")
    parser.add_argument("--data-dir", default=SHARED)
    parser.add_argument("--out", default=None,
                        help="default: benchmarks/results/dual_precision_<model>[<variant>]")
    args = parser.parse_args()
    if (args.model == "vgg11") != (args.variant is not None):
        parser.error(f"--variant is needed with --model vgg11 and only there (vgg11 without a "
                     f"variant has no depthwise convs); received --model {args.model} "
                     f"--variant {args.variant}")
    if args.seeds < 1 or args.proxy_seeds < 1:
        parser.error(f"--seeds and --proxy-seeds must be >= 1; received {args.seeds} and "
                     f"{args.proxy_seeds}")
    check_only_seed(parser, args.only_seed, args.seeds)
    if args.only_seed is not None and args.only_proxy:
        parser.error("--only-seed and --only-proxy each train one part alone: give one of them")
    name = args.model + (args.variant or "")
    args.out = args.out or os.path.join(HERE, "results", f"dual_precision_{name}")
    bits = [int(b) for b in args.bits.split(",")]
    os.makedirs(args.out, exist_ok=True)

    datasets = load_cifar(args.train_images, args.data_dir, args.test_images)
    info = datasets.info
    depthwise = args.model != "resnet_cifar"
    base = experiment.RunConfig(model=args.model, variant=args.variant, width_multiplier=1.0,
                                conv_bits=8, dw_bits=8 if depthwise else None,
                                act_bits=4, dataset="cifar10_npz")
    budget = search.budget_of(base, info, width_multiplier=args.budget_width, conv_bits=8,
                              dw_bits=8 if depthwise else None)
    recipe = training.Recipe(epochs=args.epochs, warmup_epochs=args.warmup_epochs,
                             batch_size=128)
    proxy_recipe = training.Recipe(warmup_epochs=args.warmup_epochs,
                                   batch_size=128).with_epochs(args.proxy_epochs)

    def run_grid(config, budget_bits, grid_recipe, folder, seeds):
        return search.dual_precision_search(config, budget_bits, bits=bits, recipe=grid_recipe,
                                            out_dir=os.path.join(args.out, folder),
                                            datasets=datasets, verbose=2,
                                            tolerance=args.tolerance, seeds=seeds)

    def train_proxy():
        return run_grid(base, budget * args.proxy_fraction, proxy_recipe, args.proxy_dir,
                        args.proxy_seeds)

    def seed_grid(seed):
        return run_grid(dataclasses.replace(base, seed=seed), budget, recipe,
                        f"grid_seed_{seed}", 1)

    if args.only_proxy:
        train_proxy()
        return
    if args.only_seed is not None:
        seed_grid(args.only_seed)
        return
    if args.seed_grids:
        grid_records = records.combine_seed_runs(
            [seed_grid(s)["records"] for s in range(args.seeds)], key=_pair_key)
    else:
        grid_records = run_grid(base, budget, recipe, "grid", args.seeds)["records"]
    done = [r for r in grid_records if r.done]
    eight = next((r for r in done if r.conv_bits == 8 and r.dw_bits in (None, 8)), None)
    best = max(done, key=lambda r: r.accuracy) if done else None
    # The grid as a search trains every pair once: its cost is one seed's seconds per pair.
    per_training = {tuple(_pair(r)): r.train_seconds / _trainings(r) for r in done}
    grid_seconds = sum(per_training.values())

    mean_trial = grid_seconds / len(done)
    ranked_grid = [_pair(r) for r in sorted(done, key=lambda r: r.accuracy, reverse=True)]
    proxy = train_proxy()
    proxy_done = sorted((r for r in proxy["records"] if r.done), key=lambda r: r.accuracy,
                        reverse=True)
    proxy_ranking = [_pair(r) for r in proxy_done]
    proxy_seconds = sum(r.train_seconds for r in proxy_done)
    agreement = search.rank_agreement({tuple(_pair(r)): r.accuracy for r in proxy_done},
                                      {tuple(_pair(r)): r.accuracy for r in done})
    at_budget = {tuple(_pair(r)): r for r in done}  # pairs the budget takes, trained
    strategies = []
    for k in [int(v) for v in args.top_k.split(",")]:
        finals = [at_budget[tuple(p)] for p in proxy_ranking if tuple(p) in at_budget][:k]
        pick = max(finals, key=lambda r: r.accuracy) if finals else None
        final_seconds = sum(per_training[tuple(_pair(r))] for r in finals)
        seconds = proxy_seconds + final_seconds
        spread = None if pick is None or best is None else search.pooled_std(pick.accuracy_std,
                                                                   best.accuracy_std)
        strategies.append({
            "top_k": k,
            "proxy": {"fraction": args.proxy_fraction, "epochs": args.proxy_epochs,
                      "seeds": args.proxy_seeds, "trials": len(proxy["records"]),
                      "train_seconds": proxy_seconds},
            "final_pairs": [_pair(r) for r in finals],
            "final_trainings": len(finals),
            "final_train_seconds": final_seconds,
            "train_seconds": seconds,
            "in_full_trainings": seconds / mean_trial,
            "ratio_to_grid": seconds / grid_seconds,
            "proxy_ranking": proxy_ranking,
            "pick": None if pick is None else {
                "conv_bits": pick.conv_bits, "dw_bits": pick.dw_bits,
                "width": pick.width_multiplier, "size_kib": pick.size_kib,
                "accuracy": pick.accuracy, "accuracy_std": pick.accuracy_std},
            "same_pair_as_grid": pick is not None and best is not None
            and _pair(pick) == _pair(best),
            "grid_rank_of_pick": None if pick is None else 1 + ranked_grid.index(_pair(pick)),
            "points_below_grid_best": None if pick is None or best is None
            else 100 * (best.accuracy - pick.accuracy),
            "within_grid_spread": None if spread is None
            else best.accuracy - pick.accuracy <= spread,
        })

    def short(r):
        return None if r is None else {
            "conv_bits": r.conv_bits, "dw_bits": r.dw_bits, "width": r.width_multiplier,
            "size_bits": r.size_bits, "size_kib": r.size_kib, "accuracy": r.accuracy,
            "accuracy_std": r.accuracy_std, "accuracies": r.accuracies, "seeds": r.seeds,
            "train_seconds": r.train_seconds}

    gain_spread = None if eight is None or best is None else search.pooled_std(best.accuracy_std,
                                                                     eight.accuracy_std)
    summary = {
        "model": name,
        "schedule": {"epochs": args.epochs, "warmup_epochs": args.warmup_epochs,
                     "train_images": info.num_train, "test_images": info.num_test,
                     "act_bits": 4, "first_last_bits": 8, "batch_size": 128, "lr": 0.05,
                     "seeds": args.seeds},
        "budget_bits": budget, "budget_kib": budget / 8192,
        "budget": f"Eq. (6) size of the 8-bit model at width {args.budget_width}",
        "size_tolerance": args.tolerance,
        "bits": bits,
        "grid": [short(r) for r in grid_records],
        "grid_layout": "one 1-seed grid per seed (grid_seed_<s>/), combined per pair"
        if args.seed_grids else f"one grid (grid/), {args.seeds} seed(s) per trial",
        "grid_failed": [{"pair": _pair(r), "message": ((r.message or "").strip()
                                                       .splitlines() or [""])[-1]}
                        for r in grid_records if not r.done],
        "best_pair": short(best),
        "eight_bit": short(eight),
        "gain_over_8bit_points": None if eight is None or best is None
        else 100 * (best.accuracy - eight.accuracy),
        "gain_pooled_std_points": None if gain_spread is None else 100 * gain_spread,
        "gain_beyond_spread": None if gain_spread is None
        else best.accuracy - eight.accuracy > gain_spread,
        "search_cost": {
            "measure": "wall-clock seconds of model.fit (each epoch's validation pass over "
                       "the test set included, the final evaluation excluded); the grid and "
                       "a final pair count one training (one seed) each",
            "proxy_finals": "the grid's trials of the proxy's top-k pairs (same configuration "
                            "and recipe as proxy_search's final trainings)",
            "grid_trainings": len(done),
            "grid_train_seconds": grid_seconds,
            "grid_ranking": ranked_grid,
            "proxy_vs_grid_rank": {"spearman": agreement["spearman"],
                                   "p_value": agreement["p_value"],
                                   "p_value_method": agreement["p_value_method"],
                                   "pairs": agreement["n"]},
            "proxy_accuracies": {f"{c}/{d}": a for (c, d), a in
                                 ((tuple(_pair(r)), r.accuracy) for r in proxy_done)},
            "proxy_search": strategies,
        },
    }
    summary_name = ("summary.json" if args.proxy_dir == "proxy"
                    else f"summary_{args.proxy_dir}.json")
    training.write_json(os.path.join(args.out, summary_name), summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
