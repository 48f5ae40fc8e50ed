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


def _readme_cli_groups():
    """The README's ``tfq-pareto`` lines, grouped so that a line runs after the lines whose
    ``--out`` folder it reads (e.g. ``export runs/r20.../model.h5`` after that ``train``);
    independent groups run as separate tests, in parallel under xdist."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        # The demo is the main job (run by its own test); fit-budget's line runs in
        # tests/test_fit_budget.py.
        lines = [l for l in f.read().splitlines()
                 if l.startswith("tfq-pareto ") and l.strip() != "tfq-pareto demo"
                 and not l.startswith("tfq-pareto fit-budget ")]
    groups = []  # [(set of --out folders, [lines])]
    for line in lines:
        words = line.split()
        outputs = {words[i + 1] for i, w in enumerate(words[:-1]) if w == "--out"}
        reads = {w for w in words if w.startswith("runs/") and w not in outputs}
        mine = [g for g in groups if any(r == o or r.startswith(o + "/") for r in reads
                                         for o in g[0])]
        merged = (set(outputs), [])
        for g in mine:
            groups.remove(g)
            merged[0].update(g[0])
            merged[1].extend(g[1])
        merged[1].append(line)
        groups.append(merged)
    groups = [lines for _, lines in groups]
    groups.sort(key=lambda g: (len(g) == 1, g[0].split()[1] == "size"))  # the longest first
    return groups


def _group_id(lines):
    return "+".join(line.split()[1] for line in lines)


@pytest.mark.slow
@pytest.mark.parametrize("lines", _readme_cli_groups(), ids=_group_id)
def test_readme_shell_examples_of_the_cli_run(tmp_path, lines):
    import shlex
    import subprocess

    assert lines
    for line in lines:
        result = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=900,
                                check=False, cwd=tmp_path)
        assert result.returncode == 0, (line, result.stderr[-2000:])


def test_the_readme_cli_lines_are_grouped_by_the_folders_they_share():
    groups = _readme_cli_groups()
    lines = [line for group in groups for line in group]
    assert len(lines) == len(set(lines)) >= 8
    by_command = {_group_id(g): g for g in groups}
    # export reads train's model and runs after it; plot reads the sweep's folder.
    assert "train+export" in by_command and "sweep+plot" in by_command
    assert len(groups) >= 4  # the rest are independent


def _readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_ci_runs_the_test_command_the_readme_gives():
    blocks = re.findall(r"```bash\n(.*?)```", _readme(), flags=re.S)
    commands = [line for block in blocks for line in block.splitlines()
                if "python -m pytest" in line and "[test]" in line]
    assert len(commands) == 1, commands
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert ci[-1] == commands[0].strip()


def _used_names(block):
    """``module.attr.attr`` chains a snippet uses on names it imported from the project."""
    import ast

    tree = ast.parse(block)
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname \
                    else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module.split(".")[0] in (
                "tfq_pareto", "tflite_export"):
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    project = {k: v for k, v in aliases.items() if v.split(".")[0] in ("tfq_pareto", "tflite_export")}
    chains = set(project.values())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts = []
            inner = node
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in project:
                chains.add(".".join([project[inner.id]] + parts[::-1]))
    return chains


def _resolve(dotted):
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_project_name_the_readme_snippets_use_exists():
    blocks = re.findall(r"```python\n(.*?)```", _readme(), flags=re.S)
    names = set().union(*(_used_names(b) for b in blocks))
    assert "tfq_pareto.apply" in names  # the reader sees the snippets' calls
    missing = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"README snippets use names that do not exist: {missing}"


def _slug(heading):
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_to_a_section_point_at_a_heading_that_exists():
    documents = {}
    for name in ("README.md", "BENCHMARKS.md"):
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            documents[name] = f.read()
    anchors = {name: {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
               for name, text in documents.items()}
    links = [(source, target or source, anchor)
             for source, text in documents.items()
             for target, anchor in re.findall(r"\]\(((?:README|BENCHMARKS)\.md)?#([\w\-]+)\)",
                                              text)]
    assert links  # both documents link to sections
    broken = [link for link in links if link[2] not in anchors[link[1]]]
    assert not broken, broken
    assert _slug("Where the order settles: the training floor's grid, epoch by epoch") == \
        "where-the-order-settles-the-training-floors-grid-epoch-by-epoch"
