"""Which of issue 14's training changes moves accuracy: one Figure 1 point, one change at a time.

ResNet-20 at 2 bits, width 0.344 (8.25 KiB, the middle budget of
``figure1_cifar.py``), the same schedule (10,000 CIFAR-10 images, 3 epochs, 1
warm-up, 4-bit activations), seeded. Variants:

* ``current``: the library as it is;
* ``tfmot_ranges``: every activation range starts at tfmot's [-6, 6] with a fixed
  EMA decay of 0.999 (``ActivationQuantizer(init_from_batch=False)``) instead of
  the first batch's range and the ramped decay;
* ``decoupled``: tf_keras's decoupled ``SGD(weight_decay=...)`` on the kernels
  instead of the L2 term before momentum (:class:`tfq_pareto.training.L2SGD`).

    python benchmarks/ablation_cifar.py            # ~10 minutes on 2 cores

Writes ``benchmarks/results/ablation_resnet20_2bit/summary.json``; resumable.
"""

import argparse
import os

from figure1_cifar import SHARED, load_cifar  # benchmarks/ is the script's folder

from tfq_pareto import experiment, keras, quantizers, training

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("current", "tfmot_ranges", "decoupled")


def _tfmot_ranges():
    original = quantizers.ActivationQuantizer.__init__

    def init(self, num_bits, non_negative=False, init_from_batch=True):  # pylint: disable=unused-argument
        original(self, num_bits, non_negative, False)

    quantizers.ActivationQuantizer.__init__ = init
    return lambda: setattr(quantizers.ActivationQuantizer, "__init__", original)


def _decoupled():
    original = training.make_optimizer

    def make_optimizer(recipe, steps_per_epoch):
        schedule = training.WarmupCosine(recipe.learning_rate,
                                         round(recipe.warmup_epochs * steps_per_epoch),
                                         recipe.epochs * steps_per_epoch)
        optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=recipe.momentum,
                                         nesterov=recipe.nesterov,
                                         weight_decay=recipe.weight_decay)
        optimizer.exclude_from_weight_decay(var_names=[training.NO_DECAY])
        return optimizer

    training.make_optimizer = make_optimizer
    return lambda: setattr(training, "make_optimizer", original)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=10_000)
    parser.add_argument("--data-dir", default=SHARED)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "ablation_resnet20_2bit"))
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants must be among {VARIANTS}; received {unknown}")
    datasets = load_cifar(args.train_images, args.data_dir)
    recipe = training.Recipe(warmup_epochs=1).with_epochs(args.epochs)
    config = experiment.RunConfig(model="resnet_cifar", depth=20, width_multiplier=0.3438, conv_bits=2,
                                  act_bits=4, dataset="cifar10_npz")
    results = {}
    for variant in variants:
        undo = {"tfmot_ranges": _tfmot_ranges, "decoupled": _decoupled}.get(variant,
                                                                              lambda: lambda: None)()
        try:
            keras.utils.set_random_seed(args.seed)
            record = experiment.run(config, recipe, datasets=datasets, verbose=0,
                                    out_dir=os.path.join(args.out, f"{variant}_{args.seed}"))
        finally:
            undo()
        results[variant] = record.accuracy
        training.write_json(os.path.join(args.out, "summary.json"), {
            "setting": {"model": "resnet20_cifar", "conv_bits": 2, "width": config.width_multiplier,
                        "size_kib": record.size_kib, "epochs": args.epochs,
                        "train_images": args.train_images, "seed": args.seed, "act_bits": 4},
            "accuracy": results})
        print(f"{variant}: {100 * record.accuracy:.2f}%", flush=True)


if __name__ == "__main__":
    main()
