"""Smoke test of the benchmark harness: ``bench/run.py --quick`` on one cheap figure.

Checks that the harness runs and writes the documented JSON shape; it never
asserts a time (benchmarks are not tests).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "bench" / "run.py"


def test_quick_decisions_figure_writes_the_documented_json(tmp_path):
    pytest.importorskip("openshell_plugin_opa", reason="the opa policy engine plugin is not installed")
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "decisions", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "### decisions" in proc.stdout  # the printed table
    doc = json.loads(out.read_text())
    assert doc["schema"] == 1 and doc["quick"] is True and doc["interrupted"] is False
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
    assert target["met"] is None


def test_unknown_figure_is_a_usage_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "nosuchfigure", "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown figure nosuchfigure" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def _bench_processes(pid: int) -> list[str]:
    """Command lines of live processes a bench run with pid ``pid`` started (its
    gateway is named ``bench<pid>``) that outlived it."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (f"bench{pid} " in cmd or f"bench{pid}/" in cmd):
            found.append(cmd)
    return found


@pytest.mark.timeout(180)
def test_sigterm_tears_down_what_the_run_started_and_marks_the_document(tmp_path):
    # A cancelled CI job or `timeout` sends SIGTERM; leftovers used to break the next run.
    if os.geteuid() != 0:
        pytest.skip("needs root (the lifecycle figure runs a gateway and sandboxes)")
    out = tmp_path / "latest.json"
    proc = subprocess.Popen(
        [sys.executable, str(RUN), "--quick", "--peers", "", "decisions", "lifecycle", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while not _bench_processes(proc.pid) and time.monotonic() < deadline:  # wait until its gateway runs
        time.sleep(0.2)
    assert _bench_processes(proc.pid), "the lifecycle figure never started a gateway"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    assert _bench_processes(proc.pid) == []
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True
    assert doc["figures"]["decisions"]["status"] == "ok" and "lifecycle" not in doc["figures"]
