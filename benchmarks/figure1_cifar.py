"""Figure 1 at small scale on real CIFAR-10: accuracy vs Eq. (6) size at 4, 2 and 1 bits.

Runs ``tfq_pareto.search.sweep`` on ``../shared/data/cifar10_train_20k.npz`` (a
subset of ``--train-images``) and ``cifar10_test.npz``: every precision is widened
to each size budget, the budgets being the Eq. (6) sizes of the 4-bit model at
``--budget-widths``. Also trains the cheapest point ``--repeats`` times more to
show the seed-to-seed spread. With ``--seeds N`` every point is trained with seeds
0..N-1, as one 1-seed sweep per seed (``sweep_seed_<s>/``; ``--only-seed S`` trains
one of them alone, so that each seed can run in its own process), combined per
point: mean, every seed's value, standard deviation, and dominance also judged
against the pooled seed spread. The schedule is short enough for 2 CPU cores and
is stated in the result file; accuracies are far below the paper's.

    python benchmarks/figure1_cifar.py --model resnet_cifar            # ~15 minutes
    python benchmarks/figure1_cifar.py --model resnet_cifar --seeds 2 --repeats 0
    python benchmarks/figure1_cifar.py --model mobilenet_v2_cifar --budget-widths 0.2,0.3,0.4 \
        --train-images 5000 --warmup-epochs 0.25 --tolerance 0.05 --seeds 2 --repeats 0
        # ~2 hours with --only-seed 0 and --only-seed 1 side by side, then the combine

Writes ``benchmarks/results/figure1_<model>/``: summary.json (records, Pareto front,
dominance matrices, the cheapest point's runs), the sweep folder(s) and, with
several seeds, pareto.png of the means with error bars. Resumable: a rerun skips
finished trials.
"""

import argparse
import dataclasses
import json
import os

import numpy as np

from tfq_pareto import data as data_lib
from tfq_pareto import experiment, records, search, training
from tfq_pareto.search import plots

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "data")


def load_cifar(train_images, data_dir, test_images=None):
    """(train, test, info): the first ``train_images`` of the training file (stored in a
    random order, so these are a uniform sample) and ``test_images`` of the test file
    (default all), drawn uniformly: the test file is stored class by class, so its
    first images would be one or two classes."""
    train_path = os.path.join(data_dir, "cifar10_train_20k.npz")
    test_path = os.path.join(data_dir, "cifar10_test.npz")
    train, test, info = data_lib.load(f"npz:{train_path},{test_path}")
    train = train.take(train_images)
    info = dataclasses.replace(info, num_train=min(train_images, info.num_train))
    if test_images:
        test = data_lib.sample(test, test_images)
        info = dataclasses.replace(info, num_test=min(test_images, info.num_test))
    return data_lib.Datasets(train, test, info)


def check_only_seed(parser, only_seed, seeds):
    """Refuses ``--only-seed`` outside 0..seeds-1 (a parser error, before any work)."""
    if only_seed is not None and not 0 <= only_seed < seeds:
        parser.error(f"--only-seed must be one of 0..{seeds - 1} (--seeds {seeds}); "
                     f"received {only_seed}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet_cifar", choices=["resnet_cifar", "mobilenet_v2_cifar"])
    parser.add_argument("--bits", default="4,2,1")
    parser.add_argument("--budget-widths", default="0.125,0.25,0.5",
                        help="budgets = Eq. (6) size of the 4-bit model at these widths")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--warmup-epochs", type=float, default=None,
                        help="linear warm-up epochs (default: 1, or 0 for a 1-epoch schedule)")
    parser.add_argument("--train-images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2,
                        help="extra runs of the cheapest point (seeds --seeds, --seeds + 1, ...)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="trainings per point (seeds 0..N-1); above 1, one sweep per seed "
                             "in sweep_seed_<s>/, combined per point")
    parser.add_argument("--only-seed", type=int, default=None,
                        help="train seed S's sweep alone (0 <= S < --seeds) and stop: run one "
                             "process per seed, then once without it to combine them")
    parser.add_argument("--tolerance", type=float, default=0.03,
                        help="relative size tolerance when widening to a budget (channel counts "
                             "are integers, so some sizes jump; MobileNetV2 needs 0.05)")
    parser.add_argument("--data-dir", default=SHARED)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.seeds < 1 or args.repeats < 0:
        parser.error(f"--seeds must be >= 1 and --repeats >= 0; received {args.seeds}, "
                     f"{args.repeats}")
    check_only_seed(parser, args.only_seed, args.seeds)
    out = args.out or os.path.join(HERE, "results", f"figure1_{args.model}")
    os.makedirs(out, exist_ok=True)

    datasets = load_cifar(args.train_images, args.data_dir)
    info = datasets.info
    bits = [int(b) for b in args.bits.split(",")]
    widths = [float(w) for w in args.budget_widths.split(",")]
    base = experiment.RunConfig(model=args.model, depth=20, width_multiplier=1.0, conv_bits=4,
                                act_bits=4, dataset="cifar10_npz")
    budgets = [search.budget_of(base, info, width_multiplier=w, conv_bits=4, dw_bits=4) for w in widths]
    warmup = min(1, args.epochs - 1) if args.warmup_epochs is None else args.warmup_epochs
    recipe = training.Recipe(epochs=args.epochs, warmup_epochs=warmup, batch_size=128)

    def seed_sweep(seed, folder):
        return search.sweep(dataclasses.replace(base, seed=seed), bits=bits, budgets_bits=budgets,
                            recipe=recipe, out_dir=os.path.join(out, folder), datasets=datasets,
                            verbose=2, tolerance=args.tolerance)

    if args.only_seed is not None:
        seed_sweep(args.only_seed, f"sweep_seed_{args.only_seed}")
        return
    if args.seeds == 1:
        result = seed_sweep(None, "sweep")
    else:
        result = search.summarize_sweep(records.combine_seed_runs(
            [seed_sweep(s, f"sweep_seed_{s}")["records"] for s in range(args.seeds)]))
        plots.plot_pareto(result["records"], os.path.join(out, "pareto.png"),
                          title=f"{args.model}: mean of {args.seeds} seeds (bars: 1 std)")
    done = [r for r in result["records"] if r.done]
    cheapest = min(done, key=lambda r: r.size_bits)
    repeats = list(cheapest.accuracies or [cheapest.accuracy])
    for k in range(args.repeats):
        config = dataclasses.replace(base, conv_bits=cheapest.conv_bits, dw_bits=cheapest.dw_bits,
                                     width_multiplier=cheapest.width_multiplier,
                                     seed=args.seeds + k)  # the sweep's own runs: 0..seeds-1
        record = experiment.run(config, recipe, out_dir=os.path.join(out, f"repeat_{k}"),
                                datasets=datasets, verbose=0)
        repeats.append(record.accuracy)
    summary = {
        "model": args.model, "schedule": {"epochs": args.epochs, "warmup_epochs": warmup,
                                          "train_images": info.num_train,
                                          "test_images": "10,000 (full CIFAR-10 test)",
                                          "act_bits": 4, "batch_size": 128, "lr": 0.05},
        "budgets_bits": budgets, "budget_widths_4bit": widths, "size_tolerance": args.tolerance,
        "seeds": args.seeds,
        "records": [{"conv_bits": r.conv_bits, "width": r.width_multiplier,
                     "size_bits": r.size_bits, "size_kib": r.size_kib, "accuracy": r.accuracy,
                     "accuracies": r.accuracies or [r.accuracy], "accuracy_std": r.accuracy_std}
                    for r in done],
        "front": [(r.conv_bits, r.size_kib) for r in result["front"]],
        "dominance": result["dominance"],
        "dominance_beyond_spread": result["dominance_beyond_spread"],
        "cheapest_point_repeats": {"conv_bits": cheapest.conv_bits, "width": cheapest.width_multiplier,
                                   "accuracies": repeats, "spread": max(repeats) - min(repeats)},
    }
    training.write_json(os.path.join(out, "summary.json"), summary)
    print(json.dumps(summary, indent=1))
    print(f"mean of the cheapest point over {len(repeats)} runs: {np.mean(repeats):.4f}")


if __name__ == "__main__":
    main()
