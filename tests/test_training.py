"""The Appendix A recipe: schedule, weight decay, label smoothing, resuming."""

import dataclasses
import math
import os

import numpy as np
import pytest

import tfq_pareto
from tfq_pareto import keras, training
from tfq_pareto.backend import tf

from conftest import build_plain_cnn


def test_presets_match_appendix_a():
    # Appendix A: "a learning rate of 0.05, ..., warmup ... with 5 epochs, batch size of 128,
    # total training epoch of 300, weight decay of 5e-4, SGD ... Nesterov ... 0.9 momentum";
    # Sec. 3: 4-bit activations on CIFAR, 8-bit on ImageNet.
    c = training.CIFAR
    assert (c.learning_rate, c.batch_size, c.weight_decay, c.warmup_epochs, c.momentum,
            c.nesterov, c.epochs, c.label_smoothing, c.act_bits) == (
        0.05, 128, 5e-4, 5, 0.9, True, 300, 0.0, 4)
    # "Batch size of 256, 120 total epochs for MobileNetV2 and 90 for ResNets, weight decay
    # 4e-5, and 0.1 label smoothing"; the rest identical to CIFAR.
    r, m = training.IMAGENET_RESNET, training.IMAGENET_MOBILENET
    assert (r.batch_size, r.weight_decay, r.label_smoothing, r.epochs, m.epochs) == (
        256, 4e-5, 0.1, 90, 120)
    for preset in (r, m):
        assert (preset.learning_rate, preset.warmup_epochs, preset.momentum, preset.nesterov,
                preset.act_bits) == (0.05, 5, 0.9, True, 8)
        assert m.batch_size == 256 and m.weight_decay == 4e-5 and m.label_smoothing == 0.1


@pytest.mark.parametrize("nesterov", [False, True])
def test_weight_decay_is_an_l2_term_before_momentum(nesterov):
    """Two SGD steps from a known state against the update computed by hand (PyTorch's SGD
    with weight_decay: the decay joins the gradient, then the momentum buffer)."""
    lr, mu, wd = 0.1, 0.9, 0.01
    w0 = np.array([1.0, -2.0, 0.5], "float32")
    grads = [np.array([0.3, 0.1, -0.2], "float32"), np.array([-0.1, 0.4, 0.0], "float32")]
    kernel = tf.Variable(w0, name="conv/kernel")
    bias = tf.Variable(w0, name="conv/bias")
    optimizer = training.L2SGD(l2=wd, learning_rate=lr, momentum=mu, nesterov=nesterov)
    for g in grads:
        optimizer.apply_gradients([(tf.constant(g), kernel), (tf.constant(g), bias)])
    # By hand, PyTorch's form: buf = mu * buf + (g + wd * w); step = g' + mu * buf (Nesterov)
    # or buf; w -= lr * step. tf_keras keeps m = -lr * buf: identical for a constant lr.
    def by_hand(decay):
        w, buf = w0.astype("float64"), np.zeros(3)
        for g in grads:
            g_total = g + decay * w
            buf = mu * buf + g_total
            w = w - lr * (g_total + mu * buf if nesterov else buf)
        return w
    np.testing.assert_allclose(kernel.numpy(), by_hand(wd), rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), by_hand(0.0), rtol=1e-6)  # biases do not decay
    # The decoupled form (tf_keras's weight_decay) moves the kernel about 1/(1 - mu) times less.
    assert not np.allclose(by_hand(wd), by_hand(0.0) * (1 - lr * wd) ** 2, rtol=1e-4)


def test_l2_sgd_round_trips_and_refuses_decoupled_decay():
    optimizer = training.make_optimizer(training.CIFAR, steps_per_epoch=10)
    assert isinstance(optimizer, training.L2SGD) and optimizer.l2 == 5e-4
    clone = training.L2SGD.from_config(optimizer.get_config())
    assert clone.l2 == 5e-4 and clone.nesterov
    with pytest.raises(ValueError, match="give l2, not weight_decay; received weight_decay=0.1"):
        training.L2SGD(weight_decay=0.1)
    with pytest.raises(ValueError, match="l2 must be a number >= 0; received -1"):
        training.L2SGD(l2=-1)


def test_schedule_values_at_epoch_0_5_and_end():
    steps_per_epoch, epochs = 10, 50
    schedule = training.WarmupCosine(0.05, 5 * steps_per_epoch, epochs * steps_per_epoch)
    assert float(schedule(0)) == 0.0
    assert float(schedule(25)) == pytest.approx(0.025)  # halfway through the warm-up
    assert float(schedule(5 * steps_per_epoch)) == pytest.approx(0.05)  # epoch 5: the peak
    middle = (5 + 45 / 2) * steps_per_epoch
    assert float(schedule(middle)) == pytest.approx(0.025, rel=1e-5)  # cosine halfway
    assert float(schedule(epochs * steps_per_epoch)) == pytest.approx(0.0, abs=1e-9)
    step = 30 * steps_per_epoch
    expected = 0.5 * 0.05 * (1 + math.cos(math.pi * (step - 50) / 450))
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)
    assert training.WarmupCosine.from_config(schedule.get_config()).get_config() == schedule.get_config()


def test_optimizer_uses_the_schedule_and_nesterov():
    optimizer = training.make_optimizer(training.CIFAR, steps_per_epoch=10)
    assert optimizer.nesterov and optimizer.momentum == 0.9
    assert isinstance(optimizer._learning_rate, training.WarmupCosine)  # pylint: disable=protected-access


def _kernel_and_bias_after_one_step(weight_decay):
    keras.utils.set_random_seed(0)
    model = tfq_pareto.apply(build_plain_cnn(), conv_bits=1)
    recipe = training.Recipe(epochs=1, warmup_epochs=0, learning_rate=0.5,
                             weight_decay=weight_decay, momentum=0.0, nesterov=False)
    training.compile_model(model, recipe, steps_per_epoch=1)
    # Zero inputs: the data gradient of conv1's kernel is 0, only decay moves it.
    model.train_on_batch(np.zeros((4, 8, 8, 1), "float32"), np.zeros(4, "int64"))
    weights = {w.name: w.numpy() for w in model.weights}
    kernel = [v for k, v in weights.items() if "conv1" in k and "kernel" in k][0]
    bias = [v for k, v in weights.items() if "logits" in k and "bias" in k][0]
    return kernel, bias


def test_weight_decay_shrinks_kernels_only():
    kernel0, _ = _kernel_and_bias_after_one_step(0.0)
    kernel1, _ = _kernel_and_bias_after_one_step(0.1)
    # One SGD step (no momentum) of the L2 term: W <- W - lr * wd * W = 0.95 W.
    np.testing.assert_allclose(kernel1, 0.95 * kernel0, rtol=1e-4, atol=1e-7)
    optimizer = training.make_optimizer(training.CIFAR, 1)
    bias = tf.Variable([1.0], name="dense/bias")
    kernel = tf.Variable([1.0], name="conv/kernel")
    assert not optimizer._use_weight_decay(bias)  # pylint: disable=protected-access
    assert optimizer._use_weight_decay(kernel)  # pylint: disable=protected-access


def test_label_smoothing_is_applied_when_asked():
    logits = tf.constant([[10.0, 0.0, 0.0]])
    plain = training.make_loss(0.0)(tf.constant([0]), logits)
    smooth = training.make_loss(0.1)(tf.one_hot([0], 3), logits)
    assert float(smooth) > float(plain) + 0.5  # smoothing penalises a confident logit
    assert isinstance(training.make_loss(0.1), keras.losses.CategoricalCrossentropy)
    assert training.make_loss(0.1).get_config()["label_smoothing"] == pytest.approx(0.1)


def test_outputs_logits_detects_softmax():
    assert training.outputs_logits(build_plain_cnn())
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    assert not training.outputs_logits(model)
    assert not training.outputs_logits(tfq_pareto.apply(model, conv_bits=8))


@pytest.mark.parametrize(
    "field,value",
    [("epochs", 0), ("epochs", -3), ("batch_size", 0), ("learning_rate", 0), ("warmup_epochs", 9),
     ("momentum", 1.0), ("weight_decay", -1e-4), ("label_smoothing", 1.0), ("act_bits", 1),
     ("act_bits", 16)],
)
def test_bad_recipe_values(field, value):
    with pytest.raises(ValueError, match=f"{field} must be .*received {value!r}"):
        dataclasses.replace(training.Recipe(epochs=5), **{field: value})


def test_bad_strategy():
    with pytest.raises(ValueError, match="strategy must be one of"):
        training.make_strategy("tpu")
    assert training.make_strategy("default") is tf.distribute.get_strategy()


class _Kill(keras.callbacks.Callback):
    def __init__(self, after_epoch):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_begin(self, epoch, logs=None):
        # Killed once epoch `after_epoch` has fully ended (checkpoint and CSV row written).
        if epoch == self.after_epoch + 1:
            raise KeyboardInterrupt("killed")


def _data():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 8, 8, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int64")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


@pytest.mark.slow
def test_killed_run_resumes_at_the_next_epoch_with_the_same_history(tmp_path):
    recipe = training.Recipe(epochs=4, warmup_epochs=1, learning_rate=0.05)
    out = str(tmp_path / "run")

    def build():
        keras.utils.set_random_seed(0)
        return tfq_pareto.apply(build_plain_cnn(num_classes=2), conv_bits=1)

    with pytest.raises(KeyboardInterrupt):
        training.train(build, _data(), _data(), recipe, steps_per_epoch=4, out_dir=out, verbose=0,
                       callbacks=[_Kill(after_epoch=1)])
    before = training.read_history(os.path.join(out, "history.csv"))
    assert before["epoch"] == [0.0, 1.0]
    seen = []

    class _Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    _, history = training.train(build, _data(), _data(), recipe, steps_per_epoch=4, out_dir=out,
                                verbose=0, callbacks=[_Record()])
    assert seen == [2, 3]  # resumed at epoch k+1 = 2
    assert history["epoch"] == [0.0, 1.0, 2.0, 3.0]
    assert history["loss"][:2] == before["loss"] and history["accuracy"][:2] == before["accuracy"]
    assert os.path.isdir(os.path.join(out, "tensorboard"))


@pytest.mark.slow
def test_training_under_a_mirrored_strategy(tmp_path):
    strategy = training.make_strategy("mirrored")  # one CPU replica here; GPUs where present
    assert strategy.num_replicas_in_sync >= 1
    recipe = training.Recipe(epochs=1, warmup_epochs=0)
    model, history = training.train(
        lambda: tfq_pareto.apply(build_plain_cnn(num_classes=2), conv_bits=1), _data(), _data(),
        recipe, steps_per_epoch=4, verbose=0, strategy=strategy)
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])


@pytest.mark.parametrize("warmup,epochs,expected", [
    (5, 300, 5), (5, 6, 5), (5, 5, 4), (5, 2, 1), (5, 1, 0), (0.25, 1, 0), (0.25, 3, 0.25)])
def test_with_epochs_keeps_at_least_one_epoch_of_decay(warmup, epochs, expected):
    recipe = training.Recipe(warmup_epochs=warmup, batch_size=64, weight_decay=1e-4)
    short = recipe.with_epochs(epochs)
    assert (short.epochs, short.warmup_epochs) == (epochs, expected)
    assert dataclasses.replace(short, epochs=300, warmup_epochs=warmup) == recipe


@pytest.mark.parametrize("epochs", [0, -1, 2.5, True, "3"])
def test_with_epochs_refuses_bad_counts(epochs):
    with pytest.raises(ValueError, match=f"epochs must be an int >= 1; received {epochs!r}"):
        training.CIFAR.with_epochs(epochs)
