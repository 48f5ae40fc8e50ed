"""Table 3: DualPrecision vs 8-bit at equal Eq. (6) size on ImageNet (ResNet-50 / MobileNetV2).

The 8-bit model at ``--reference-width`` sets the size budget; the DualPrecision
model (``--conv-bits`` for standard convs, ``--dw-bits`` for depthwise convs,
first/last layer 8-bit) is widened to it. Both train with the ImageNet recipe
(Appendix A: batch 256, wd 4e-5, label smoothing 0.1, 90 epochs for ResNet-50,
120 for MobileNetV2, 8-bit activations), from a prepared tfds ``imagenet2012``.

    python examples/imagenet_dualprecision.py --model mobilenet_v2 --data-dir DIR \\
        --strategy mirrored          # Table 7's pick: 4/4 (ResNet-50: 1-bit)
    python examples/imagenet_dualprecision.py --tiny    # synthetic 32x32 data: a smoke test

``--tiny`` cannot use ImageNet (it needs the prepared archives): it writes a
small random-image .npz and runs the same code path (ImageNet augmentation,
label smoothing, the ImageNet builders at width 0.25, 1 epoch).
"""

import argparse
import dataclasses
import os
import tempfile

import numpy as np

import tfq_pareto


def _tiny_npz(directory):
    rng = np.random.default_rng(0)
    path = os.path.join(directory, "tiny_imagenet_like.npz")
    np.savez(path, x=rng.integers(0, 256, size=(64, 40, 40, 3)).astype("uint8"),
             y=rng.integers(0, 4, size=64))
    return f"npz:{path}"


#: Appendix E: "the final precision value selected for MobileNetV2 is 4 bit for both
#: depth-wise convolutions and standard convolutions ... for ResNet50 is 1 bit."
SELECTED_PAIRS = {"mobilenet_v2": (4, 4), "resnet50": (1, None)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["resnet50", "mobilenet_v2"], default="mobilenet_v2")
    parser.add_argument("--data-dir", default=None, help="tfds data_dir with imagenet2012 prepared")
    parser.add_argument("--conv-bits", type=int, default=None,
                        help="default: the pair Table 7 / Appendix E selected (MobileNetV2 4, "
                        "ResNet-50 1)")
    parser.add_argument("--dw-bits", type=int, default=None,
                        help="default: Table 7's pick for MobileNetV2, 4 (ResNet-50 has none)")
    parser.add_argument("--reference-width", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=None, help="default: 90 (ResNet) / 120 (MobileNetV2)")
    parser.add_argument("--strategy", default="default", choices=["default", "mirrored", "multi_worker"])
    parser.add_argument("--out", default="runs/imagenet_dualprecision")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    conv_bits, default_dw = SELECTED_PAIRS[args.model]
    args.conv_bits = conv_bits if args.conv_bits is None else args.conv_bits
    args.dw_bits = default_dw if args.dw_bits is None else args.dw_bits

    recipe = (tfq_pareto.training.IMAGENET_RESNET if args.model == "resnet50"
              else tfq_pareto.training.IMAGENET_MOBILENET)
    dataset = "imagenet2012"
    if args.tiny:
        args.reference_width = 0.25
        recipe = dataclasses.replace(recipe, epochs=1, warmup_epochs=0, batch_size=32)
        dataset = _tiny_npz(tempfile.mkdtemp())
    elif args.epochs:
        recipe = dataclasses.replace(recipe, epochs=args.epochs)
    datasets = tfq_pareto.data.load(dataset, data_dir=args.data_dir)
    train_raw, test_raw, info = datasets
    if args.tiny:  # the ImageNet pipeline on 32x32 crops of the synthetic images
        info = dataclasses.replace(info, image_shape=(32, 32, 3), augmentation="imagenet")
        datasets = (train_raw, test_raw, info)
    dw_bits = args.dw_bits if args.model == "mobilenet_v2" else None
    base = tfq_pareto.experiment.RunConfig(model=args.model, width_multiplier=args.reference_width,
                                           conv_bits=8, dw_bits=8 if dw_bits else None,
                                           act_bits=None, dataset=dataset)  # recipe's: 8

    def builder(width):
        return tfq_pareto.experiment.build_float_model(dataclasses.replace(base, width_multiplier=width), info)

    target = tfq_pareto.model_size(builder(args.reference_width), conv_bits=8)
    width = tfq_pareto.width_for_size(builder, target, conv_bits=args.conv_bits, dw_bits=dw_bits,
                                      tolerance=0.03)
    strategy = tfq_pareto.training.make_strategy(args.strategy)
    results = []
    for label, config in [
        ("8-bit", base),
        (f"DualPrecision {args.conv_bits}/{dw_bits}",
         dataclasses.replace(base, conv_bits=args.conv_bits, dw_bits=dw_bits, width_multiplier=width)),
    ]:
        out = os.path.join(args.out, f"{config.model}_c{config.conv_bits}_w{config.width_multiplier:.3f}")
        record = tfq_pareto.experiment.run(config, recipe, out_dir=out, verbose=2,
                                           strategy=strategy, datasets=datasets)
        results.append((label, config.width_multiplier, record))
    print(f"\n{'model':<22}{'width':>7}{'size KiB':>10}{'top-1':>8}")
    for label, width, record in results:
        print(f"{label:<22}{width:>7.3f}{record.size_kib:>10.1f}{100 * record.accuracy:>7.2f}%")


if __name__ == "__main__":
    main()
