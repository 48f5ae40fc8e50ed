"""The tfq-pareto command line."""

import io
import shutil
import subprocess

import pytest

from tfq_pareto_cli import cli


def _run(argv):
    out = io.StringIO()
    status = cli.main(argv, out=out)
    return status, out.getvalue()


def test_size_prints_the_summary_table():
    status, text = _run(["size", "--model", "resnet_cifar", "--depth", "20", "--width", "1.5",
                         "--conv-bits", "1", "--num-classes", "10"])
    assert status == 0
    assert "Model size, Eq. (6): resnet20_cifar_w1.50" in text
    assert "stem_conv" in text and "classifier" in text and "KiB" in text


def test_size_target_kib_prints_the_matched_width():
    status, text = _run(["size", "--model", "resnet_cifar", "--conv-bits", "1",
                         "--num-classes", "10", "--target-kib", "100"])
    assert status == 0
    first = text.splitlines()[0]
    assert first.startswith("width multiplier for 100 KiB: ")
    width = float(first.rsplit(" ", 1)[1])
    total = [l for l in text.splitlines() if l.startswith("Total:")][0]
    kib = float(total.split("=")[1].split("KiB")[0].replace(",", ""))
    assert width > 1.0 and abs(kib - 100) <= 1.0


def test_size_dual_precision_family():
    status, text = _run(["size", "--model", "vgg11", "--variant", "B", "--conv-bits", "1",
                         "--dw-bits", "4"])
    assert status == 0 and "DepthwiseConv2D" in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["size", "--model", "resnet_cifar", "--conv-bits", "9"], "bits must be an int in 1..8; received '9'"),
        (["size", "--model", "resnet_cifar", "--conv-bits", "1", "--width", "0"], "received '0'"),
        (["size", "--model", "alexnet", "--conv-bits", "1"], "invalid choice: 'alexnet'"),
        (["size", "--model", "resnet_cifar"], "--conv-bits"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unreachable_target_is_an_error(capsys):
    status, _ = _run(["size", "--model", "resnet_cifar", "--conv-bits", "1", "--target-kib", "0.001"])
    assert status == 2
    assert "outside what widths" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_is_installed():
    executable = shutil.which("tfq-pareto")
    assert executable, "pip install -e . installs the tfq-pareto command"
    result = subprocess.run([executable, "size", "--help"], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0 and "--target-kib" in result.stdout


TRAIN = ["train", "--model", "resnet_cifar", "--depth", "20", "--width", "0.25", "--conv-bits",
         "1", "--act-bits", "4", "--epochs", "1", "--batch-size", "256", "--quiet"]


@pytest.mark.slow
def test_train_writes_model_record_and_history_and_resumes(tmp_path):
    import json
    import os

    out = str(tmp_path / "run")
    status, text = _run(TRAIN + ["--out", out])
    assert status == 0 and "test accuracy" in text
    for name in ("record.json", "model.h5", "history.csv"):
        assert os.path.exists(os.path.join(out, name)), name
    with open(os.path.join(out, "record.json"), encoding="utf-8") as f:
        record = json.load(f)
    assert record["config"]["conv_bits"] == 1 and record["config"]["act_bits"] == 4
    assert record["recipe"]["epochs"] == 1 and record["recipe"]["learning_rate"] == 0.05
    assert record["size_bits"] > 0 and record["params"] > 0 and 0 <= record["accuracy"] <= 1
    assert record["train_seconds"] > 0
    # A finished run is not retrained: the same record comes back.
    status, again = _run(TRAIN + ["--out", out])
    assert status == 0 and again == text


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--dw-bits", "4"], "has no depthwise convs"),
        (["--dataset", "cifar100", "--data-dir", "EMPTY"], "not prepared in data_dir"),
        (["--dataset", "npz:/nonexistent.npz"], "does not exist"),
    ],
)
def test_train_errors_come_before_training(tmp_path, capsys, extra, message):
    import os

    out = str(tmp_path / "run")
    extra = [str(tmp_path) if e == "EMPTY" else e for e in extra]
    status, _ = _run(TRAIN + ["--out", out] + extra)
    assert status == 2 and message in capsys.readouterr().err
    assert not os.path.exists(out)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "resnet18"], "invalid choice: 'resnet18'"),
        (["--conv-bits", "0"], "received '0'"),
        (["--act-bits", "1"], "activation bits must be in 2..8"),
        (["--epochs", "-2"], "expected an int >= 1; received '-2'"),
        (["--strategy", "tpu"], "invalid choice: 'tpu'"),
    ],
)
def test_train_bad_flags(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(TRAIN + ["--out", "unused"] + argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_demo_tiny_runs_end_to_end(tmp_path):
    import json
    import os

    from tfq_pareto_cli import demo  # pylint: disable=import-outside-toplevel

    out = str(tmp_path / "demo")
    status, text = _run(["demo", "--tiny", "--quiet", "--out", out])
    assert status == 0
    width = f"{demo.DEMO_BUDGET_WIDTH:g}"
    assert f"size budget: the 8-bit ResNet-20 at width {width} =" in text
    assert f"8-bit, width {width}" in text and "1-bit DualPrecision, equal size" in text
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    eight, one = results["records"]
    assert eight["config"]["conv_bits"] == 8 and one["config"]["conv_bits"] == 1
    assert one["width_multiplier"] > 2 * eight["width_multiplier"]
    assert one["config"]["width_multiplier"] == one["width_multiplier"]
    assert [r["label"] for r in results["records"]] == [f"8-bit, width {width}",
                                                        "1-bit DualPrecision, equal size"]
    # Every model trained with the demo's seeds; the verdict compares means with the spread.
    assert results["seeds"] == demo.DEMO_SEEDS
    assert all(len(r["accuracies"]) == demo.DEMO_SEEDS for r in results["records"])
    comparison = results["comparison"]
    assert comparison["margin_points"] == pytest.approx(
        100 * (one["accuracy"] - eight["accuracy"]))
    assert comparison["verdict"] in text
    assert abs(one["size_bits"] - eight["size_bits"]) <= 0.02 * eight["size_bits"]
    assert os.path.getsize(os.path.join(out, "accuracy_vs_size.png")) > 1000
    # It ends by exporting the DualPrecision model and printing the three sizes.
    with open(os.path.join(out, "export", "demo_dual_precision_manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    totals = manifest["totals"]
    assert totals["eq6_bits"] == one["size_bits"]
    for label, size in (("Eq. (6) ideal", f"{totals['eq6_bytes']:,}"),
                        ("int8 .tflite", f"{totals['int8_file_bytes']:,}"),
                        ("packed .tflite (TFLM)", f"{totals['packed_file_bytes']:,}")):
        line = next(l for l in text.splitlines() if l.startswith(label))
        assert size in line
    assert totals["packed_file_bytes"] < totals["int8_file_bytes"] / 5


@pytest.mark.slow
def test_export_command_exports_a_trained_model(tmp_path):
    import json
    import os

    run = str(tmp_path / "run")
    assert _run(TRAIN + ["--out", run])[0] == 0
    out = str(tmp_path / "export")
    status, text = _run(["export", os.path.join(run, "model.h5"), "--data", "digits",
                         "--out", out, "--name", "r20", "--validation-samples", "100"])
    assert status == 0
    manifest = json.load(open(os.path.join(out, "r20_manifest.json"), encoding="utf-8"))
    assert manifest["accuracy"]["samples"] == 100
    assert manifest["activation_bits_qat"] == [4, 8]  # TRAIN trains 4-bit activations
    assert "packed .tflite (TFLM)" in text and "AddDecode" in text
    for suffix in ("_int8.tflite", "_packed.tflite", "_model_data.cc", "_model_data.h"):
        assert os.path.exists(os.path.join(out, "r20" + suffix))


@pytest.fixture(scope="module")
def saved_qat_model(tmp_path_factory):
    """One saved 1-bit ResNet-20 QAT model (16x16x1 inputs), shared by the export error tests."""
    import tfq_pareto  # pylint: disable=import-outside-toplevel

    model = tfq_pareto.apply(tfq_pareto.models.resnet_cifar(
        depth=20, width_multiplier=0.25, num_classes=10, input_shape=(16, 16, 1)), conv_bits=1)
    path = str(tmp_path_factory.mktemp("qat") / "qat.h5")
    tfq_pareto.save_model(model, path)
    return path


@pytest.mark.parametrize("argv,message", [
    (["export", "missing.h5", "--data", "digits", "--out", "OUT"], "no model at 'missing.h5'"),
    (["export", "model.keras", "--data", "digits", "--out", "OUT"], "unsupported format '.keras'"),
    (["export", "MODEL", "--data", "digits", "--out", "OUT", "--name", "9lives"], "C identifier"),
    (["export", "MODEL", "--data", "digits", "--image-size", "8", "--out", "OUT"],
     "expects (16, 16, 1)"),
    (["export", "MODEL", "--data", "npz:/nonexistent.npz", "--out", "OUT"], "does not exist"),
])
def test_export_errors_are_one_line(saved_qat_model, tmp_path, capsys, argv, message):
    path = saved_qat_model
    argv = [path if a == "MODEL" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    status, _ = _run(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2 and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_demo_bad_epochs(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--epochs", "0"])
    assert "received '0'" in capsys.readouterr().err


def test_a_halving_rungs_cut_is_printed_with_its_verdict_on_the_spread():
    one_seed = {"kept": "1", "dropped": "8", "margin": 0.0123, "pooled_std": None,
                "beyond_spread": None}
    assert cli._cut_text(one_seed) == ("; 1 kept over 8 by 1.23 points (one seed: spread "
                                       "unknown; --seeds 2 tells)")
    within = dict(one_seed, pooled_std=0.02, beyond_spread=False)
    assert cli._cut_text(within).endswith("pooled std 2.00: WITHIN the seed spread")
    beyond = dict(one_seed, pooled_std=0.005, beyond_spread=True)
    assert cli._cut_text(beyond).endswith("pooled std 0.50: beyond the seed spread")
    assert cli._cut_text(None) == ""  # the last rung kept every pair left: no cut
