"""What costs the training-quality floor (issue 14, item 9): one change at a time, 8 epochs.

The floor's setting (``training_floor.py``: ResNet-20 at the Eq. (6) size of the
4-bit 0.5x model, the 20,000-image CIFAR-10 subset, 8 epochs with 1 warm-up,
8-bit activations, the Appendix A recipe otherwise), at one precision, trained
once per variant and seed. Variants (``+`` combines them, e.g. ``float+noaug``):

* ``current``: the library as it is (since issue 14's fix, convs start as PyTorch's
  ``Conv2d`` default, see ``tfq_pareto.models._layers``);
* ``he_normal``: convs initialised with ``he_normal``, the library's init before
  that fix (the floor's ``benchmarks/results/training_floor`` runs used it);
* ``float``: no quantizer at all (``apply`` skipped): what the 8-bit model would
  reach if quantization cost nothing, so the gap to the reference that remains
  is the training pipeline's, not the quantizers';
* ``tfmot_ranges``: activation ranges start at tfmot's [-6, 6] with a fixed EMA
  decay of 0.999 instead of the first batch's range;
* ``noaug``: no augmentation (no crop, no flip);
* ``reflect``: the 4-pixel crop pads by reflection instead of with zeros;
* ``glorot``: convs initialised with tf_keras's default ``glorot_uniform``
  instead of ``he_normal``;
* ``torch_init``: convs initialised as PyTorch's ``Conv2d`` default (the paper's
  framework): ``kaiming_uniform(a=sqrt(5))``, i.e. uniform in +-1/sqrt(fan_in),
  variance 1 / (3 fan_in), a sixth of ``he_normal``'s (as ``current`` now does for
  ResNet-20, through tf_keras's ``VarianceScaling`` here);
* ``bn099``: BatchNormalization momentum 0.99 (tf_keras's default) instead of 0.9;
* ``decoupled``: tf_keras's decoupled ``SGD(weight_decay=...)`` on every weight
  instead of the L2 term on kernels (``training.L2SGD``).

    python benchmarks/floor_ablation.py --variants he_normal,torch_init --bits 8 --seeds 0,1

Accuracy on the full test set and on every other test image (the reference's
5,000). Writes ``benchmarks/results/training_floor/ablation/summary.json`` after
every run; resumable (a finished run is not retrained).
"""

import argparse
import dataclasses
import json
import os

import numpy as np

import tfq_pareto
from figure1_cifar import SHARED, load_cifar  # benchmarks/ is the script's folder
from training_floor import REFERENCE, _every_other
from tfq_pareto import data as data_lib
from tfq_pareto import experiment, keras, quantizers, training
from tfq_pareto.backend import tf

HERE = os.path.dirname(os.path.abspath(__file__))

#: Widths of the floor's runs (``benchmarks/results/training_floor/summary.json``):
#: each precision at the Eq. (6) size of the 4-bit 0.5x model.
WIDTHS = {1: 1.0, 2: 0.7031, 4: 0.5, 8: 0.3555}


def _patch(obj, name, value, undo):
    undo.append((obj, name, getattr(obj, name)))
    setattr(obj, name, value)


def _with_kwarg(cls, key, value, undo):
    original = cls.__init__

    def init(self, *args, **kwargs):
        kwargs[key] = value
        original(self, *args, **kwargs)

    _patch(cls, "__init__", init, undo)


def _reflect_crop(image, pad, flip, seed):
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    image = tf.image.stateless_random_crop(padded, tf.shape(image), crop_seed)
    return tf.image.stateless_random_flip_left_right(image, flip_seed) if flip else image


def _apply_variant(name, undo):
    """Monkeypatches the library for one variant; ``undo`` collects what to restore."""
    if name == "current":
        return
    if name == "float":
        _patch(experiment, "apply", lambda model, **kwargs: model, undo)
        _patch(experiment, "model_size", lambda model: 0, undo)
    elif name == "tfmot_ranges":
        original = quantizers.ActivationQuantizer.__init__

        def init(self, num_bits, non_negative=False, init_from_batch=True):  # noqa: ARG001
            original(self, num_bits, non_negative, False)

        _patch(quantizers.ActivationQuantizer, "__init__", init, undo)
    elif name == "noaug":
        pipeline = data_lib.pipeline

        def no_augmentation(dataset, info, **kwargs):
            return pipeline(dataset, info, **{**kwargs, "augmentation": None})

        _patch(data_lib, "pipeline", no_augmentation, undo)
    elif name == "reflect":
        _patch(data_lib, "_crop", _reflect_crop, undo)
    elif name == "he_normal":
        _with_kwarg(keras.layers.Conv2D, "kernel_initializer", "he_normal", undo)
    elif name == "glorot":
        _with_kwarg(keras.layers.Conv2D, "kernel_initializer", "glorot_uniform", undo)
    elif name == "torch_init":
        # A config, not an instance: each layer gets its own (an unseeded instance shared
        # by layers would give same-shaped kernels the same values).
        _with_kwarg(keras.layers.Conv2D, "kernel_initializer", {
            "class_name": "VarianceScaling",
            "config": {"scale": 1 / 3, "mode": "fan_in", "distribution": "uniform"}}, undo)
    elif name == "bn099":
        _with_kwarg(keras.layers.BatchNormalization, "momentum", 0.99, undo)
    elif name == "decoupled":
        def make_optimizer(recipe, steps_per_epoch):
            schedule = training.WarmupCosine(recipe.learning_rate,
                                             round(recipe.warmup_epochs * steps_per_epoch),
                                             recipe.epochs * steps_per_epoch)
            return keras.optimizers.SGD(learning_rate=schedule, momentum=recipe.momentum,
                                        nesterov=recipe.nesterov,
                                        weight_decay=recipe.weight_decay)

        _patch(training, "make_optimizer", make_optimizer, undo)
    else:
        raise ValueError(name)


def _per_variant(runs):
    """Mean and sample std (None for one seed) in points per (variant, bits), both test sets."""
    groups = {}
    for run in runs:
        groups.setdefault((run["variant"], run["conv_bits"]), []).append(run)
    rows = []
    for (variant, bits), mine in sorted(groups.items()):
        row = {"variant": variant, "conv_bits": bits, "seeds": len(mine)}
        for key in ("accuracy_full", "accuracy_every_other"):
            values = [100 * r[key] for r in mine]
            row[f"{key}_mean"] = float(np.mean(values))
            row[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        rows.append(row)
    return rows


def _read_runs(path):
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return {(r["variant"], r["conv_bits"], r["seed"]): r for r in json.load(f)["runs"]}


VARIANTS = ("current", "he_normal", "float", "tfmot_ranges", "noaug", "reflect", "glorot",
            "torch_init", "bn099", "decoupled")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="he_normal,torch_init")
    parser.add_argument("--bits", type=int, default=8, choices=sorted(WIDTHS))
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-images", type=int, default=20_000)
    parser.add_argument("--data-dir", default=SHARED)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "training_floor",
                                                      "ablation"))
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [p for v in variants for p in v.split("+") if p not in VARIANTS]
    if unknown:
        parser.error(f"--variants must combine {VARIANTS} with '+'; received {unknown}")
    seeds = [int(s) for s in args.seeds.split(",")]
    os.makedirs(args.out, exist_ok=True)
    summary_path = os.path.join(args.out, "summary.json")
    datasets = load_cifar(args.train_images, args.data_dir)
    recipe = dataclasses.replace(training.CIFAR, epochs=args.epochs, warmup_epochs=1, act_bits=8)
    half_test = _every_other(datasets[1], datasets[2], recipe.batch_size)
    for seed in seeds:
        for variant in variants:
            out = os.path.join(args.out, f"{variant}_b{args.bits}_s{seed}")
            config = experiment.RunConfig(model="resnet_cifar", depth=20, conv_bits=args.bits,
                                          dataset="cifar10_npz", seed=seed,
                                          width_multiplier=WIDTHS[args.bits])
            undo = []
            try:
                for part in variant.split("+"):
                    _apply_variant(part, undo)
                record = experiment.run(config, recipe, out_dir=out, datasets=datasets, verbose=2)
            finally:
                for obj, name, value in reversed(undo):
                    setattr(obj, name, value)
            model = tfq_pareto.load_model(os.path.join(out, experiment.MODEL_FILE), compile=False)
            model.compile(metrics=[keras.metrics.SparseCategoricalAccuracy()])
            half = float(model.evaluate(half_test, verbose=0)[-1])
            runs = _read_runs(summary_path)  # re-read: another process may have added runs
            runs[(variant, args.bits, seed)] = {
                "variant": variant, "conv_bits": args.bits, "seed": seed,
                "width": config.width_multiplier, "accuracy_full": record.accuracy,
                "accuracy_every_other": half, "train_seconds": record.train_seconds}
            training.write_json(summary_path, {
                "setting": {"model": "resnet20_cifar", "train_images": args.train_images,
                            "epochs": args.epochs, "warmup_epochs": 1, "act_bits": 8,
                            "widths": WIDTHS, "recipe": dataclasses.asdict(recipe)},
                "reference": REFERENCE, "per_variant": _per_variant(runs.values()),
                "runs": sorted(runs.values(), key=lambda r: (r["conv_bits"], r["seed"],
                                                             r["variant"]))})
            print(f"{variant} b{args.bits} s{seed}: full {100 * record.accuracy:.2f}%, "
                  f"every other {100 * half:.2f}% (reference {REFERENCE[args.bits]}%)",
                  flush=True)


if __name__ == "__main__":
    main()
