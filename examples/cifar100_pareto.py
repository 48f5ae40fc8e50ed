"""Figure 1 for one model family: accuracy vs Eq. (6) size, one curve per weight precision.

For each reference width w of the 4-bit model, every precision b is widened to
the same size (``tfq_pareto.align_widths``), trained with the CIFAR recipe
(Appendix A: SGD Nesterov, lr 0.05, 5 warm-up epochs + cosine, batch 128,
wd 5e-4, 4-bit activations) and evaluated. Each run is saved as it finishes and
skipped when the script is started again.

    python examples/cifar100_pareto.py --dataset cifar100 --data-dir ~/tensorflow_datasets
    python examples/cifar100_pareto.py --dataset npz:train.npz,test.npz --epochs 30
    python examples/cifar100_pareto.py --tiny          # digits, 1 epoch: a smoke test
"""

import argparse
import dataclasses
import json
import os

import tfq_pareto


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cifar100", help="cifar100, cifar10 or npz:TRAIN[,TEST]")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data_dir")
    parser.add_argument("--model", default="resnet_cifar", choices=sorted(tfq_pareto.models.FAMILIES))
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--dw-bits", type=int, default=None, help="depthwise bits (with --model mobilenet_v2_cifar)")
    parser.add_argument("--reference-widths", type=float, nargs="+", default=[0.5, 1.0, 1.5],
                        help="widths of the 4-bit model that set the size budgets")
    parser.add_argument("--epochs", type=int, default=tfq_pareto.training.CIFAR.epochs,
                        help="default: the CIFAR recipe's, 300 (Appendix A)")
    parser.add_argument("--act-bits", type=int, default=None,
                        help="default: the CIFAR recipe's, 4 (Sec. 3)")
    parser.add_argument("--out", default="runs/cifar100_pareto")
    parser.add_argument("--tiny", action="store_true", help="digits, 2 precisions, 1 size, 1 epoch")
    args = parser.parse_args()
    if args.tiny:
        args.dataset, args.bits, args.reference_widths, args.epochs = "digits", [1, 4], [0.25], 1

    datasets = tfq_pareto.data.load(args.dataset, data_dir=args.data_dir)
    info = datasets.info
    recipe = tfq_pareto.training.CIFAR.with_epochs(args.epochs)
    base = tfq_pareto.experiment.RunConfig(model=args.model, depth=args.depth, conv_bits=4,
                                           dw_bits=args.dw_bits, act_bits=args.act_bits,
                                           dataset=args.dataset)

    def builder(width):
        return tfq_pareto.experiment.build_float_model(dataclasses.replace(base, width_multiplier=width), info)

    points = []
    for reference in args.reference_widths:
        widths = tfq_pareto.align_widths(builder, args.bits, reference_width=reference,
                                         reference_conv_bits=4, reference_dw_bits=args.dw_bits,
                                         tolerance=0.03)
        for bits in args.bits:
            config = dataclasses.replace(base, conv_bits=bits, width_multiplier=widths[bits])
            out = os.path.join(args.out, f"ref{reference:.2f}_b{bits}")
            print(f"{bits}-bit at width {widths[bits]:.3f} (size of the 4-bit w={reference})", flush=True)
            record = tfq_pareto.experiment.run(config, recipe, out_dir=out, verbose=2,
                                               datasets=datasets)
            points.append({"bits": bits, "reference_width": reference, "width": widths[bits],
                           "size_kib": record.size_kib, "accuracy": record.accuracy})
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "points.json"), "w", encoding="utf-8") as f:
        json.dump(points, f, indent=2)
    print(f"\n{'bits':>4} {'width':>7} {'size KiB':>9} {'accuracy':>9}")
    for p in sorted(points, key=lambda p: (p["bits"], p["size_kib"])):
        print(f"{p['bits']:>4} {p['width']:>7.3f} {p['size_kib']:>9.2f} {100 * p['accuracy']:>8.2f}%")

    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for bits in args.bits:
        curve = sorted((p for p in points if p["bits"] == bits), key=lambda p: p["size_kib"])
        ax.plot([p["size_kib"] for p in curve], [100 * p["accuracy"] for p in curve], "o-",
                label=f"{bits}-bit")
    ax.set_xlabel("model size, Eq. (6) [KiB]")
    ax.set_ylabel("test accuracy [%]")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "pareto.png"))
    print(f"wrote {args.out}/points.json and {args.out}/pareto.png")


if __name__ == "__main__":
    main()
