"""What users throw at the library: NaN losses and inputs, bad command lines, interrupts."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tfq_pareto
from tfq_pareto import keras, training
from tfq_pareto_cli import cli
from tfq_pareto.backend import tf

from conftest import build_plain_cnn


# --------------------------------------------------------------------------- NaN


def _epoch_dataset(poison_from_epoch):
    """A dataset re-read every epoch; from ``poison_from_epoch`` on, the loss is NaN.

    (NaN in the inputs alone does not do it: the input quantizer zeroes non-finite
    pixels. A NaN sample weight stands for any cause of a NaN loss.)
    """
    state = {"epoch": -1}
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")
    y = (np.arange(64) % 10).astype("int64")

    def generate():
        state["epoch"] += 1
        weights = np.ones(64, "float32")
        if state["epoch"] >= poison_from_epoch:
            weights[20] = np.nan
        for i in range(0, 64, 16):
            yield x[i:i + 16], y[i:i + 16], weights[i:i + 16]

    spec = (tf.TensorSpec((None, 8, 8, 1), tf.float32), tf.TensorSpec((None,), tf.int64),
            tf.TensorSpec((None,), tf.float32))
    return tf.data.Dataset.from_generator(generate, output_signature=spec)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    recipe = training.Recipe(epochs=4, warmup_epochs=0, batch_size=16, learning_rate=0.01)
    qat = tfq_pareto.apply(build_plain_cnn(), conv_bits=1)
    with pytest.raises(training.TrainingDivergedError,
                       match=r"loss became nan at epoch 3.*last finished epoch \(2\).*backup"):
        training.train(qat, _epoch_dataset(poison_from_epoch=2), None, recipe,
                       steps_per_epoch=4, out_dir=out, verbose=0)
    assert os.listdir(os.path.join(out, "backup"))  # the checkpoint was not deleted
    history = training.read_history(os.path.join(out, "history.csv"))
    assert history["epoch"] == [0.0, 1.0] and all(np.isfinite(history["loss"]))
    # With clean data, a rerun resumes after epoch 2 and finishes, no epoch repeated.
    qat = tfq_pareto.apply(build_plain_cnn(), conv_bits=1)
    _, history = training.train(qat, _epoch_dataset(poison_from_epoch=99), None, recipe,
                                steps_per_epoch=4, out_dir=out, verbose=0)
    assert history["epoch"] == [0.0, 1.0, 2.0, 3.0]


def test_nan_loss_in_the_first_epoch_says_there_is_no_checkpoint():
    recipe = training.Recipe(epochs=2, warmup_epochs=0, batch_size=16)
    qat = tfq_pareto.apply(build_plain_cnn(), conv_bits=1)
    with pytest.raises(training.TrainingDivergedError, match="no epoch finished"):
        training.train(qat, _epoch_dataset(poison_from_epoch=0), None, recipe, steps_per_epoch=4,
                       verbose=0)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_nan_inputs_never_reach_the_quantized_weights(bits):
    """A NaN pixel in a training batch: an optimizer step must leave finite weights and ranges."""
    qat = tfq_pareto.apply(build_plain_cnn(), conv_bits=bits)
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    x[1, 2, 3, 0] = np.nan
    qat.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = qat.train_on_batch(x, np.zeros(4, "int64"))  # ranges, BN statistics, weights move
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(w.numpy())) for w in qat.weights)
    clean = np.nan_to_num(x)
    assert np.all(np.isfinite(qat.predict(clean, verbose=0)))
    for wrapper in qat.layers:
        for weight, quantizer, variables in getattr(wrapper, "_weight_vars", []):
            q = quantizer(weight, training=False, weights=variables).numpy()
            assert np.all(np.isfinite(q)), wrapper.name


# --------------------------------------------------------------------------- CLI

BAD_COMMAND_LINES = [
    ([], "the following arguments are required: COMMAND"),
    (["nonsense"], "invalid choice: 'nonsense'"),
    (["size"], "the following arguments are required: --model, --conv-bits"),
    (["size", "--model", "resnet_cifar", "--conv-bits", "9"], "bits must be an int in 1..8"),
    (["size", "--model", "resnet_cifar", "--conv-bits", "1", "--width", "-1"], "expected a number > 0"),
    (["train"], "the following arguments are required: --model, --conv-bits, --out"),
    (["train", "--model", "resnet_cifar", "--conv-bits", "1", "--out", "o", "--batch-size", "0"],
     "expected an int >= 1; received '0'"),
    (["train", "--model", "resnet_cifar", "--conv-bits", "1", "--out", "o", "--lr", "fast"],
     "expected a number > 0; received 'fast'"),
    (["demo", "--epochs", "x"], "expected an int >= 1; received 'x'"),
    (["demo", "--act-bits", "9"], "received '9'"),
    (["analyze"], "the following arguments are required: ANALYSIS"),
    (["analyze", "clipping", "--bits", "2"], "invalid choice: 2"),
    (["analyze", "memory", "--model", "vgg11"], "the following arguments are required: --conv-bits"),
    (["sweep", "--model", "resnet_cifar", "--out", "o", "--widths", "1"],
     "the following arguments are required: --bits"),
    (["sweep", "--model", "resnet_cifar", "--out", "o", "--bits", "1,x", "--widths", "1"],
     "expected comma-separated ints; received '1,x'"),
    (["sweep", "--model", "resnet_cifar", "--out", "o", "--bits", "1", "--widths", "1",
      "--budgets-kib", "3"], "not allowed with argument"),
    (["search", "--model", "resnet_cifar", "--out", "o"], "one of the arguments --budget-kib"),
    (["search", "--model", "resnet_cifar", "--out", "o", "--budget-kib", "9", "--oracle", "genetic"],
     "invalid choice: 'genetic'"),
    (["search", "--model", "resnet_cifar", "--out", "o", "--budget-kib", "9", "--oracle", "proxy",
      "--proxy-fraction", "1.5"], "expected a number in (0, 1]; received '1.5'"),
    (["search", "--model", "resnet_cifar", "--out", "o", "--budget-kib", "9", "--top-k", "0"],
     "expected an int >= 1; received '0'"),
    (["search", "--model", "resnet_cifar", "--out", "o", "--budget-kib", "9", "--oracle", "halving",
      "--rungs", "0.5,0.2"], "strictly increasing, at least one; received ['0.5', '0.2']"),
    (["search", "--model", "resnet_cifar", "--out", "o", "--budget-kib", "9", "--oracle", "halving",
      "--rungs", "1"], "rungs must be fractions of the schedule in (0, 1)"),
    (["search", "--model", "resnet_cifar", "--out", "o", "--budget-kib", "9", "--oracle", "halving",
      "--eta", "1"], "expected an int >= 2; received '1'"),
    (["search", "--model", "resnet_cifar", "--out", "o", "--budget-kib", "9", "--oracle", "halving",
      "--anneal", "1"], "anneal must be a fraction of the schedule's steps in [0, 1)"),
    (["search", "--model", "resnet_cifar", "--out", "o", "--budget-kib", "9", "--oracle", "halving",
      "--anneal", "soon"], "received 'soon'"),
    (["plot"], "the following arguments are required: dir"),
    (["export"], "the following arguments are required: MODEL.h5, --data, --out"),
    (["export", "m.h5", "--data", "digits", "--out", "o", "--samples", "0"],
     "expected an int >= 1; received '0'"),
]


@pytest.mark.parametrize("argv,message", BAD_COMMAND_LINES)
def test_bad_command_lines_exit_2_with_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err and "--help" in err


@pytest.mark.parametrize("argv,message", [
    (["plot", "NOWHERE"], "does not exist: run `tfq-pareto sweep` or `search` first"),
    (["export", "NOWHERE/m.h5", "--data", "digits", "--out", "o"], "no model at"),
    (["train", "--model", "resnet_cifar", "--conv-bits", "1", "--dataset", "npz:NOWHERE/x.npz",
      "--out", "o"], "does not exist"),
    (["size", "--model", "resnet_cifar", "--conv-bits", "1", "--target-kib", "0.001"], "outside what widths"),
])
def test_runtime_errors_are_one_line(tmp_path, capsys, argv, message):
    argv = [a.replace("NOWHERE", str(tmp_path / "missing")).replace("OUT", str(tmp_path / "out"))
            for a in argv]
    status = cli.main(argv, out=open(os.devnull, "w"))
    err = capsys.readouterr().err.strip()
    assert status != 0
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["train", "--model", "x"], ["export", "missing.h5", "--data",
                                                                "digits", "--out", "o"]])
def test_console_script_stderr_is_exactly_one_line(tmp_path, argv):
    result = subprocess.run(["tfq-pareto", *argv], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300, check=False)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("tfq-pareto ")


# --------------------------------------------------------------------------- interrupts

TRAIN = ["tfq-pareto", "train", "--model", "resnet_cifar", "--depth", "20", "--width", "0.25",
         "--conv-bits", "1", "--epochs", "5", "--batch-size", "128", "--image-size", "8", "--quiet"]
SWEEP = ["tfq-pareto", "sweep", "--model", "resnet_cifar", "--depth", "20", "--bits", "1,2,8",
         "--widths", "0.25", "--dataset", "digits", "--image-size", "8", "--epochs", "2",
         "--batch-size", "256", "--quiet"]


def _interrupt_runs(command, rng, kills):
    """Starts ``command`` ``len(kills)`` times, each killed after a random delay with the given signal."""
    for sig in kills:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(8.0, 25.0))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=300)
        if sig == signal.SIGINT and proc.returncode not in (0, 130):
            pytest.fail(f"SIGINT exit {proc.returncode}: {err[-1500:]}")
        if sig == signal.SIGINT and proc.returncode == 130:
            assert "interrupted; rerun the same command to resume" in err
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)


@pytest.mark.slow
def test_train_survives_random_sigint_and_sigkill(tmp_path):
    out = str(tmp_path / "run")
    rng = random.Random(7)
    _interrupt_runs(TRAIN + ["--out", out], rng, [signal.SIGKILL, signal.SIGINT, signal.SIGKILL])
    with open(os.path.join(out, "history.csv"), newline="", encoding="utf-8") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == [0, 1, 2, 3, 4]  # none lost, none repeated
    with open(os.path.join(out, "record.json"), encoding="utf-8") as f:
        assert json.load(f)["recipe"]["epochs"] == 5


@pytest.mark.slow
def test_sweep_survives_random_sigint_and_sigkill(tmp_path):
    out = str(tmp_path / "sweep")
    rng = random.Random(11)
    finished = {}
    command = SWEEP + ["--out", out]
    for sig in (signal.SIGKILL, signal.SIGINT, signal.SIGKILL):
        _interrupt_runs_once = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(10.0, 40.0))
        _interrupt_runs_once.send_signal(sig)
        _interrupt_runs_once.wait(timeout=300)
        # Trials finished so far keep their files untouched from here on.
        for record in _records(out):
            finished.setdefault(record["model_file"], os.path.getmtime(record["model_file"]))
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=900)
    records = _records(out)
    assert sorted(r["conv_bits"] for r in records) == [1, 2, 8]  # each trial exactly once
    for path, mtime in finished.items():
        assert os.path.getmtime(path) == mtime, f"{path} was retrained"


def _records(out):
    path = os.path.join(out, "results.json")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [r for r in json.load(f)["records"] if r.get("accuracy") is not None]
