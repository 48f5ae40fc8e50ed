"""The README's quickstart snippet runs as written."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_readme_quickstart_runs():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python snippet"
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # pylint: disable=exec-used
    assert namespace["tfq_pareto"].model_size(namespace["restored"]) == namespace[
        "tfq_pareto"
    ].model_size(namespace["qat"])


@pytest.mark.slow
def test_readme_every_python_snippet_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets write their outputs (e.g. export_digits/) here
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert len(blocks) >= 2
    for block in blocks[1:]:
        exec(compile(block, "README.md", "exec"), {})  # pylint: disable=exec-used


@pytest.mark.slow
def test_readme_shell_examples_of_the_cli_run(tmp_path):
    import shlex
    import subprocess

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        lines = [l for l in f.read().splitlines()
                 if l.startswith("tfq-pareto ") and l.strip() != "tfq-pareto demo"]
    assert lines
    for line in lines:
        result = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=600,
                                check=False, cwd=tmp_path)
        assert result.returncode == 0, (line, result.stderr[-2000:])
