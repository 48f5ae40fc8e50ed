"""The examples run end to end with --tiny."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), "--tiny", *args],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_quickstart_tiny():
    out = _run("quickstart.py")
    assert "Model size, Eq. (6)" in out
    assert "1-bit convs, 4-bit acts" in out and "test acc" in out


@pytest.mark.slow
def test_cifar100_pareto_tiny(tmp_path):
    out = _run("cifar100_pareto.py", "--out", str(tmp_path))
    assert "bits   width  size KiB  accuracy" in out
    assert (tmp_path / "points.json").exists() and (tmp_path / "pareto.png").exists()


@pytest.mark.slow
def test_imagenet_dualprecision_tiny(tmp_path):
    out = _run("imagenet_dualprecision.py", "--out", str(tmp_path))
    # Defaults: Table 7 / Appendix E selected 4-bit convs and 4-bit depthwise convs.
    assert "8-bit" in out and "DualPrecision 4/4" in out and "top-1" in out


@pytest.mark.slow
def test_export_to_micro_tiny(tmp_path):
    import json

    out = tmp_path / "export"
    text = _run("export_to_micro.py", "--out", str(out))
    assert "resolver.AddDecode();" in text and "tensor arena:" in text
    manifest = json.load(open(out / "digits_manifest.json", encoding="utf-8"))
    assert manifest["verification"]["tflm_packed_equals_int8"]
    assert manifest["accuracy"]["packed_tflm"] == manifest["accuracy"]["int8_litert"]
    # The saved QAT model exports to the same packed file.
    again = tmp_path / "again"
    _run("export_to_micro.py", "--model", str(out / "qat.h5"), "--out", str(again))
    assert (again / "digits_packed.tflite").read_bytes() == (out / "digits_packed.tflite").read_bytes()
