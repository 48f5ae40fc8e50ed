"""Keras applications through apply -> fit -> export -> TFLM (benchmarks/applications.py).

CI runs two families, each built with tf_keras and with Keras 3: one that passes and
ConvNeXt, which apply takes (nested models inlined, LayerNormalization, LayerScale)
and export refuses, naming GELU, the op TFLM has no kernel for. All must agree with
the table in the README, which comes from the full run.
"""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_status(family, version):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        rows = [l.strip() for l in f.read().splitlines()
                if re.match(rf"\| {re.escape(family)} \(.*?\| {version} \|", l.strip())]
    assert len(rows) == 1, f"README has no applications row for {family} (Keras {version})"
    return rows[0].split("|")[3].strip()


@pytest.mark.slow
def test_applications_match_the_readme_table(tmp_path):
    out = tmp_path / "apps.json"
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "applications.py"),
                    "--apps", "MobileNet", "ConvNeXt", "--keras", "2", "3", "--out", str(out)],
                   check=True, capture_output=True, timeout=1200)
    records = {(r["family"], r["keras"]): r
               for r in json.load(open(out, encoding="utf-8"))["records"]}
    assert len(records) == 4
    for version in (2, 3):
        passed = records[("MobileNet", version)]
        assert passed["status"] == "passes" and "TFLM_DECODE" in passed["ops"]
        assert passed["packed_file_bytes"] < passed["int8_file_bytes"]
        assert passed["arena_bytes_packed"] > 0 and passed["arena_bytes_int8"] > 0
        refused = records[("ConvNeXt", version)]
        assert refused["status"] == "export"
        assert "no kernel for op(s) ['GELU']" in refused["error"]
        assert "convnext_tiny_stage_0_block_0_gelu" in refused["error"]
        assert _readme_status("MobileNet", version) == "passes"
        assert _readme_status("ConvNeXt", version) == "refused by `export`"


class _Stopped(Exception):
    """Stands for the run being killed mid-way."""


def _benchmark_module():
    import importlib.util  # pylint: disable=import-outside-toplevel
    spec = importlib.util.spec_from_file_location(
        "applications_benchmark", os.path.join(ROOT, "benchmarks", "applications.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_rerun_replaces_old_records_one_by_one_and_resumes_after_an_interruption(
        tmp_path, monkeypatch):
    apps = _benchmark_module()
    out = tmp_path / "apps.json"
    old = [{"family": f, "keras": 2, "status": "passes", "note": "old"}
           for f in ("MobileNet", "VGG", "DenseNet")]
    old[1]["export_revision"] = apps.EXPORT_REVISION  # already measured by this export
    out.write_text(json.dumps({"records": old}))
    calls, stop = [], [True]

    def check(family, version):
        calls.append(family)
        if family == "DenseNet" and stop.pop():
            raise _Stopped  # the run is stopped after MobileNet's new record
        return {"family": family, "keras": version, "status": "export", "error": "new",
                "model": family, "input": 32, "options": {},
                "export_revision": apps.EXPORT_REVISION}

    monkeypatch.setattr(apps, "check", check)
    monkeypatch.setattr(apps, "markdown", lambda records: "")
    argv = ["applications.py", "--apps", "MobileNet", "VGG", "DenseNet", "--keras", "2",
            "--rerun", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(_Stopped):
        apps.main()
    saved = {r["family"]: r for r in json.load(open(out, encoding="utf-8"))["records"]}
    assert calls == ["MobileNet", "DenseNet"]  # VGG has the current revision
    assert saved["MobileNet"].get("error") == "new"
    assert saved["VGG"]["note"] == "old" and saved["DenseNet"]["note"] == "old"  # kept
    calls.clear()
    stop.append(False)
    apps.main()  # resumed: only DenseNet is left
    saved = {r["family"]: r for r in json.load(open(out, encoding="utf-8"))["records"]}
    assert calls == ["DenseNet"]
    assert len(saved) == 3 and saved["DenseNet"].get("error") == "new"


def test_a_family_is_built_with_seeded_initial_weights():
    """A rerun of the benchmark measures the same model: weights repeat under one seed."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    apps = _benchmark_module()
    first, again = apps.build("MobileNet"), apps.build("MobileNet")
    other = apps.build("MobileNet", seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), again.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(first.get_weights(), other.get_weights()))
