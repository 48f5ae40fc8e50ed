"""int8 conversion time: the frozen inference function vs ``from_keras_model``.

``tflite_export.convert.to_int8`` hands the TFLite converter the float twin's
traced inference function with its variables frozen; ``from_keras_model``
(``to_int8(..., frozen=False)``) first saves the twin as a SavedModel and loads
it back. For each model (1-bit QAT, BN parameters randomized as training leaves
them, 64 random calibration images) both conversions run ``--repeats`` times,
interleaved, and the benchmark records:

- the median wall-clock seconds of each and their ratio (``keras / frozen``);
- whether the two int8 files hold the same ops (in order), the same tensor
  constants (weights, biases) and the same input/output quantization, and whether LiteRT gives
  bit-identical outputs on 16 random inputs.

    python benchmarks/convert_time.py              # ResNet-20 and MobileNetV2-CIFAR, ~3 minutes
    python benchmarks/convert_time.py --models resnet20 --repeats 1

Writes ``benchmarks/results/convert_time.json``.
"""

import argparse
import importlib
import os
import platform
import statistics
import time

import numpy as np

import tfq_pareto
from tflite_export import flatbuffer, runtime
from tfq_pareto import models
from tfq_pareto.training import write_json

from export_size import _trained_like  # benchmarks/ is the script's folder

convert = importlib.import_module("tflite_export.convert")
twin = importlib.import_module("tflite_export.twin")

HERE = os.path.dirname(os.path.abspath(__file__))
#: --models choices: name -> (builder at a width, whether it has depthwise convs).
MODELS = {
    "resnet20": (lambda width: models.resnet_cifar(depth=20, width_multiplier=width,
                                                   num_classes=10), False),
    "mobilenet_v2_cifar": (lambda width: models.mobilenet_v2_cifar(width_multiplier=width,
                                                                   num_classes=10), True),
}


def _same_file_content(a, b):
    """Same ops in order, same tensor constants (as a multiset), same I/O quantization."""
    ma, mb = flatbuffer.read(a), flatbuffer.read(b)

    def ops(model):
        return [flatbuffer.op_name(model, op) for sg in model.subgraphs for op in sg.operators]

    def buffers(model):  # the tensors' constant data (not the metadata buffers)
        data = [model.buffers[t.buffer].data for sg in model.subgraphs for t in sg.tensors]
        return sorted(bytes(np.asarray(d, np.uint8)) for d in data if d is not None and len(d))

    quantization = all(x["quantization"] == y["quantization"]
                       and list(x["shape"]) == list(y["shape"])
                       for x, y in zip(runtime.io_details(a), runtime.io_details(b)))
    return {"same_ops": ops(ma) == ops(mb), "same_weights": buffers(ma) == buffers(mb),
            "same_io_quantization": bool(quantization)}


def _outputs(data, x):
    details = runtime.io_details(data)[0]
    return runtime.litert_outputs(data, convert.quantize_inputs(x, details))


def measure(name, width, repeats, rng):
    build, depthwise = MODELS[name]
    qat = tfq_pareto.apply(build(width), conv_bits=1, dw_bits=4 if depthwise else None,
                           act_bits=4)
    float_twin, _ = twin.float_twin(_trained_like(qat), activation_ranges_from="calibration")
    samples = rng.uniform(0, 1, (64, *qat.input_shape[1:])).astype("float32")
    seconds = {"frozen": [], "keras": []}
    files = {}
    for _ in range(repeats):
        for path in ("frozen", "keras"):
            start = time.perf_counter()
            files[path] = convert.to_int8(float_twin, samples, frozen=path == "frozen")
            seconds[path].append(time.perf_counter() - start)
    x = rng.uniform(0, 1, (16, *qat.input_shape[1:])).astype("float32")
    frozen_s, keras_s = (statistics.median(seconds[p]) for p in ("frozen", "keras"))
    return {
        "model": name, "width_multiplier": width, "layers": len(float_twin.layers),
        "frozen_seconds": frozen_s, "keras_seconds": keras_s, "ratio_keras_to_frozen":
        keras_s / frozen_s, "seconds": seconds,
        "frozen_file_bytes": len(files["frozen"]), "keras_file_bytes": len(files["keras"]),
        **_same_file_content(files["frozen"], files["keras"]),
        "same_litert_outputs": bool(np.array_equal(_outputs(files["frozen"], x),
                                                   _outputs(files["keras"], x))),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"of {', '.join(MODELS)}")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "convert_time.json"))
    args = parser.parse_args()
    names = args.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {sorted(MODELS)}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; received {args.repeats}")
    rng = np.random.default_rng(0)
    records = []
    for name in names:
        records.append(measure(name, args.width, args.repeats, rng))
        write_json(args.out, {"machine": {"cpus": os.cpu_count(), "python":
                                          platform.python_version()},
                              "measure": "median wall-clock seconds of to_int8, both paths "
                                         "interleaved in one process",
                              "records": records})
        r = records[-1]
        print(f"{name}: frozen {r['frozen_seconds']:.2f} s, keras {r['keras_seconds']:.2f} s "
              f"(x{r['ratio_keras_to_frozen']:.1f}); same ops {r['same_ops']}, weights "
              f"{r['same_weights']}, outputs {r['same_litert_outputs']}")


if __name__ == "__main__":
    main()
