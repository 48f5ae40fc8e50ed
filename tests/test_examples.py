"""The examples run end to end with --tiny."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quickstart_tiny():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "quickstart.py"), "--tiny"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Model size, Eq. (6)" in result.stdout
    assert "1-bit convs, 4-bit acts" in result.stdout and "test acc" in result.stdout
