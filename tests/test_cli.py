"""The tfq-pareto command line."""

import io
import shutil
import subprocess

import pytest

from tfq_pareto import cli


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
