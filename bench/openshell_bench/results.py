"""Result shapes, statistics and the printed table.

A run is a JSON document (``bench/results/latest.json``)::

    {"schema": 1, "started": ISO-8601, "seconds": float, "quick": bool,
     "interrupted": bool,  # Ctrl-C/SIGTERM: figures not finished are absent
     "machine": {"cpus", "mem_gib", "kernel", "python", "cpu_model", "loadavg"},
     "figures": {NAME: {"title", "status": "ok"|"skipped"|"error", "reason",
                        "rows": [{"subject", "metric", "value", "unit",
                                  "ratio", "baseline", "note"}],
                        "targets": [{"target", "goal", "value", "met"}],
                        "seconds": float}}}

``ratio`` is ``value / baseline value`` measured in the same run (None when the
row is its own baseline or none applies). A target's ``met`` is None when the
run does not judge it (``--quick`` sizes, or fewer sandboxes than the goal). Rows whose subject could not be
measured carry ``value: null`` and the reason in ``note``.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

SCHEMA = 1


class Skip(Exception):
    """Raised by a figure (or one subject of it) that cannot run here; the message is the reason."""


@dataclass
class Row:
    """One measured number.

    :ivar subject: what was measured (``openshell``, ``direct``, ``squid`` ...).
    :ivar metric: what the number is (``throughput 1 stream``, ``p50 1 client`` ...).
    :ivar value: the number, or None when the subject was skipped (``note`` says why).
    :ivar unit: ``MiB/s``, ``ms``, ``decisions/s`` ...
    :ivar ratio: value / baseline value of the same run, or None.
    :ivar baseline: the subject the ratio is against.
    """

    subject: str
    metric: str
    value: float | None
    unit: str
    ratio: float | None = None
    baseline: str | None = None
    note: str = ""


@dataclass
class Target:
    """A goal of the issue and where this run stands against it."""

    target: str
    goal: str
    value: str
    met: bool | None


@dataclass
class FigureResult:
    """What one figure produced."""

    title: str
    status: str = "ok"  # ok | skipped | error
    reason: str = ""
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, *args, **kwargs) -> Row:
        """Append ``Row(*args, **kwargs)`` and return it."""
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def skip_row(self, subject: str, metric: str, unit: str, reason: str) -> Row:
        """Record a subject that could not be measured, with the reason."""
        return self.add(subject, metric, None, unit, note=f"skipped: {reason}")

    def relate(self, baseline: str, *, higher_is_better: bool = True) -> None:
        """Fill ``ratio`` of every row from the ``baseline`` subject's row with the same metric."""
        base = {r.metric: r.value for r in self.rows if r.subject == baseline and r.value}
        for r in self.rows:
            if r.subject != baseline and r.value is not None and base.get(r.metric):
                r.ratio = r.value / base[r.metric]
                r.baseline = baseline

    def to_dict(self) -> dict:
        """This result as plain JSON-ready data (the ``figures`` entry of the run document)."""
        return asdict(self)


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` (0-100) percentile by the nearest-rank method. :raises ValueError: no samples."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def machine() -> dict:
    """The machine a run was made on (for BENCHMARKS.md)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                break  # the first processor's block ends at the first blank line
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu_model = info.get("model name", "")
    if cpu_model and "cpu family" in info:  # virtual CPUs often say only "Intel(R) Xeon(R) Processor"
        cpu_model += f" (family {info['cpu family']} model {info.get('model', '?')} stepping {info.get('stepping', '?')})"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_gib": round(mem, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def document(results: dict[str, FigureResult], *, quick: bool, started: float, interrupted: bool = False) -> dict:
    """The JSON run document (shape in the module docstring)."""
    return {
        "schema": SCHEMA,
        "started": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "quick": quick,
        "interrupted": interrupted,
        "machine": machine(),
        "figures": {name: res.to_dict() for name, res in results.items()},
    }


def write(doc: dict, path: Path) -> None:
    """Write ``doc`` atomically to ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(doc: dict) -> str:
    """A Markdown table of every figure (what ``run.py`` prints and BENCHMARKS.md keeps)."""
    lines = []
    m = doc["machine"]
    lines.append(
        f"Run {doc['started']} ({'quick' if doc['quick'] else 'full'}, {doc['seconds']} s) on "
        f"{m['cpus']} CPUs ({m['cpu_model'] or 'unknown CPU'}), {m['mem_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, load {m['loadavg']}"
    )
    for name, fig in doc["figures"].items():
        lines.append("")
        head = f"### {name}: {fig['title']}"
        if fig["status"] != "ok":
            head += f" — {fig['status'].upper()}: {fig['reason']}"
        lines.append(head)
        if fig["rows"]:
            lines.append("")
            lines.append("| subject | metric | value | unit | vs baseline | note |")
            lines.append("|---|---|---:|---|---:|---|")
            for r in fig["rows"]:
                ratio = f"{r['ratio']:.2f}× {r['baseline']}" if r["ratio"] is not None else ""
                cells = (r["subject"], r["metric"], _fmt(r["value"]), r["unit"], ratio, r["note"])
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        if fig["targets"]:
            lines.append("")
            for t in fig["targets"]:
                mark = {True: "met", False: "NOT met", None: "not judged"}[t["met"]]
                lines.append(f"- target {t['target']}: goal {t['goal']}, now {t['value']} — {mark}")
    return "\n".join(lines)
