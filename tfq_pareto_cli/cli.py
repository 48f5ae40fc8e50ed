"""The ``tfq-pareto`` command line: a thin layer over the public API.

    tfq-pareto demo
    tfq-pareto train --model resnet_cifar --depth 20 --width-multiplier 2 --conv-bits 1 --act-bits 4 \
        --dataset cifar100 --epochs 300 --out runs/r20_w2_1bit
    tfq-pareto size --model resnet_cifar --depth 20 --width-multiplier 1.5 --conv-bits 1
    tfq-pareto export runs/r20_w2_1bit/model.h5 --data digits --out export/
"""

import argparse
import sys

from tfq_pareto import models
from tfq_pareto.models import FAMILIES, RESNET_CIFAR_DEPTHS, VGG11_VARIANTS
from tfq_pareto.search.halving import DEFAULT_RUNGS, check_anneal, check_rungs


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``tfq-pareto train: error: ... (see --help)``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _checked(convert, ok, message):
    """An argparse type: ``convert(text)``, refused with ``message`` unless ``ok(value)``."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{message}; received {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{message}; received {text!r}")
        return value

    return parse


_bits = _checked(int, lambda v: 1 <= v <= 8, "bits must be an int in 1..8")
_positive = _checked(float, lambda v: v > 0, "expected a number > 0")
_epochs = _checked(int, lambda v: v >= 1, "expected an int >= 1")
_non_negative = _checked(float, lambda v: v >= 0, "expected a number >= 0")
_count = _checked(int, lambda v: v >= 0, "expected an int >= 0")
_fraction = _checked(float, lambda v: 0 < v <= 1, "expected a number in (0, 1]")
_eta = _checked(int, lambda v: v >= 2, "expected an int >= 2")


def family_builder(model, *, depth=20, variant=None, num_classes=None):
    """``builder(width_multiplier)`` for the command line's ``--model`` and its options."""
    return models.family_builder(model, depth=depth if model == "resnet_cifar" else None,
                                 variant=variant if model == "vgg11" else None,
                                 num_classes=num_classes)


def _add_model_arguments(parser):
    parser.add_argument("--model", required=True, choices=sorted(FAMILIES),
                        help="model family (tfq_pareto.models)")
    parser.add_argument("--depth", type=int, default=20, choices=RESNET_CIFAR_DEPTHS,
                        help="depth of resnet_cifar (default 20)")
    parser.add_argument("--variant", default=None, choices=[v for v in VGG11_VARIANTS if v],
                        help="vgg11 variant with depthwise-separable convs (Table 6)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classifier outputs (default: the family's, 100 CIFAR / 1000 ImageNet)")


def _add_precision_arguments(parser):
    parser.add_argument("--width-multiplier", "--width", dest="width_multiplier", type=_positive,
                        default=1.0, help="width multiplier: every channel count times it "
                        "(default 1.0; --width is the short form)")
    parser.add_argument("--conv-bits", type=_bits, required=True,
                        help="weight bits of standard convs and dense layers, 1..8")
    parser.add_argument("--dw-bits", type=_bits, default=None,
                        help="weight bits of depthwise convs, 1..8 (models with depthwise convs "
                        "only; default: --conv-bits)")
    parser.add_argument("--first-last-bits", type=_bits, default=8,
                        help="weight bits of the first and last layer, 1..8 (default 8)")


def _size(args, out):
    from tfq_pareto import summary  # pylint: disable=import-outside-toplevel
    from tfq_pareto.width import width_for_size  # pylint: disable=import-outside-toplevel

    builder = family_builder(args.model, depth=args.depth, variant=args.variant,
                             num_classes=args.num_classes)
    width = args.width_multiplier
    if args.target_kib is not None:
        width = width_for_size(builder, args.target_kib * 8 * 1024, conv_bits=args.conv_bits,
                               dw_bits=args.dw_bits, first_last_bits=args.first_last_bits,
                               tolerance=args.tolerance)
        print(f"width multiplier for {args.target_kib:g} KiB: {width:.4f}", file=out)
    table = summary(builder(width), conv_bits=args.conv_bits, dw_bits=args.dw_bits,
                    first_last_bits=args.first_last_bits)
    print(table, file=out)
    return 0


def _act_bits(text):
    value = _bits(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"activation bits must be in 2..8; received {text!r}")
    return value


_RECIPES = ("cifar", "imagenet_resnet", "imagenet_mobilenet")


def _recipe(args):
    from tfq_pareto import training  # pylint: disable=import-outside-toplevel

    return _with_overrides({"cifar": training.CIFAR, "imagenet_resnet": training.IMAGENET_RESNET,
                            "imagenet_mobilenet": training.IMAGENET_MOBILENET}[args.recipe], args)


def _with_overrides(recipe, args):
    """``recipe`` with the command line's --epochs, --batch-size, --lr, --warmup-epochs,
    --weight-decay and --label-smoothing (those given)."""
    import dataclasses  # pylint: disable=import-outside-toplevel

    overrides = {
        "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr,
        "warmup_epochs": args.warmup_epochs, "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "warmup_epochs" not in overrides and "epochs" in overrides:
        recipe = recipe.with_epochs(overrides.pop("epochs"))  # a short run keeps its warm-up inside
    return dataclasses.replace(recipe, **overrides)


def _train(args, out):
    from tfq_pareto import data, experiment, training  # pylint: disable=import-outside-toplevel

    config = experiment.RunConfig(
        model=args.model, depth=args.depth, variant=args.variant,
        width_multiplier=args.width_multiplier,
        conv_bits=args.conv_bits, dw_bits=args.dw_bits, first_last_bits=args.first_last_bits,
        act_bits=args.act_bits, dataset=args.dataset)
    recipe = _recipe(args)
    # Everything that can be wrong is checked before the first step.
    datasets = data.load(args.dataset, data_dir=args.data_dir, download=args.download,
                         image_size=args.image_size)
    experiment.check_config(config, datasets.info)
    strategy = training.make_strategy(args.strategy)
    record = experiment.run(config, recipe, out_dir=args.out, verbose=0 if args.quiet else 2,
                            strategy=strategy, datasets=datasets)
    print(f"{record.model_name}: {config.conv_bits}-bit convs, size {record.size_bits:,} "
          f"bits ({record.size_kib:.2f} KiB), {record.params:,} params, "
          f"test accuracy {100 * record.accuracy:.2f}% -> {args.out}", file=out)
    return 0


def _demo(args, out):
    from tfq_pareto_cli import demo  # pylint: disable=import-outside-toplevel

    def log(message):
        print(message, file=out, flush=True)

    result = demo.run_demo(args.out, epochs=args.epochs, act_bits=args.act_bits, tiny=args.tiny,
                           verbose=0 if args.quiet else 2, log=log,
                           seeds=args.seeds or demo.DEMO_SEEDS,
                           budget_width_multiplier=args.budget_width_multiplier
                           or demo.DEMO_BUDGET_WIDTH, first_seed=args.first_seed)
    print(file=out)
    print(demo.format_table(result["records"], result["labels"]), file=out)
    print(f"\n{result['comparison']['verdict']}", file=out)
    print(f"\nwrote {result['files']['results']} and {result['files']['plot']}", file=out)
    if args.no_export:
        return 0
    print(f"\nexporting the DualPrecision model ({result['labels'][-1]}) to TFLite / "
          "TFLite Micro:", file=out, flush=True)
    _print_export(demo.export_dual_precision(result, args.out), out)
    return 0


def _print_export(result, out):
    manifest = result.manifest
    print(result.sizes_table(), file=out)
    totals = manifest["totals"]
    print(f"packed / (Eq. (6) + 8 B per channel) = {totals['ratio_to_limit']:.3f}; TFLM arena: "
          f"{totals['tflm_arena_bytes_packed']:,} B (packed), {totals['tflm_arena_bytes_int8']:,} B "
          "(int8)", file=out)
    if "accuracy" in manifest:
        acc = manifest["accuracy"]
        print(f"accuracy on {acc['samples']} test images: Keras QAT {100 * acc['keras']:.2f}%, "
              f"int8 (LiteRT) {100 * acc['int8_litert']:.2f}%, packed (TFLM) "
              f"{100 * acc['packed_tflm']:.2f}%", file=out)
    print(f"register ops: {', '.join(manifest['tflm_resolver_methods'])}", file=out)
    print("wrote " + ", ".join(result.files[k] for k in ("int8", "packed", "cc", "h", "manifest")),
          file=out)


def _export(args, out):
    # The command line is the composition root: the one place that imports both
    # tfq_pareto and tflite_export (imported here, so other commands start faster).
    import tflite_export  # pylint: disable=import-outside-toplevel
    from tfq_pareto import data, saving  # pylint: disable=import-outside-toplevel

    tflite_export.check_name(args.name)
    model = saving.load_model(args.model_file, compile=False)  # before any data is loaded
    calibration, validation = data.export_arrays(
        args.data, data_dir=args.data_dir, image_size=args.image_size,
        calibration_samples=args.samples, validation_samples=args.validation_samples)
    result = tflite_export.export(model, calibration, args.out, name=args.name,
                                  validation_data=validation,
                                  activation_ranges=args.activation_ranges,
                                  time_invoke=args.time_invoke)
    _print_export(result, out)
    return 0


def _analyze_clipping(args, out):
    from tfq_pareto import analysis, clipping  # pylint: disable=import-outside-toplevel

    constants = clipping.clipping_constants(tuple(args.bits), seed=args.seed)
    print("Appendix B clipping constants c_b = mean|W| / a* (Gaussian weights)", file=out)
    print(f"{'bits':>4}  {'c_b':>8}  {'spread':>8}  {'in use':>8}", file=out)
    for bits, (value, spread) in constants.items():
        print(f"{bits:>4}  {value:>8.4f}  {spread:>8.4f}  {clipping.CLIPPING_CONSTANTS[bits]:>8.4f}",
              file=out)
    if args.plot:
        analysis.plot_clipping(args.plot, num_bits=args.plot_bits, seed=args.seed)
        print(f"wrote {args.plot}", file=out)
    return 0


def _analyze_memory(args, out):
    from tfq_pareto import memory_footprint  # pylint: disable=import-outside-toplevel

    builder = family_builder(args.model, depth=args.depth, variant=args.variant,
                             num_classes=args.num_classes)
    footprint = memory_footprint(builder(args.width_multiplier), batch_size=args.batch_size,
                                 conv_bits=args.conv_bits, dw_bits=args.dw_bits,
                                 first_last_bits=args.first_last_bits, act_bits=args.act_bits)
    print(footprint, file=out)
    return 0


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints; received {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one value; received {text!r}")
    for v in values:
        if not 1 <= v <= 8:
            raise argparse.ArgumentTypeError(f"bits must be ints in 1..8; received {v!r} in {text!r}")
    return values


def _float_list(text):
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers; received {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers > 0; received {text!r}")
    return values


def _anneal(text):
    try:
        return check_anneal(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "anneal must be a fraction of the schedule's steps in [0, 1) (0: no probe before "
            f"a rung's ranking); received {text!r}") from None


def _rungs(text):
    try:
        return check_rungs([v.strip() for v in text.split(",") if v.strip()])
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err} (from {text!r})") from None


def _run_config(args, conv_bits=8):
    from tfq_pareto import experiment  # pylint: disable=import-outside-toplevel

    return experiment.RunConfig(model=args.model, depth=args.depth, variant=args.variant,
                                conv_bits=conv_bits, act_bits=args.act_bits, dataset=args.dataset)


def _search_recipe(args):
    from tfq_pareto import training  # pylint: disable=import-outside-toplevel

    return _with_overrides(training.CIFAR, args)


def _sweep(args, out):
    from tfq_pareto import data, search  # pylint: disable=import-outside-toplevel

    datasets = data.load(args.dataset, data_dir=args.data_dir, image_size=args.image_size)
    budgets = [kib * 8192 for kib in args.budgets_kib] if args.budgets_kib else None
    result = search.sweep(_run_config(args), bits=args.bits,
                          width_multipliers=args.width_multipliers,
                          budgets_bits=budgets, recipe=_search_recipe(args), out_dir=args.out,
                          datasets=datasets, verbose=0 if args.quiet else 2,
                          measure=_fit_measure(args), seeds=args.seeds)
    print(f"{'bits':>8}{'width':>8}{'size KiB':>10}{'accuracy':>17}  status", file=out)
    for r in result["records"]:
        acc = _accuracy_text(r.accuracy, r.accuracy_std)
        size = f"{r.size_kib:.2f}" if r.size_kib is not None else "-"
        width = f"{r.width_multiplier:.3f}" if r.width_multiplier is not None else "-"
        bits = r.conv_bits if r.dw_bits is None else f"{r.conv_bits}/{r.dw_bits}"
        print(f"{bits:>8}{width:>8}{size:>10}{acc:>17}  {r.status} {r.message or ''}",
              file=out)
    print(f"Pareto front: {[(r.conv_bits, round(r.size_kib, 2)) for r in result['front']]}",
          file=out)
    print(f"dominance (row dominates column): {result['dominance']}", file=out)
    if args.seeds > 1:
        print(f"dominance beyond the seed spread: {result['dominance_beyond_spread']}", file=out)
    print(f"wrote {args.out}/results.json, results.csv, pareto.png", file=out)
    return 0


def _search_command(args, out):
    from tfq_pareto import data, search  # pylint: disable=import-outside-toplevel

    datasets = data.load(args.dataset, data_dir=args.data_dir, image_size=args.image_size)
    base = _run_config(args)
    if args.budget_kib is not None:
        budget = args.budget_kib * 8192
    else:
        budget = search.budget_of(base, datasets.info, width_multiplier=args.budget_width,
                                  conv_bits=8, dw_bits=8)
    recipe = _search_recipe(args)
    if args.oracle == "proxy":
        proxy_recipe = recipe.with_epochs(args.proxy_epochs or max(1, args.epochs // 4))
        result = search.proxy_search(
            base, budget, bits=args.bits, recipe=recipe, proxy_recipe=proxy_recipe,
            proxy_fraction=args.proxy_fraction, top_k=args.top_k, out_dir=args.out,
            datasets=datasets, verbose=0 if args.quiet else 2, measure=_fit_measure(args),
            seeds=args.seeds)
        print(f"proxy ({args.proxy_fraction:g} x budget, {proxy_recipe.epochs} epochs) ranking: "
              f"{[tuple(p) for p in result['ranking']]}", file=out)
        print(f"proxy train seconds {result['train_seconds']['proxy']:.0f}, at the budget "
              f"{result['train_seconds']['final']:.0f}", file=out)
    elif args.oracle == "prior":
        result = search.prior_search(
            base, budget, bits=args.bits, recipe=recipe, top_k=args.top_k, out_dir=args.out,
            datasets=datasets, verbose=0 if args.quiet else 2, measure=_fit_measure(args),
            seeds=args.seeds)
        print(f"sensitivity order (Table 1; nothing trained): "
              f"{[tuple(p) for p in result['order']]}; trained "
              f"{[tuple(p) for p in result['trained']]}"
              + (f" (skipped, no width reaches the budget within the tolerance: "
                 f"{[tuple(p) for p in result['unreachable_at_budget']]})"
                 if result["unreachable_at_budget"] else ""), file=out)
    elif args.oracle == "halving":
        result = search.halving_search(
            base, budget, bits=args.bits, recipe=recipe, rungs=args.rungs or DEFAULT_RUNGS,
            eta=args.eta, anneal=args.anneal,
            out_dir=args.out, datasets=datasets, verbose=0 if args.quiet else 2,
            measure=_fit_measure(args), seeds=args.seeds)
        probe = (f", ranked after a {result['anneal_steps']}-step anneal to lr 0"
                 if result["anneal_steps"] else "")
        for rung in result["rungs"]:
            accuracies = ", ".join(f"{k}: {100 * v:.2f}%" for k, v in rung["accuracies"].items())
            print(f"rung at {rung['fraction']:.3g} of the schedule (step {rung['step']}{probe}): "
                  f"{accuracies}; kept {[tuple(p) for p in rung['kept']]}"
                  f"{_cut_text(rung.get('cut'))}", file=out)
        for failed in result["failed"]:
            print(f"conv {failed['pair'][0]} dw {failed['pair'][1]}: FAILED {failed['message']}",
                  file=out)
        print(f"train seconds {result['train_seconds']['total']:.0f} (rungs "
              f"{result['train_seconds']['rungs']:.0f}, final "
              f"{result['train_seconds']['final']:.0f}), evaluation "
              f"{result['eval_seconds']:.0f}; optimizer steps {result['steps']['total']} "
              f"({result['steps']['probe']} in probes)", file=out)
    else:
        result = search.dual_precision_search(
            base, budget, bits=args.bits, oracle=args.oracle, max_trials=args.max_trials,
            recipe=recipe, out_dir=args.out, datasets=datasets,
            verbose=0 if args.quiet else 2, measure=_fit_measure(args), seeds=args.seeds)
    for r in result["records"]:
        acc = _accuracy_text(r.accuracy, r.accuracy_std)
        print(f"conv {r.conv_bits} dw {r.dw_bits}: {acc} {r.status} {r.message or ''}", file=out)
    best = result["best"]
    if best:
        print(f"best pair at {budget / 8192:.2f} KiB: conv {best.conv_bits} / dw "
              f"{best.dw_bits} (width {best.width_multiplier:.3f}, accuracy "
              f"{_accuracy_text(best.accuracy, best.accuracy_std)})", file=out)
    if args.oracle == "proxy":
        print(f"wrote {args.out}/results.json, proxy/ (the proxy grid), final/", file=out)
    elif args.oracle == "halving":
        print(f"wrote {args.out}/results.json, halving.json (resumable state), pairs/", file=out)
    elif args.oracle == "prior":
        print(f"wrote {args.out}/results.json, final/", file=out)
    else:
        print(f"wrote {args.out}/results.json, results.csv, pareto.png, grid.png", file=out)
    return 0


def _cut_text(cut):
    """A halving rung's cut, and whether it was decided beyond the seed spread."""
    if not cut:
        return ""
    text = f"; {cut['kept']} kept over {cut['dropped']} by {100 * cut['margin']:.2f} points"
    if cut["beyond_spread"] is None:
        return text + " (one seed: spread unknown; --seeds 2 tells)"
    where = "beyond" if cut["beyond_spread"] else "WITHIN"
    return text + f", pooled std {100 * cut['pooled_std']:.2f}: {where} the seed spread"


def _accuracy_text(accuracy, std=None):
    """"12.34%", "12.34% +- 0.56" (standard deviation over seeds, points) or "-"."""
    if accuracy is None:
        return "-"
    return f"{100 * accuracy:.2f}%" + ("" if std is None else f" +- {100 * std:.2f}")


def _fit_measure(args):
    """With --measure-fit: the exported model's flash, RAM and MACs for every trained trial."""
    if not getattr(args, "measure_fit", False):
        return None
    import tflite_export  # pylint: disable=import-outside-toplevel
    from tfq_pareto import data, load_model  # pylint: disable=import-outside-toplevel

    def measure(record, datasets):
        calibration, _ = data.datasets_arrays(datasets, calibration_samples=64,
                                              validation_samples=0)
        fit = tflite_export.measure_fit(load_model(record.model_file), calibration)
        return {k: fit[k] for k in ("flash_bytes", "ram_bytes", "macs")}

    return measure


def _plot(args, out):
    from tfq_pareto import search  # pylint: disable=import-outside-toplevel

    for path in search.replot(args.dir, size_axis=args.size_axis):
        print(f"wrote {path}", file=out)
    return 0


def _add_data_arguments(parser, *, dataset_help):
    parser.add_argument("--dataset", default="digits", help=dataset_help)
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data_dir")


def _add_output_arguments(parser, *, out_help, default=None):
    if default is None:
        parser.add_argument("--out", required=True, help=out_help)
    else:
        parser.add_argument("--out", default=default, help=out_help)
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress")


def _add_search_arguments(parser):
    _add_model_arguments(parser)
    parser.add_argument("--act-bits", type=_act_bits, default=None,
                        help="activation bits, 2..8 (default: the CIFAR recipe's, 4, as the paper)")
    _add_data_arguments(parser, dataset_help="digits (default), cifar10, cifar100, mnist, "
                        "imagenet2012, npz:PATH[,PATH]")
    parser.add_argument("--image-size", type=int, default=16, help="side of the digits images")
    parser.add_argument("--epochs", type=_epochs, default=300,
                        help="epochs per trial (default 300, Appendix A)")
    parser.add_argument("--batch-size", type=_epochs, default=128, help="batch size (default 128)")
    _add_recipe_arguments(parser)
    parser.add_argument("--seeds", type=_epochs, default=1,
                        help="trainings per point, seeds 0..N-1 (default 1); results.json and "
                        "results.csv keep every seed's accuracy, the mean and the standard "
                        "deviation, and the plots draw error bars")
    _add_output_arguments(parser, out_help="results folder (rerun to resume)")


def _add_recipe_arguments(parser):
    """Overrides of the Appendix A recipe (train, sweep, search, fit-budget)."""
    parser.add_argument("--lr", type=_positive, default=None,
                        help="override the peak learning rate (0.05)")
    parser.add_argument("--warmup-epochs", type=_non_negative, default=None,
                        help="override the linear warm-up epochs (5; clamped into short runs)")
    parser.add_argument("--weight-decay", type=_non_negative, default=None,
                        help="override the weight decay on conv/dense kernels")
    parser.add_argument("--label-smoothing", type=_non_negative, default=None,
                        help="override the label smoothing")


def _add_measure_argument(parser):
    parser.add_argument("--measure-fit", action="store_true",
                        help="export every trained trial and record its flash, RAM (TFLM "
                        "arena + CMSIS-NN scratch) and MACs (then `plot --size-axis`)")


def _size_command(commands):
    size = commands.add_parser(
        "size", help="per-layer Eq. (6) size table of a model family at a width and precision",
        description="Prints the per-layer Eq. (6) table (tfq_pareto.summary) of a model family "
        "at a width multiplier and precision; with --target-kib, first finds the width whose "
        "size is that budget (tfq_pareto.width_for_size).",
    )
    _add_model_arguments(size)
    _add_precision_arguments(size)
    size.add_argument("--target-kib", type=_positive, default=None,
                      help="size budget in KiB: find and use the width that meets it")
    size.add_argument("--tolerance", type=float, default=0.01,
                      help="relative tolerance on --target-kib (default 0.01)")
    size.set_defaults(handler=_size)


def _train_command(commands):
    train = commands.add_parser(
        "train", help="train and evaluate one model family at a width and precision",
        description="Builds a model family at --width, makes it quantization-aware "
        "(tfq_pareto.apply), trains it with the paper's recipe (Appendix A), evaluates it and "
        "writes the QAT model (model.h5), history.csv, TensorBoard logs and record.json "
        "(config, size in bits, params, accuracy, time) into --out. Rerun the same command to "
        "resume an interrupted run.",
    )
    _add_model_arguments(train)
    _add_precision_arguments(train)
    train.add_argument("--act-bits", type=_act_bits, default=None,
                       help="activation bits, 2..8 (default: the --recipe's, 4 for cifar and 8 "
                       "for the imagenet ones, as the paper)")
    _add_data_arguments(train, dataset_help="digits (embedded, default), cifar10, cifar100, "
                        "mnist, imagenet2012 (tfds, from --data-dir), or npz:TRAIN.npz[,TEST.npz]")
    train.add_argument("--download", action="store_true",
                       help="let tensorflow-datasets download missing data (off: fail fast)")
    train.add_argument("--image-size", type=int, default=16,
                       help="side of the digits images (default 16)")
    train.add_argument("--recipe", choices=_RECIPES, default="cifar",
                       help="Appendix A preset: cifar (batch 128, wd 5e-4, 300 epochs, 4-bit activations), "
                       "imagenet_resnet (batch 256, wd 4e-5, label smoothing 0.1, 90 epochs, 8-bit "
                       "activations), imagenet_mobilenet (same, 120 epochs)")
    train.add_argument("--epochs", type=_epochs, default=None, help="override the epochs")
    train.add_argument("--batch-size", type=_epochs, default=None, help="override the batch size")
    _add_recipe_arguments(train)
    train.add_argument("--strategy", choices=("default", "mirrored", "multi_worker"),
                       default="default",
                       help="tf.distribute strategy: mirrored = all GPUs of this machine, "
                       "multi_worker = the machines in TF_CONFIG")
    _add_output_arguments(train, out_help="output folder of the run")
    train.set_defaults(handler=_train)


def _demo_command(commands):
    demo = commands.add_parser(
        "demo", help="the main job: 8-bit vs 1-bit ResNet-20 at equal size on digits",
        description="Trains an 8-bit ResNet-20 (width 0.25) and a 1-bit ResNet-20 widened to "
        "the same Eq. (6) size, each with 2 seeds, on the 8x8 digits scikit-learn ships (no "
        "download); prints a table (mean +- std over seeds) and a verdict that names a winner "
        "only beyond the seed spread, and writes results.json and accuracy_vs_size.png into "
        "--out. About 5 minutes on 2 CPU cores; rerun to resume.",
    )
    demo.add_argument("--epochs", type=_epochs, default=12, help="epochs per model (default 12)")
    demo.add_argument("--act-bits", type=_act_bits, default=8,
                      help="activation bits of both models (default 8)")
    demo.add_argument("--seeds", type=_epochs, default=None,
                      help="trainings per model, seeds 0..N-1 (default 2): the verdict compares "
                      "the mean accuracies with their spread")
    demo.add_argument("--first-seed", type=_count, default=0,
                      help="seeds are FIRST_SEED..FIRST_SEED+N-1 (default 0): a seeded run "
                      "repeats exactly, other seeds repeat the comparison independently")
    demo.add_argument("--budget-width-multiplier", type=_positive, default=None,
                      help="the size budget: the 8-bit model's size at this width")
    demo.add_argument("--tiny", action="store_true",
                      help="1 epoch on 10%% of the data: a smoke test (seconds)")
    demo.add_argument("--no-export", action="store_true",
                      help="skip exporting the DualPrecision model to int8 / packed TFLite Micro")
    _add_output_arguments(demo, out_help="output folder (default runs/demo)", default="runs/demo")
    demo.set_defaults(handler=_demo)


def _export_command(commands):
    export = commands.add_parser(
        "export", help="QAT model -> int8 .tflite, packed TFLite Micro .tflite, C arrays",
        description="Exports a QAT model saved by train/sweep/search (model.h5): an int8 "
        "TFLite file, a TFLite Micro file whose b-bit weights take b bits (LUT-packed), the "
        "packed model as C++ arrays and a manifest, all verified on LiteRT and TFLM. "
        "Calibrates on training images of --data and measures accuracy on its test split.")
    export.add_argument("model_file", metavar="MODEL.h5",
                        help="QAT model file (.h5 or SavedModel folder)")
    export.add_argument("--data", required=True,
                        help="the data the model was trained on: digits, a tfds name, or "
                        "npz:TRAIN.npz[,TEST.npz]")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--name", default="model",
                        help="file and C symbol prefix, a C identifier (default model)")
    export.add_argument("--data-dir", default=None, help="tensorflow-datasets data_dir")
    export.add_argument("--image-size", type=int, default=16,
                        help="side of the digits images (as in training; default 16)")
    export.add_argument("--samples", type=_epochs, default=500,
                        help="training images to calibrate on (default 500)")
    export.add_argument("--validation-samples", type=_count, default=2000,
                        help="test images to measure accuracy on (default 2000, 0: none)")
    export.add_argument("--activation-ranges", choices=("qat", "calibration"), default="qat",
                        help="activation ranges: learned in QAT (default) or calibrated")
    export.add_argument("--time-invoke", action="store_true",
                        help="also time TFLM invokes, packed vs int8")
    export.set_defaults(handler=_export)


def _analyze_command(commands):
    analyze = commands.add_parser("analyze", help="the paper's diagnostics (Appendix B, F)")
    analyses = analyze.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    clip = analyses.add_parser(
        "clipping", help="recompute the Appendix B clipping constants (and plot Fig. 5)",
        description="Simulates Gaussian weights, finds the clip minimising the uniform "
        "quantizer's error, and prints c_b = mean|W| / a* with its spread next to the "
        "constants the quantizers use.")
    clip.add_argument("--bits", type=int, nargs="+", default=[3, 4, 5, 6, 7, 8],
                      choices=range(3, 9), metavar="B", help="bits to simulate, 3..8")
    clip.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    clip.add_argument("--plot", default=None, help="write the Fig. 5 scatter to this PNG")
    clip.add_argument("--plot-bits", type=int, default=4, choices=range(3, 9),
                      help="bits of the plot (default 4)")
    clip.set_defaults(handler=_analyze_clipping)
    memory = analyses.add_parser(
        "memory", help="inference memory of a model family (Appendix F)",
        description="Largest input + largest output feature map (at --act-bits) + all "
        "weights (at their bits), in bytes, with the per-layer feature-map sizes.")
    _add_model_arguments(memory)
    _add_precision_arguments(memory)
    memory.add_argument("--act-bits", type=_bits, default=8, help="activation bits (default 8)")
    memory.add_argument("--batch-size", type=_epochs, default=1, help="images per inference")
    memory.set_defaults(handler=_analyze_memory)


def _sweep_command(commands):
    sweep = commands.add_parser(
        "sweep", help="accuracy vs size for several precisions (Fig. 1), front and dominance",
        description="Trains every precision in --bits at every width in --width-multipliers (or widened "
        "to every budget in --budgets-kib), then writes results.json (records, Pareto front, "
        "dominance matrix per Definition 4.1), results.csv and pareto.png into --out. "
        "Each trial is kept as it finishes; rerun the same command to resume.")
    _add_search_arguments(sweep)
    sweep.add_argument("--bits", type=_int_list, required=True, help="precisions, e.g. 1,2,4")
    axis = sweep.add_mutually_exclusive_group(required=True)
    axis.add_argument("--width-multipliers", "--widths", dest="width_multipliers",
                      type=_float_list, help="width multipliers, e.g. 0.5,1,2 (--widths is the "
                      "short form)")
    axis.add_argument("--budgets-kib", type=_float_list,
                      help="Eq. (6) budgets in KiB; each precision is widened to each")
    _add_measure_argument(sweep)
    sweep.set_defaults(handler=_sweep)


def _search_command_parser(commands):
    search_parser = commands.add_parser(
        "search", help="best (conv_bits, dw_bits) at a size budget (Sec. 6, Table 7)",
        description="keras-tuner search over conv_bits x dw_bits (just conv_bits without "
        "depthwise convs), every pair widened to the budget; writes results.json (with the "
        "best pair), results.csv, pareto.png and grid.png into --out; rerun to resume.")
    _add_search_arguments(search_parser)
    budget = search_parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-kib", type=_positive, help="Eq. (6) budget in KiB")
    budget.add_argument("--budget-width-multiplier", "--budget-width", dest="budget_width",
                        type=_positive,
                        help="budget = size of the 8-bit model at this width (e.g. 0.25)")
    search_parser.add_argument("--bits", type=_int_list, default=[1, 2, 4, 8],
                               help="the precision set B (default 1,2,4,8)")
    search_parser.add_argument("--oracle", choices=("grid", "random", "bayesian", "hyperband",
                                                    "proxy", "halving", "prior"),
                               default="grid", help="keras-tuner oracle (default grid, the "
                               "paper's); proxy: the grid on a low-width proxy (--proxy-fraction "
                               "of the budget, --proxy-epochs), then its best pair(s) at the "
                               "budget; halving: successive halving over the schedule at the "
                               "budget (--rungs, --eta, --anneal); prior: only the first --top-k "
                               "pairs of Table 1's sensitivity order (fewest conv bits, depthwise "
                               "at >= 4 bits), trained at the budget")
    search_parser.add_argument("--proxy-fraction", type=_fraction, default=0.25,
                               help="--oracle proxy: the proxy's budget / the budget (default 0.25)")
    search_parser.add_argument("--proxy-epochs", type=_epochs, default=None,
                               help="--oracle proxy: epochs of each proxy trial (default "
                               "--epochs / 4, at least 1)")
    search_parser.add_argument("--top-k", type=_epochs, default=1,
                               help="--oracle proxy / prior: pairs trained at the budget "
                               "(default 1)")
    search_parser.add_argument("--rungs", type=_rungs, default=None,
                               help="--oracle halving: fractions of the schedule at which the "
                               "pairs are ranked, increasing, in (0, 1) (default 0.1111,0.3333)")
    search_parser.add_argument("--anneal", type=_anneal, default=0.0,
                               help="--oracle halving: before each rung's ranking, anneal a copy "
                               "of every pair to lr 0 over this fraction of the schedule's steps "
                               "and rank on that (default 0: rank the pairs as they are)")
    search_parser.add_argument("--eta", type=_eta, default=None,
                               help="--oracle halving: ceil(n / eta) pairs go on from each rung "
                               "(default: the smallest that leaves one pair after the last rung)")
    search_parser.add_argument("--max-trials", type=_epochs, default=None,
                               help="trials for random/bayesian (default 10)")
    _add_measure_argument(search_parser)
    search_parser.set_defaults(handler=_search_command)


def _fit_budget_command(commands):
    fit = commands.add_parser(
        "fit-budget", help="the most accurate model that fits a device's flash, RAM and MACs",
        description="For every precision (pair), finds the widest width whose exported packed "
        "model fits --flash-kib, --ram-kib (TFLM arena + CMSIS-NN scratch) and --max-macs, "
        "trains those candidates as keras-tuner trials, exports the most accurate with the "
        "budget enforced and writes results.json, fit.png and export/ (with the fit "
        "certificate in the manifest) into --out; rerun to resume.")
    _add_search_arguments(fit)
    fit.add_argument("--device", default=None, help="a part of tflite_export.DEVICES (its "
                     "flash and SRAM less the documented reserves); --flash-kib / --ram-kib / "
                     "--max-macs override its figures")
    fit.add_argument("--flash-kib", type=_positive, default=None, help="flash for the model, KiB")
    fit.add_argument("--ram-kib", type=_positive, default=None, help="RAM for the arena, KiB")
    fit.add_argument("--max-macs", type=_positive, default=None,
                     help="multiply-accumulates per inference allowed, e.g. 50e6")
    fit.add_argument("--bits", type=_int_list, default=[1, 2, 4, 8],
                     help="the precision set (default 1,2,4,8)")
    fit.add_argument("--min-width", type=_positive, default=0.25,
                     help="narrowest width multiplier searched (default 0.25; a part with "
                          "little RAM may need a narrower one: activations shrink with width)")
    fit.add_argument("--max-width", type=_positive, default=4.0,
                     help="widest width multiplier searched (default 4)")
    fit.set_defaults(handler=_fit_budget)


def _fit_budget(args, out):
    import tflite_export  # pylint: disable=import-outside-toplevel
    from tfq_pareto import data  # pylint: disable=import-outside-toplevel

    if args.device is not None:
        if args.device not in tflite_export.DEVICES:
            raise ValueError(f"--device must be one of {sorted(tflite_export.DEVICES)}; "
                             f"received {args.device!r}")
        device = tflite_export.Budget.for_device(args.device)
    elif args.flash_kib is None or args.ram_kib is None:
        raise ValueError("give --flash-kib and --ram-kib, or --device")
    else:
        device = None
    budget = tflite_export.Budget(
        flash_bytes=int(args.flash_kib * 1024) if args.flash_kib else device.flash_bytes,
        ram_bytes=int(args.ram_kib * 1024) if args.ram_kib else device.ram_bytes,
        max_macs=args.max_macs, name=args.device)
    datasets = data.load(args.dataset, data_dir=args.data_dir, image_size=args.image_size)
    result = tflite_export.fit_budget(
        _run_config(args), budget, bits=args.bits, recipe=_search_recipe(args), out_dir=args.out,
        datasets=datasets, verbose=0 if args.quiet else 2, min_width=args.min_width,
        max_width=args.max_width, seeds=args.seeds)
    print(f"{'bits':>6}{'width':>8}{'bound by':>10}{'flash KiB':>11}{'RAM KiB':>9}{'MMACs':>8}"
          f"{'accuracy':>17}  status", file=out)
    for c in result["candidates"]:
        width = f"{c['width_multiplier']:.3f}" if c["width_multiplier"] else "-"
        flash = f"{c['flash_bytes'] / 1024:.1f}" if c["flash_bytes"] else "-"
        ram = f"{c['ram_bytes'] / 1024:.1f}" if c["ram_bytes"] else "-"
        macs = f"{c['macs'] / 1e6:.2f}" if c["macs"] else "-"
        acc = _accuracy_text(c["accuracy"], c["accuracy_std"])
        print(f"{c['label']:>6}{width:>8}{c['bound_by'] or '-':>10}{flash:>11}{ram:>9}{macs:>8}"
              f"{acc:>17}  {c['status']} "
              f"{c['reason'] or ''}", file=out)
    pick, certificate = result["pick"], result["certificate"]
    margins = certificate["budget"]["margins"]
    print(f"pick: {pick['label']} at width {pick['width_multiplier']:.3f}, accuracy "
          f"{_accuracy_text(pick['accuracy'], pick['accuracy_std'])}; certified {certificate['flash_bytes']:,} B flash "
          f"(margin {margins['flash_bytes']:,}), {certificate['ram_bytes_upper_bound']:,} B RAM "
          f"(margin {margins['ram_bytes']:,}), {certificate['macs']:,} MACs", file=out)
    print(f"wrote {result['files']['results']}, {result['files']['plot']}, "
          f"{result['files']['packed']}, {result['files']['manifest']}", file=out)
    return 0


def _plot_command(commands):
    plot = commands.add_parser("plot", help="redraw the plots of a sweep or search folder")
    plot.add_argument("dir", help="a --out folder of sweep or search")
    plot.add_argument("--size-axis", choices=("eq6", "flash", "ram", "macs"), default="eq6",
                      help="x axis of pareto.png: Eq. (6) size (default), or the exported "
                      "model's flash, RAM or MACs (sweeps and searches run with --measure-fit)")
    plot.set_defaults(handler=_plot)


#: One function per command, in the order ``--help`` lists them.
COMMANDS = (_size_command, _train_command, _demo_command, _export_command, _analyze_command,
            _sweep_command, _search_command_parser, _fit_budget_command, _plot_command)


def build_parser():
    parser = _Parser(
        prog="tfq-pareto",
        description="Pareto-efficient quantized CNNs (Chin et al.) on tf_keras + tfmot.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def main(argv=None, out=None):
    """Entry point of ``tfq-pareto``; returns the exit status.

    Errors print one line, ``tfq-pareto COMMAND: error: ...``, and exit with 2
    (bad input) or 1 (anything else); set ``TFQ_PARETO_TRACEBACK=1`` to get the
    traceback instead. Ctrl-C exits with 130; train, sweep, search and demo
    resume when rerun.
    """
    import os  # pylint: disable=import-outside-toplevel
    import signal  # pylint: disable=import-outside-toplevel

    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    command = " ".join(c for c in (args.command, getattr(args, "analysis", None)) if c)
    interrupted = []

    def on_sigint(signum, frame):
        # A Ctrl-C inside TensorFlow can surface as another exception during its
        # clean-up (e.g. "AssertionError: Concurrent access?"): remember it was one.
        interrupted.append(signum)
        signal.default_int_handler(signum, frame)

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        previous = None
    try:
        return args.handler(args, out)
    except KeyboardInterrupt:
        print(f"tfq-pareto {command}: interrupted; rerun the same command to resume",
              file=sys.stderr)
        return 130
    except Exception as err:  # pylint: disable=broad-except
        if interrupted:
            print(f"tfq-pareto {command}: interrupted; rerun the same command to resume",
                  file=sys.stderr)
            return 130
        if os.environ.get("TFQ_PARETO_TRACEBACK"):
            raise
        expected = isinstance(err, (ValueError, OSError))
        reason = str(err).strip().replace("\n", " ") or type(err).__name__
        if not expected:
            reason = f"{type(err).__name__}: {reason}"
        print(f"tfq-pareto {command}: error: {reason}", file=sys.stderr)
        return 2 if expected else 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
