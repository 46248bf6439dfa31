"""``openshell sandbox stop|start|watch`` and ``sandbox logs -f`` through the real CLI,
against the session gateway with real sandboxes."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time

import pytest
from conftest import OPENSHELL  # noqa: E402 - tests/ is on sys.path (conftest)

pytestmark = pytest.mark.timeout(600)

BLOCKED_HOST, BLOCKED_IP = "wblk.test", "10.199.61.2"  # denied by the default policy


class Stream:
    """A long-running CLI command whose stdout lines are read by a thread."""

    def __init__(self, gw, *args: str) -> None:
        self.proc = subprocess.Popen([OPENSHELL, *args], env=gw.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def until(self, pred, timeout: float = 60) -> list[str]:
        """Lines up to and including the first ``pred`` accepts."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if pred(line):
                return seen
        stderr = self.proc.stderr.read().decode() if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError(f"not seen in {len(seen)} lines: {seen[-10:]} {stderr}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def streams():
    started: list[Stream] = []

    def start(gw, *args: str) -> Stream:
        s = Stream(gw, *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def _json(line: str) -> dict:
    return json.loads(line)


def test_cli_stop_and_start_keep_the_workdir(gateway):
    name = "cli-stop-start"
    gateway.cli("sandbox", "create", "--name", name, "--detach", check=True)
    try:
        assert gateway.sx(name, "sh", "-c", "echo kept > /sandbox/kept.txt").returncode == 0
        out = gateway.cli("sandbox", "stop", name, check=True).stdout.decode()
        assert out.strip() == f"stopped {name}"
        got = json.loads(gateway.cli("sandbox", "get", name, "-o", "json", check=True).stdout)
        assert got["phase"] == "STOPPED" and f"sandbox start {name}" in got["reason"]
        refused = gateway.sx(name, "true")
        assert refused.returncode != 0
        err = refused.stderr.decode()
        assert "STOPPED" in err and f"openshell sandbox start {name}" in err and "Traceback" not in err
        out = gateway.cli("sandbox", "start", name, check=True).stdout.decode()
        assert out.strip() == f"started {name} (READY)"
        again = gateway.cli("sandbox", "start", name, check=True).stdout.decode()
        assert again.strip() == f"sandbox {name} is already running (READY); nothing to start"
        assert gateway.sx(name, "cat", "/sandbox/kept.txt").stdout.decode() == "kept\n"
        # a stopped sandbox deletes like any other: nothing of it is left
        sid = json.loads(gateway.cli("sandbox", "get", name, "-o", "json", check=True).stdout)["id"]
        gateway.cli("sandbox", "stop", name, check=True)
        gateway.cli("sandbox", "delete", name, check=True)
        assert not (gateway.state_dir / "sandboxes" / sid).exists()
    finally:
        gateway.cli("sandbox", "delete", name)


def test_cli_start_of_an_unknown_sandbox_is_one_line(gateway):
    for verb in ("stop", "start", "watch"):
        proc = gateway.cli("sandbox", verb, "no-such-sandbox", timeout=60)
        err = proc.stderr.decode()
        assert proc.returncode != 0 and "no-such-sandbox" in err and "not found" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_cli_watch_and_logs_follow_show_an_oom_kill(gateway, streams):
    name = "cli-watch-oom"
    # the denied name resolves (if at all) into the test range, never anywhere real
    gateway.cli("sandbox", "create", "--name", name, "--memory", "32Mi", "--add-host", f"{BLOCKED_HOST}:{BLOCKED_IP}", "--detach", check=True)
    try:
        watch = streams(gateway, "sandbox", "watch", name, "-o", "json")
        first = _json(watch.until(lambda ln: True)[0])
        assert first["kind"] == "status" and first["sandbox"]["phase"] == "READY"
        logs = streams(gateway, "sandbox", "logs", name, "-f", "-n", "1", "-o", "json")
        logs.until(lambda ln: True)  # the tail line: the stream is open
        # a log line reaches both streams
        gateway.sx(name, "curl", "-sS", "--max-time", "5", f"http://{BLOCKED_HOST}:8080/")
        seen = watch.until(lambda ln: _json(ln)["kind"] == "log" and f"host={BLOCKED_HOST}" in _json(ln)["message"])
        assert seen
        logs.until(lambda ln: f"host={BLOCKED_HOST}" in _json(ln)["message"])

        # an allocation past --memory 32Mi is OOM-killed: a platform event on watch, a log line on logs -f
        p = gateway.sx(name, "python3", "-c", "b = bytearray(200 * 2**20)", timeout=120)
        assert p.returncode != 0
        oom = _json(watch.until(lambda ln: _json(ln)["kind"] == "event" and _json(ln)["reason"] == "OOMKilled")[-1])
        assert oom["source"] == "supervisor" and oom["fields"]["memory_limit"] == "32Mi" and "out of memory" in oom["message"]
        line = _json(logs.until(lambda ln: "event=oom_kill" in _json(ln)["message"])[-1])
        assert line["level"] == "warning" and line["fields"]["memory_limit"] == "32Mi"

        # stop and start show up as status changes and gateway events
        gateway.cli("sandbox", "stop", name, check=True)
        seen = [_json(ln) for ln in watch.until(lambda ln: _json(ln)["kind"] == "status" and _json(ln)["sandbox"]["phase"] == "STOPPED")]
        assert [e["reason"] for e in seen if e["kind"] == "event"][-2:] == ["Stopping", "SupervisorStopped"]
        gateway.cli("sandbox", "start", name, check=True)
        seen = [_json(ln) for ln in watch.until(lambda ln: _json(ln)["kind"] == "status" and _json(ln)["sandbox"]["phase"] == "READY")]
        assert [e["reason"] for e in seen if e["kind"] == "event"][:3] == ["Stopped", "Starting", "SupervisorStarted"]
    finally:
        gateway.cli("sandbox", "delete", name)
    # both streams end when the sandbox is deleted
    assert watch.proc.wait(timeout=30) == 0
    assert logs.proc.wait(timeout=30) == 0


def test_cli_watch_text_output_and_exit_on_stop(gateway, streams):
    name = "cli-watch-text"
    gateway.cli("sandbox", "create", "--name", name, "--detach", check=True)
    try:
        watch = streams(gateway, "sandbox", "watch", name, "--no-logs", "--exit-on-stop")
        assert " status  READY" in watch.until(lambda ln: True)[0]
        gateway.cli("sandbox", "stop", name, check=True)
        seen = watch.until(lambda ln: " status  STOPPED" in ln)
        assert any(" event   Normal Stopping: " in ln for ln in seen)
        assert watch.proc.wait(timeout=30) == 0, "--exit-on-stop ends at STOPPED"
    finally:
        gateway.cli("sandbox", "delete", name)
