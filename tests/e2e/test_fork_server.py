"""The local driver's supervisor fork server (create-to-READY, memory per sandbox).

One process has done the supervisor's imports; each create has it fork the
sandbox's supervisor, which shares the imported modules' pages with it. These
tests run a gateway of their own so they can count its processes and stop it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import OPENSHELL, _start_gateway, require_root  # tests/ is on sys.path (conftest)
from hostview import cmdline
from openshell.supervisor.forkserver import _assignment

pytestmark = pytest.mark.timeout(240)

SECRET_ENV = "OPENSHELL_FORK_SERVER_TEST_TOKEN"


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (index 0 is the state)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _nice(pid: int) -> int:
    return int(_stat(pid)[16])


def _rollup(pid: int, key: str) -> int:
    """``key`` of /proc/PID/smaps_rollup in KiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in smaps_rollup of {pid}")


def _servers(gw) -> list[int]:
    """Live fork servers that are children of gateway ``gw``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat(int(entry))
        except OSError:
            continue
        if int(fields[1]) == gw.pid and fields[0] != "Z" and "--fork-server" in cmdline(int(entry)):
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
        gw = _start_gateway(tmp_path, f"fork{os.getpid() % 1000}")
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


def test_creates_fork_their_supervisors_from_one_warm_server(gw):
    [server] = _wait_for(lambda: _servers(gw))
    assert _nice(server) == 10  # warms up without slowing sandboxes that are starting
    environ = Path(f"/proc/{server}/environ").read_bytes()
    assert SECRET_ENV.encode() not in environ  # only the supervisor's allow-listed variables

    gw.cli("sandbox", "create", "--name", "warm-a", "--detach", check=True)
    gw.cli("sandbox", "create", "--name", "warm-b", "--detach", check=True)
    sups = [_supervisor_pid(gw, n) for n in ("warm-a", "warm-b")]
    assert _servers(gw) == [server]  # the same server forked both
    for sup in sups:
        # named for its sandbox, not the server: `pkill -f -- --fork-server` spares it
        assert cmdline(sup)[0].startswith("openshell-supervisor ") and "--fork-server" not in " ".join(cmdline(sup))
        assert Path(f"/proc/{sup}/comm").read_text() == "openshell-super\n"
        fields = _stat(sup)
        assert int(fields[1]) == server and int(fields[2]) == sup  # its child, leading its own process group
        assert _nice(sup) == 0  # a supervisor runs at normal priority
    for log in gw.state_dir.glob("sandboxes/*/supervisor.log"):
        text = log.read_text()
        # The driver's line comes first: a supervisor that died before opening the
        # log would still leave the sandbox's ERROR reason something to show.
        assert text.startswith(f"forked from the supervisor fork server (pid {server})\n")
        assert "event=ready" in text  # its output goes to the sandbox's log
    p = gw.sx("warm-a", "sh", "-c", "echo hello from $(id -un)")
    assert p.returncode == 0 and p.stdout.decode().strip() == "hello from sandbox", p.stderr
    # The point of forking: the interpreter heap made by the imports stays shared
    # with the server (copy on write), which a supervisor started cold never has.
    assert _rollup(sups[0], "Shared_Dirty") > 5 * 1024, Path(f"/proc/{sups[0]}/smaps_rollup").read_text()

    gw.cli("sandbox", "delete", "warm-b", check=True)
    # the server reaps the supervisors it forked: no zombie is left
    assert _wait_for(lambda: not Path(f"/proc/{sups[1]}").exists(), 10)


def test_without_a_live_server_the_supervisor_starts_cold_and_a_new_server_follows(gw):
    [server] = _wait_for(lambda: _servers(gw))
    os.kill(server, signal.SIGKILL)
    _wait_for(lambda: not _servers(gw))
    gw.cli("sandbox", "create", "--name", "cold", "--detach", check=True)
    sup = _supervisor_pid(gw, "cold")
    assert "--config" in cmdline(sup)
    p = gw.sx("cold", "true")
    assert p.returncode == 0, p.stderr
    [fresh] = _wait_for(lambda: _servers(gw))  # the next create is forked again
    assert fresh != server
    gw.cli("sandbox", "create", "--name", "again", "--detach", check=True)
    assert int(_stat(_supervisor_pid(gw, "again"))[1]) == fresh


def _wait_for_error(gw, name: str) -> dict:
    def errored():
        rec = json.loads(gw.cli("sandbox", "get", name, "-o", "json", check=True).stdout)
        return rec if rec["phase"] == "ERROR" else None

    rec = _wait_for(errored, 15)
    assert rec, f"{name} never went to ERROR"
    return rec


def test_a_killed_supervisor_is_named_by_its_signal_forked_or_cold(gw):
    gw.cli("sandbox", "create", "--name", "sig-forked", "--detach", check=True)
    forked = _supervisor_pid(gw, "sig-forked")
    [server] = _servers(gw)
    assert int(_stat(forked)[1]) == server
    os.kill(forked, signal.SIGKILL)
    rec = _wait_for_error(gw, "sig-forked")
    assert rec["reason"].startswith(f"the supervisor (pid {forked}) was killed by signal 9 (SIGKILL)"), rec
    # Started cold (no fork server), it is the gateway's own child.
    os.kill(server, signal.SIGKILL)
    _wait_for(lambda: not _servers(gw))
    gw.cli("sandbox", "create", "--name", "sig-cold", "--detach", check=True)
    cold = _supervisor_pid(gw, "sig-cold")
    assert int(_stat(cold)[1]) == gw.pid
    # Not handled, so it ends the supervisor (and dumps no core). Not SIGHUP: a run
    # under nohup ignores that one, and the gateway's children inherit the ignoring.
    os.kill(cold, signal.SIGUSR2)
    rec = _wait_for_error(gw, "sig-cold")
    assert rec["reason"].startswith(f"the supervisor (pid {cold}) was killed by signal 12 (SIGUSR2)"), rec


def test_the_server_records_how_each_supervisor_ended(tmp_path):
    # A supervisor whose config is missing exits with code 1; the server writes that
    # to supervisor.exit beside the config before it collects the child.
    line = json.dumps({"config": str(tmp_path / "supervisor.json"), "log": str(tmp_path / "supervisor.log")}).encode() + b"\n"
    server = subprocess.Popen([sys.executable, "-m", "openshell.supervisor", "--fork-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(line)
        server.stdin.flush()
        pid = int(server.stdout.readline())
        record = _wait_for(lambda: (tmp_path / "supervisor.exit").is_file() and json.loads((tmp_path / "supervisor.exit").read_text()))
        assert record == {"pid": pid, "code": 1}, record
        assert _wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10)  # and collected it
    finally:
        server.kill()
        server.wait()


def test_a_create_waiting_on_a_stuck_server_is_provisioning_then_starts_cold(gw):
    [server] = _wait_for(lambda: _servers(gw))
    os.kill(server, signal.SIGSTOP)  # alive, but never answers
    try:
        create = subprocess.Popen([OPENSHELL, "sandbox", "create", "--name", "stuck", "--detach"], env=gw.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        phases = set()
        while create.poll() is None:
            got = gw.cli("sandbox", "get", "stuck", "-o", "json")
            if got.returncode == 0:
                phases.add(json.loads(got.stdout)["phase"])
            time.sleep(0.3)
        out, err = create.communicate()
        assert create.returncode == 0, err.decode()
        assert "ERROR" not in phases, phases  # it was being started all along
        assert "--config" in cmdline(_supervisor_pid(gw, "stuck"))  # cold, after the answer timed out
    finally:
        for sig in (signal.SIGCONT, signal.SIGKILL):  # the driver may have killed it already
            with contextlib.suppress(ProcessLookupError):
                os.kill(server, sig)


def test_stopping_the_gateway_stops_the_server_and_keeps_forked_sandboxes(gw):
    [server] = _wait_for(lambda: _servers(gw))
    gw.cli("sandbox", "create", "--name", "keep", "--detach", check=True)
    sup = _supervisor_pid(gw, "keep")
    gw.cli("gateway", "stop", "--name", gw.name, check=True, timeout=60)
    assert _wait_for(lambda: not Path(f"/proc/{server}").exists() or _stat(server)[0] == "Z", 10)
    assert _stat(sup)[0] != "Z"  # a gateway restart finds it again by pid
    gw.cli("gateway", "start", "--name", gw.name, check=True, timeout=60)
    p = gw.sx("keep", "true")
    assert p.returncode == 0, p.stderr


def test_a_server_ends_on_anything_but_well_formed_lines(tmp_path):
    assert _assignment(b'{"config": "/x/supervisor.json", "log": "/x/supervisor.log"}\n') == ("/x/supervisor.json", "/x/supervisor.log")
    for line in (b"", b'{"config": "/x", "log": "/y"}', b"not json\n", b'{"config": "rel", "log": "/y"}\n', b'{"config": 1, "log": "/y"}\n', b'["/x", "/y"]\n'):
        assert _assignment(line) is None, line
    # A real server given garbage (or a line without end) exits without forking or writing a log.
    for garbage in (b"garbage\n", b"x" * 20000):
        proc = subprocess.run([sys.executable, "-m", "openshell.supervisor", "--fork-server"], input=garbage, capture_output=True, timeout=60, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stdout == b"" and not list(tmp_path.iterdir())


def test_a_child_whose_pid_never_reached_the_driver_does_not_start(tmp_path):
    # The driver gives up on a server that does not answer and starts the supervisor
    # cold: a child forked before the answer must then never run as a second supervisor.
    # Here the answer cannot be written (the driver's end of stdout is closed).
    r, w = os.pipe()
    os.close(r)
    log = tmp_path / "supervisor.log"
    line = json.dumps({"config": str(tmp_path / "supervisor.json"), "log": str(log)}).encode() + b"\n"
    proc = subprocess.run([sys.executable, "-m", "openshell.supervisor", "--fork-server"], input=line, stdout=w, stderr=subprocess.PIPE, timeout=60)
    os.close(w)
    assert proc.returncode != 0  # the server could not answer
    time.sleep(1)  # a child that started would have opened its log by now
    assert not log.exists()
