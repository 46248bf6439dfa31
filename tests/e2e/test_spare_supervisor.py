"""The local driver's spare supervisor (create-to-READY).

One supervisor process waits with its imports done; a create hands it the
sandbox, and a new spare is started for the next one. These tests run a
gateway of their own so they can count its processes and stop it.
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
from conftest import _start_gateway, require_root  # tests/ is on sys.path (conftest)
from openshell.supervisor.spare import _assignment

pytestmark = pytest.mark.timeout(240)

SECRET_ENV = "OPENSHELL_SPARE_TEST_TOKEN"


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _spares(gw) -> list[int]:
    """Live spare supervisors of gateway ``gw`` not yet handed a sandbox."""
    assigned = {int(p.read_text()) for p in gw.state_dir.glob("sandboxes/*/supervisor.pid")}
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == gw.pid and fields[0] != "Z" and "--spare" in _cmdline(int(entry)) and int(entry) not in assigned:
            out.append(int(entry))
    return out


def _wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


@pytest.fixture
def gw(tmp_path):
    require_root()
    os.environ[SECRET_ENV] = "must-not-reach-a-supervisor"
    try:
        gw = _start_gateway(tmp_path, f"spare{os.getpid() % 1000}")
    finally:
        del os.environ[SECRET_ENV]
    gw.pid = int((gw.state_dir / "gateway.pid").read_text())
    yield gw
    gw.cli("sandbox", "delete", "--all", timeout=120)
    gw.cli("gateway", "stop", "--name", gw.name, timeout=60)


def _supervisor_pid(gw, name: str) -> int:
    records = {r["name"]: r for r in json.loads(gw.cli("sandbox", "list", "-o", "json", check=True).stdout)}
    sid = records[name]["id"]
    return int((gw.state_dir / "sandboxes" / sid / "supervisor.pid").read_text())


def test_a_create_takes_the_waiting_spare_and_a_new_one_replaces_it(gw):
    [spare] = _wait_for(lambda: _spares(gw))
    assert _nice(spare) == 10  # warms up without slowing sandboxes that are starting
    environ = Path(f"/proc/{spare}/environ").read_bytes()
    assert SECRET_ENV.encode() not in environ  # only the supervisor's allow-listed variables

    gw.cli("sandbox", "create", "--name", "warm", "--detach", check=True)
    sup = _supervisor_pid(gw, "warm")
    assert sup == spare
    assert _nice(sup) == 0  # a supervisor runs at normal priority once assigned
    [log] = gw.state_dir.glob("sandboxes/*/supervisor.log")
    text = log.read_text()
    # The driver's line comes first: a spare that died before opening the log
    # would still leave the sandbox's ERROR reason something to show.
    assert text.startswith(f"handed to spare supervisor pid {spare}\n")
    assert "event=ready" in text  # its output goes to the sandbox's log
    p = gw.sx("warm", "sh", "-c", "echo hello from $(id -un)")
    assert p.returncode == 0 and p.stdout.decode().strip() == "hello from sandbox", p.stderr

    [fresh] = _wait_for(lambda: _spares(gw))
    assert fresh != spare


def test_without_a_live_spare_the_supervisor_starts_cold(gw):
    [spare] = _wait_for(lambda: _spares(gw))
    os.kill(spare, signal.SIGKILL)
    _wait_for(lambda: not _spares(gw))
    gw.cli("sandbox", "create", "--name", "cold", "--detach", check=True)
    sup = _supervisor_pid(gw, "cold")
    assert "--config" in _cmdline(sup)
    p = gw.sx("cold", "true")
    assert p.returncode == 0, p.stderr
    assert _wait_for(lambda: _spares(gw))  # the next create is warm again


def test_stopping_the_gateway_leaves_no_spare(gw):
    [spare] = _wait_for(lambda: _spares(gw))
    gw.cli("gateway", "stop", "--name", gw.name, check=True, timeout=60)
    assert _wait_for(lambda: not Path(f"/proc/{spare}").exists() or "Z" == Path(f"/proc/{spare}/stat").read_text().rsplit(")", 1)[1].split()[0], 10)


def test_a_spare_ignores_anything_but_one_well_formed_line(tmp_path):
    assert _assignment(b'{"config": "/x/supervisor.json", "log": "/x/supervisor.log"}\n') == ("/x/supervisor.json", "/x/supervisor.log")
    for line in (b"", b'{"config": "/x", "log": "/y"}', b"not json\n", b'{"config": "rel", "log": "/y"}\n', b'{"config": 1, "log": "/y"}\n', b'["/x", "/y"]\n'):
        assert _assignment(line) is None, line
    # A real spare given garbage exits at once without starting anything or writing a log.
    proc = subprocess.run([sys.executable, "-m", "openshell.supervisor", "--spare"], input=b"garbage\n", capture_output=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and not list(tmp_path.iterdir())
