"""Train (or load) a small DualPrecision CNN and export it for a microcontroller.

A MobileNet-style network on the 8x8 digits scikit-learn ships (no download):
1-bit standard convs, 4-bit depthwise convs, first and last layer at 8 bits.
After QAT it is exported with ``tflite_export.export``: an int8 .tflite for
LiteRT, a packed .tflite in which every 1-bit weight takes one bit (TFLite Micro
LUT compression), and the packed model as a C++ array. The script prints what a
firmware engineer needs: the files, the ops to register and the arena size.

    python examples/export_to_micro.py --out export_digits             # ~1 minute
    python examples/export_to_micro.py --model qat.h5 --out export_digits  # a saved QAT model
    python examples/export_to_micro.py --tiny --out /tmp/x              # seconds
"""

import argparse
import os

import numpy as np
from sklearn.datasets import load_digits

import tflite_export
import tfq_pareto
from tfq_pareto import keras


def load_data(seed=0):
    digits = load_digits()
    x = (digits.images[..., None] / 16.0).astype("float32")  # (1797, 8, 8, 1) in [0, 1]
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    split = int(0.8 * len(x))
    return (x[order[:split]], y[order[:split]]), (x[order[split:]], y[order[split:]])


def build_dual_precision_cnn():
    """Stem conv -> two depthwise-separable blocks -> pooling -> dense."""
    inputs = keras.Input((8, 8, 1), name="digit")
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    for i, (filters, strides) in enumerate([(32, 2), (64, 2)]):
        x = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                         name=f"dw{i + 1}")(x)
        x = keras.layers.BatchNormalization(name=f"dw{i + 1}_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"dw{i + 1}_relu")(x)
        x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"pw{i + 1}")(x)
        x = keras.layers.BatchNormalization(name=f"pw{i + 1}_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"pw{i + 1}_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="digits_dual_precision")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="export_digits", help="output folder")
    parser.add_argument("--model", default=None,
                        help="a saved QAT model (.h5 / SavedModel) on 8x8x1 digits; default: train one")
    parser.add_argument("--epochs", type=int, default=30, help="QAT epochs (default 30)")
    parser.add_argument("--tiny", action="store_true", help="2 epochs, for a smoke test")
    args = parser.parse_args()

    (x_train, y_train), (x_test, y_test) = load_data()
    if args.model:
        qat = tfq_pareto.load_model(args.model, compile=False)
    else:
        qat = tfq_pareto.apply(build_dual_precision_cnn(), conv_bits=1, dw_bits=4)
        qat.compile(keras.optimizers.Adam(3e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
        qat.fit(x_train, y_train, batch_size=32, epochs=2 if args.tiny else args.epochs,
                verbose=0 if args.tiny else 2)
        os.makedirs(args.out, exist_ok=True)
        tfq_pareto.save_model(qat, os.path.join(args.out, "qat.h5"))
    tfq_pareto.summary(qat, print_fn=print)

    result = tflite_export.export(qat, x_train[:500], args.out, name="digits",
                                  validation_data=(x_test, y_test), time_invoke=True)
    manifest, totals = result.manifest, result.totals
    print("\n" + result.sizes_table())
    acc = manifest["accuracy"]
    print(f"\ntest accuracy: Keras QAT {100 * acc['keras']:.2f}%, int8 on LiteRT "
          f"{100 * acc['int8_litert']:.2f}%, packed on TFLite Micro {100 * acc['packed_tflm']:.2f}%")
    print(f"TFLM invoke, packed / int8: {totals['invoke_ratio']:.2f}x")
    print("\nFor the firmware:")
    print(f"  model array : {result.files['cc']} (g_digits_model_data, "
          f"{totals['packed_file_bytes']:,} bytes) and {os.path.basename(result.files['h'])}")
    print(f"  op resolver : tflite::MicroMutableOpResolver<{len(manifest['ops'])}> resolver;")
    for method in manifest["tflm_resolver_methods"]:
        print(f"                resolver.{method}();")
    print(f"  tensor arena: {totals['tflm_arena_bytes_packed']:,} bytes "
          f"(the int8 file alone needs {totals['tflm_arena_bytes_int8']:,}; DECODE writes "
          "each filter into the arena just before its layer runs)")
    print(f"  input       : int8 {manifest['input']['shape']}, scale {manifest['input']['scale']:.6g}, "
          f"zero point {manifest['input']['zero_point']} (x_int8 = round(x / scale) + zero point)")
    print(f"  files       : {', '.join(sorted(os.path.basename(p) for p in result.files.values()))}")


if __name__ == "__main__":
    main()
