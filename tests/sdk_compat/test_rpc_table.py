"""docs/sdk-compat.md's table of every SDK call cannot go stale: it must list every
RPC of the 0.1.5 wheel's service descriptor once, with the SDK's public methods that
reach it, and its status must be what a real gateway answers through the wheel's
stub (see sdk_inventory.py)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(900)

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[1] / "docs" / "sdk-compat.md"
HEADING = "## Every call of the SDK and its status"
ROW = re.compile(r"^\| `(\w+)` \| ([\w-]+) \| (.*?) \| (served|UNIMPLEMENTED) \| (.+?) \|$")


def _table() -> dict[str, dict]:
    """RPC -> {"kind", "methods", "status", "why"} from the doc's table (rows in order)."""
    text = DOC.read_text()
    assert HEADING in text, f"{DOC} has no section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        m = ROW.match(line)
        assert m, f"row not understood: {line}"
        name, kind, methods, status, why = m.groups()
        assert name not in rows, f"{name} is listed twice"
        rows[name] = {"kind": kind, "methods": re.findall(r"`([\w.]+)`", methods), "status": status, "why": why.strip()}
    return rows


def _inventory(sdk_python: Path, *args: str, env: dict | None = None) -> dict:
    proc = subprocess.run([str(sdk_python), str(HERE / "sdk_inventory.py"), *args], env=env, capture_output=True, timeout=600, cwd="/", check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def test_the_table_lists_every_rpc_of_the_wheel_with_its_sdk_methods(sdk_python):
    inv = _inventory(sdk_python)
    table = _table()
    wheel = [r["name"] for r in inv["rpcs"]]
    assert len(wheel) == len(set(wheel))
    missing = [n for n in wheel if n not in table]
    assert not missing, f"RPCs of the wheel missing from {DOC.name}: {missing}"
    extra = [n for n in table if n not in wheel]
    assert not extra, f"{DOC.name} lists RPCs the wheel does not know: {extra}"
    assert list(table) == wheel, "rows are in the descriptor's order"
    for rpc in inv["rpcs"]:
        row = table[rpc["name"]]
        assert row["kind"] == rpc["kind"], rpc["name"]
        assert row["methods"] == inv["methods"].get(rpc["name"], []), f"{rpc['name']}: SDK methods"
        assert row["why"] not in ("", "?"), f"{rpc['name']}: say why"
    # The SDK's helpers all reach something (a method list that came out empty would
    # mean the inventory no longer reads the wheel's source).
    assert {"SandboxClient.create", "SandboxClient.exec", "WorkspaceClient.delete"} <= {m for ms in inv["methods"].values() for m in ms}
    # The counts the section's text states.
    served = sum(1 for row in table.values() if row["status"] == "served")
    assert f"({len(wheel)}, in the descriptor's order; **{served} served**, {len(wheel) - served} `UNIMPLEMENTED`)" in " ".join(DOC.read_text().split())


def test_the_tables_status_is_what_the_gateway_answers(gateway, sdk_python):
    probed = _inventory(sdk_python, "--probe", env=gateway.env)
    answers = probed["codes"]
    table = _table()
    assert set(answers) == set(table)
    wrong = {name: [row["status"], answers[name]] for name, row in table.items() if (answers[name] == "UNIMPLEMENTED") != (row["status"] == "UNIMPLEMENTED")}
    assert not wrong, f"{DOC.name} status vs. what the gateway answered an empty request: {wrong}"
    # The empty CreateSandbox made a sandbox in workspace default; the probe deleted it.
    assert probed["created"], "an empty CreateSandboxRequest creates a sandbox"
    left = gateway.cli("sandbox", "get", probed["created"])
    assert left.returncode != 0 and b"not found" in left.stderr.lower(), left
