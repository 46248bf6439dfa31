"""Smoke test of the benchmark harness: ``bench/run.py --quick`` on one cheap figure.

Checks that the harness runs and writes the documented JSON shape; it never
asserts a time (benchmarks are not tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "bench" / "run.py"


def test_quick_decisions_figure_writes_the_documented_json(tmp_path):
    pytest.importorskip("openshell_plugin_opa", reason="the opa policy engine plugin is not installed")
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "decisions", "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "### decisions" in proc.stdout  # the printed table
    doc = json.loads(out.read_text())
    assert doc["schema"] == 1 and doc["quick"] is True
    assert {"cpus", "mem_gib", "kernel", "python", "loadavg"} <= set(doc["machine"])
    assert list(doc["figures"]) == ["decisions"]
    fig = doc["figures"]["decisions"]
    assert fig["status"] == "ok" and fig["reason"] == ""
    assert {r["metric"] for r in fig["rows"]} >= {"cold (Rego each call)", "cached"}
    for row in fig["rows"]:
        assert set(row) == {"subject", "metric", "value", "unit", "ratio", "baseline", "note"}
        assert isinstance(row["value"], float) and row["value"] > 0
        assert row["unit"] == "decisions/s"
    (target,) = fig["targets"]
    assert set(target) == {"target", "goal", "value", "met"}
    # --quick sizes say nothing about a goal: recorded, but never judged
    assert target["met"] is None and target["value"].endswith("(--quick: not judged)")


def test_unknown_figure_is_a_usage_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "nosuchfigure", "--out", str(tmp_path / "x.json")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2
    assert "unknown figure nosuchfigure" in proc.stderr
    assert not (tmp_path / "x.json").exists()
