"""QAT overhead: training-step time of float vs tfmot 8-bit QAT vs tfq_pareto.apply.

For ResNet-20 and MobileNetV2-CIFAR (batch 128): float, tfmot's default 8-bit
QAT, ``apply`` at 1, 2 and 4 bits (depthwise convs at the same bits) and
DualPrecision (``apply(conv_bits=1, dw_bits=4)``; ResNet-20 has no depthwise
convs, so there DualPrecision is ``apply`` at 1 bit and is not timed twice).
``apply_conv_bits_1_tfmot_activations`` is the "before" of the activation
quantizer's optimisation: ``apply`` at 1 bit with tfmot's
MovingAverageQuantizer on every activation, as ``apply`` had it until
:class:`tfq_pareto.ActivationQuantizer` (ReLU fused into the fake-quant, no
gradient computed for the range) replaced it.

Every configuration's model is built first; then the steps are interleaved
(one step of each configuration per round) so that machine noise hits all of
them alike. Reports, per configuration, the median step time and
``ratio_to_float``: the median over rounds of (step time / float step time of
the same round).

Step time is the process's CPU time (all threads) per step. Wall-clock time is
recorded too (``wall_*``), but on these machines a CPU quota throttles the
process in ~0.1 s slices, which snaps wall-clock steps to a few values (e.g.
0.21 s or 0.31 s for the same work) and hides differences of 10-20%.

    python benchmarks/qat_overhead.py            # both models, batch 128, 40 rounds
    python benchmarks/qat_overhead.py --models resnet20 --breakdown
    python benchmarks/qat_overhead.py --rounds 5 --out /tmp/q.json

Writes ``benchmarks/results/qat_overhead.json``.
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import time

import numpy as np

import tfq_pareto
from tfq_pareto import keras
from tfq_pareto import configs
from tfq_pareto.backend import tf, tfmot
from tfq_pareto.models import mobilenet_v2_cifar, resnet_cifar, vgg11

HERE = os.path.dirname(os.path.abspath(__file__))
#: --models choices: name -> builder of the float model at a width.
MODELS = {
    "resnet20": lambda width: resnet_cifar(depth=20, width_multiplier=width, num_classes=10),
    "mobilenet_v2_cifar": lambda width: mobilenet_v2_cifar(width_multiplier=width, num_classes=10),
    # Table 6's VGG-11 with 4 depthwise-separable layers: not in the default run; a
    # small depthwise model for quick checks.
    "vgg11B": lambda width: vgg11(width_multiplier=width, variant="B", num_classes=10),
}
#: The models of the default run (and of benchmarks/results/qat_overhead.json).
DEFAULT_MODELS = ("resnet20", "mobilenet_v2_cifar")
DEFAULT_OUT = os.path.join(HERE, "results", "qat_overhead.json")


@contextlib.contextmanager
def _identity(*quantizer_classes):
    """Profiling only: makes ``quantizer_classes`` pass their input through while models trace."""
    originals = [cls.__call__ for cls in quantizer_classes]
    for cls in quantizer_classes:
        cls.__call__ = lambda self, inputs, training, weights, **kwargs: inputs
    try:
        yield
    finally:
        for cls, original in zip(quantizer_classes, originals):
            cls.__call__ = original


@contextlib.contextmanager
def _tfmot_activations():
    """"Before": ``apply`` with tfmot's MovingAverageQuantizer for every activation.

    That is what ``apply`` used before :class:`tfq_pareto.ActivationQuantizer`
    (whose ReLU fusion and cheaper gradient make the "after" configurations).
    """
    original = configs.activation_quantizer

    def tfmot_quantizer(num_bits, non_negative=False):
        return tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
            num_bits=num_bits, per_axis=False, symmetric=False, narrow_range=False)

    configs.activation_quantizer = tfmot_quantizer
    try:
        yield
    finally:
        configs.activation_quantizer = original


def _configurations(model_name, width, breakdown=False):
    """name -> (callable building a model, context the model is traced in)."""

    def base():
        return MODELS[model_name](width)

    depthwise = any(isinstance(l, keras.layers.DepthwiseConv2D) for l in base().layers)

    def applied(bits, dw_bits=None):
        return lambda: tfq_pareto.apply(base(), conv_bits=bits,
                                        dw_bits=(dw_bits or bits) if depthwise else None)

    plain = contextlib.nullcontext
    configurations = {
        "float": (base, plain),
        "tfmot_default_8bit": (lambda: tfmot.quantization.keras.quantize_model(base()), plain),
    }
    for bits in (1, 2, 4):
        configurations[f"apply_conv_bits_{bits}"] = (applied(bits), plain)
    if depthwise:
        configurations["dual_precision_conv_1_dw_4"] = (applied(1, 4), plain)
    configurations["apply_conv_bits_1_tfmot_activations"] = (applied(1), _tfmot_activations)
    if breakdown:
        activation = (tfmot.quantization.keras.quantizers.MovingAverageQuantizer,
                      tfq_pareto.ActivationQuantizer)
        configurations["apply_conv_bits_1_weights_only"] = (applied(1), lambda: _identity(*activation))
        configurations["apply_conv_bits_1_activations_only"] = (
            applied(1),
            lambda: _identity(tfq_pareto.PerFilterWeightQuantizer),
        )
    return configurations


def _compile(model, jit_compile):
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def run_model(model_name, rounds=40, warmup=3, batch_size=128, width=1.0, jit_compile=False,
              breakdown=False, seed=0):
    """Times interleaved training steps of one model's configurations; returns its records."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(batch_size, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(batch_size,))
    models = {}
    for name, (build, context) in _configurations(model_name, width, breakdown).items():
        with context():  # the train step is traced during the warm-up steps
            models[name] = _compile(build(), jit_compile)
            for _ in range(max(1, warmup)):
                models[name].train_on_batch(x, y)
    cpu = {name: [] for name in models}
    wall = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            model.train_on_batch(x, y)
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    records = []
    for name in models:
        ratios = [t / f for t, f in zip(cpu[name], cpu["float"])]
        wall_ratios = [t / f for t, f in zip(wall[name], wall["float"])]
        records.append(
            {
                "model": f"{model_name}_w{width:.2f}",
                "configuration": name,
                "median_step_cpu_s": statistics.median(cpu[name]),
                "ratio_to_float": statistics.median(ratios),
                "ratio_p25": float(np.percentile(ratios, 25)),
                "ratio_p75": float(np.percentile(ratios, 75)),
                "median_step_wall_s": statistics.median(wall[name]),
                "wall_ratio_to_float": statistics.median(wall_ratios),
            }
        )
    return records


def run(models=tuple(MODELS), rounds=40, warmup=3, batch_size=128, width=1.0, jit_compile=False,
        breakdown=False, seed=0):
    """Times every model's configurations; returns the result dict."""
    records = []
    for model_name in models:
        records += run_model(model_name, rounds, warmup, batch_size, width, jit_compile,
                             breakdown, seed)
        print(f"{model_name}: done", flush=True)
    return {
        "benchmark": "qat_overhead",
        "batch_size": batch_size,
        "rounds": rounds,
        "warmup": warmup,
        "jit_compile": jit_compile,
        "breakdown": breakdown,
        "step_time": "process CPU time (all threads); wall_* fields: wall clock",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "versions": {
            "tensorflow": tf.__version__,
            "tf_keras": keras.__version__,
            "tfmot": tfmot.__version__,
            "tfq_pareto": tfq_pareto.__version__,
        },
        "records": records,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="interleaved timed rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier of the models")
    parser.add_argument("--jit-compile", action="store_true", help="compile train steps with XLA")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time apply(conv_bits=1) with only its weight or only its activation "
        "quantizers active (the other replaced by identity while tracing)",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help="result JSON path")
    args = parser.parse_args()
    if args.rounds < 1 or args.batch_size < 1 or args.width <= 0:
        parser.error("--rounds and --batch-size must be >= 1 and --width > 0")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"--models: unknown {unknown or args.models!r}; choose from {', '.join(MODELS)}")
    result = run(
        models, args.rounds, args.warmup, args.batch_size, args.width, args.jit_compile, args.breakdown
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    for r in result["records"]:
        print(f"{r['model']:>24} {r['configuration']:>34}: {r['median_step_cpu_s']:.3f} CPU s/step, "
              f"{r['ratio_to_float']:.2f}x float (wall {r['wall_ratio_to_float']:.2f}x)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
