"""Packages depend one way (issue 17): tfq_pareto <- tflite_export <- tfq_pareto_cli.

The imports are read from the source with ``ast`` (nothing is imported), so an
import inside a function counts as much as one at the top of a file.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY, EXPORTER, CLI = "tfq_pareto", "tflite_export", "tfq_pareto_cli"


def _imports(path):
    """``(line, dotted name)`` of every module ``path`` imports (``from a import b`` gives a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                package = list(path.relative_to(ROOT).parent.parts)
                base = ".".join(package[:len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _files(*folders):
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


def _top(name):
    return name.split(".")[0]


def _private(name):
    """True for a name inside tfq_pareto that starts with an underscore (``tfq_pareto._x``)."""
    parts = name.split(".")
    return parts[0] == LIBRARY and any(p.startswith("_") for p in parts[1:])


def test_the_import_reader_sees_every_form(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("import tflite_export\nfrom tfq_pareto import _graph\n"
                      "def f():\n    from tfq_pareto_cli.cli import main\n", encoding="utf-8")
    names = [name for _, name in _imports(module)]
    assert names == ["tflite_export", "tfq_pareto._graph", "tfq_pareto_cli.cli.main"]
    assert _private("tfq_pareto._graph") and not _private("tfq_pareto.graph")
    assert not _private("tflite_export._x")


@pytest.mark.parametrize("path", _files(LIBRARY), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_imports_neither_the_exporter_nor_the_command_line(path):
    bad = [(line, name) for line, name in _imports(path) if _top(name) in (EXPORTER, CLI)]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: tfq_pareto must not depend on them"


@pytest.mark.parametrize("path", _files(EXPORTER), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_exporter_uses_only_public_library_names(path):
    bad = [(line, name) for line, name in _imports(path)
           if _top(name) == CLI or _private(name)]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", _files(CLI, "examples", "benchmarks", "tests"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_outside_the_library_reaches_its_private_modules(path):
    bad = [(line, name) for line, name in _imports(path) if _private(name)]
    assert not bad, f"{path.relative_to(ROOT)} imports private names {bad}"


def test_nothing_imports_the_command_line_but_its_own_package_and_the_tests():
    for path in _files(LIBRARY, EXPORTER, "examples", "benchmarks"):
        bad = [name for _, name in _imports(path) if _top(name) == CLI]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_command_line_is_the_composition_root():
    names = {_top(name) for path in _files(CLI) for _, name in _imports(path)}
    assert {LIBRARY, EXPORTER} <= names
