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
