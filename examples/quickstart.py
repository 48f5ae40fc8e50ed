"""Quickstart: a 1-bit DualPrecision CNN on the 8x8 digits scikit-learn ships.

Builds a small float CNN, makes it quantization-aware with ``tfq_pareto.apply``
(1-bit convs, 4-bit activations, first and last layer at 8 bits), prints its
Eq. (6) size table, trains it and reports test accuracy, next to the 8-bit
version of the same network. No download.

    python examples/quickstart.py           # ~1 minute on 2 CPU cores
    python examples/quickstart.py --tiny    # a few seconds, for smoke tests
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits

import tfq_pareto
from tfq_pareto import keras


def load_data(seed=0):
    digits = load_digits()
    x = (digits.images[..., None] / 16.0).astype("float32")  # (1797, 8, 8, 1) in [0, 1]
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    return (x[:split], y[:split]), (x[split:], y[split:])


def build_cnn(width_multiplier=1.0):
    def ch(c):
        return max(1, int(round(c * width_multiplier)))

    inputs = keras.Input((8, 8, 1))
    x = inputs
    for i, (filters, strides) in enumerate([(16, 1), (32, 2), (32, 1), (64, 2)]):
        x = keras.layers.Conv2D(ch(filters), 3, strides=strides, padding="same", use_bias=False,
                                name=f"conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"digits_cnn_w{width_multiplier:.2f}")


def train(model, data, epochs, verbose):
    (x_train, y_train), (x_test, y_test) = data
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=verbose)
    return model.evaluate(x_test, y_test, verbose=0)[1]


def main():
    parser = argparse.ArgumentParser(description="tfq_pareto quickstart on scikit-learn digits")
    parser.add_argument("--tiny", action="store_true", help="1 epoch, for a smoke test")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    epochs = 1 if args.tiny else args.epochs
    keras.utils.set_random_seed(0)
    data = load_data()

    qat = tfq_pareto.apply(build_cnn(), conv_bits=1, dw_bits=None, act_bits=4)
    tfq_pareto.summary(qat, print_fn=print)
    acc_1bit = train(qat, data, epochs, verbose=2)

    qat8 = tfq_pareto.apply(build_cnn(), conv_bits=8, dw_bits=None, act_bits=8)
    acc_8bit = train(qat8, data, epochs, verbose=0)

    print()
    print(f"{'model':<28}{'size (bits)':>12}{'size (KiB)':>12}{'test acc':>10}")
    for name, model, acc in [("1-bit convs, 4-bit acts", qat, acc_1bit),
                             ("8-bit convs, 8-bit acts", qat8, acc_8bit)]:
        bits = tfq_pareto.model_size(model)
        print(f"{name:<28}{bits:>12,}{bits / 8192:>12.2f}{acc:>10.3f}")


if __name__ == "__main__":
    main()
