"""The ``tfq-pareto`` command line: a thin layer over the public API.

    tfq-pareto size --model resnet_cifar --depth 20 --width 1.5 --conv-bits 1
    tfq-pareto size --model mobilenet_v2_cifar --conv-bits 1 --dw-bits 8 --target-kib 200
"""

import argparse
import functools
import sys

from tfq_pareto.models import FAMILIES, RESNET_CIFAR_DEPTHS, VGG11_VARIANTS


def _bits(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bits must be an int in 1..8; received {text!r}") from None
    if not 1 <= value <= 8:
        raise argparse.ArgumentTypeError(f"bits must be an int in 1..8; received {text!r}")
    return value


def _positive(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0; received {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0; received {text!r}")
    return value


def family_builder(model, *, depth=20, variant=None, num_classes=None):
    """``builder(width_multiplier)`` for a family name and its options."""
    build = FAMILIES[model]
    kwargs = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if model == "resnet_cifar":
        kwargs["depth"] = depth
    if model == "vgg11":
        kwargs["variant"] = variant
    return functools.partial(lambda w, **kw: build(width_multiplier=w, **kw), **kwargs)


def _add_model_arguments(parser):
    parser.add_argument("--model", required=True, choices=sorted(FAMILIES),
                        help="model family (tfq_pareto.models)")
    parser.add_argument("--depth", type=int, default=20, choices=RESNET_CIFAR_DEPTHS,
                        help="depth of resnet_cifar (default 20)")
    parser.add_argument("--variant", default=None, choices=[v for v in VGG11_VARIANTS if v],
                        help="vgg11 variant with depthwise-separable convs (Table 6)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classifier outputs (default: the family's, 100 CIFAR / 1000 ImageNet)")


def _size(args, out):
    from tfq_pareto import summary  # pylint: disable=import-outside-toplevel
    from tfq_pareto.width import width_for_size  # pylint: disable=import-outside-toplevel

    builder = family_builder(args.model, depth=args.depth, variant=args.variant,
                             num_classes=args.num_classes)
    width = args.width
    if args.target_kib is not None:
        width = width_for_size(builder, args.target_kib * 8 * 1024, conv_bits=args.conv_bits,
                               dw_bits=args.dw_bits, first_last_bits=args.first_last_bits,
                               tolerance=args.tolerance)
        print(f"width multiplier for {args.target_kib:g} KiB: {width:.4f}", file=out)
    table = summary(builder(width), conv_bits=args.conv_bits, dw_bits=args.dw_bits,
                    first_last_bits=args.first_last_bits)
    print(table, file=out)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfq-pareto",
        description="Pareto-efficient quantized CNNs (Chin et al.) on tf_keras + tfmot.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    size = commands.add_parser(
        "size", help="per-layer Eq. (6) size table of a model family at a width and precision",
        description="Prints the per-layer Eq. (6) table (tfq_pareto.summary) of a model family "
        "at a width multiplier and precision; with --target-kib, first finds the width whose "
        "size is that budget (tfq_pareto.width_for_size).",
    )
    _add_model_arguments(size)
    size.add_argument("--width", type=_positive, default=1.0,
                      help="width multiplier: every channel count times it (default 1.0)")
    size.add_argument("--conv-bits", type=_bits, required=True,
                      help="weight bits of standard convs and dense layers, 1..8")
    size.add_argument("--dw-bits", type=_bits, default=None,
                      help="weight bits of depthwise convs, 1..8 (default: --conv-bits)")
    size.add_argument("--first-last-bits", type=_bits, default=8,
                      help="weight bits of the first and last layer, 1..8 (default 8)")
    size.add_argument("--target-kib", type=_positive, default=None,
                      help="size budget in KiB: find and use the width that meets it")
    size.add_argument("--tolerance", type=float, default=0.01,
                      help="relative tolerance on --target-kib (default 0.01)")
    size.set_defaults(handler=_size)
    return parser


def main(argv=None, out=None):
    """Entry point of ``tfq-pareto``; returns the exit status."""
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    try:
        return args.handler(args, out)
    except ValueError as err:
        print(f"tfq-pareto {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
