"""Sandbox lifecycle through the real CLI: create/exec/delete, clean-up, isolation
between sandboxes, a gateway restart, a crashed supervisor, and the error lines
a user sees for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import OPENSHELL  # noqa: E402 - tests/ is on sys.path (conftest)

ALLOW_UP = """
version: 1
network_policies:
  up:
    endpoints: [{host: up.example.test, port: 8080, allowed_ips: [10.199.0.0/16]}]
    binaries: [{path: /usr/bin/curl}]
"""


def _records(gw) -> dict[str, dict]:
    out = gw.cli("sandbox", "list", "-o", "json", check=True).stdout
    return {r["name"]: r for r in json.loads(out)}


def _sandbox_id(gw, name: str) -> str:
    return _records(gw)[name]["id"]


def _netns_names() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def _pids_in_netns(name: str) -> list[int]:
    try:
        ino = os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return []
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.stat(f"/proc/{p}/ns/net").st_ino == ino:
                    pids.append(int(p))
            except OSError:
                pass
    return pids


def _supervisor_pid(gw, sid: str) -> int:
    return int((gw.state_dir / "sandboxes" / sid / "supervisor.pid").read_text())


def _ctx(gw, sid: str) -> dict:
    return json.loads((gw.state_dir / "sandboxes" / sid / "context.json").read_text())


# --------------------------------------------------------------------------- create / exec


def test_create_with_command_exits_with_its_code_and_prints_its_output(gateway):
    p = gateway.cli("sandbox", "create", "--name", "lc-cmd", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    try:
        assert p.returncode == 7
        assert p.stdout.decode() == "out\n"
        assert "err\n" in p.stderr.decode()
    finally:
        gateway.cli("sandbox", "delete", "lc-cmd")


def test_exec_forwards_stdin_env_workdir_and_times_out_with_124(gateway):
    gateway.cli("sandbox", "create", "--name", "lc-exec", "--env", "FROM_SPEC=spec", "--detach", check=True)
    try:
        p = gateway.cli(
            "sandbox",
            "exec",
            "lc-exec",
            "--env",
            "FROM_EXEC=exec",
            "--workdir",
            "/tmp",
            "--",
            "sh",
            "-c",
            'echo "$FROM_SPEC $FROM_EXEC $(pwd)"; cat',
            input=b"piped\n",
        )
        assert p.returncode == 0, p.stderr
        assert p.stdout.decode() == "spec exec /tmp\npiped\n"
        t = time.monotonic()
        p = gateway.cli("sandbox", "exec", "lc-exec", "--timeout", "1", "--", "sleep", "30")
        assert p.returncode == 124
        assert time.monotonic() - t < 15
    finally:
        gateway.cli("sandbox", "delete", "lc-exec")


def test_list_and_get_name_the_compute_driver(gateway):
    gateway.cli("sandbox", "delete", "lc-drv")
    gateway.cli("sandbox", "create", "--name", "lc-drv", "--detach", check=True)
    try:
        assert _records(gateway)["lc-drv"]["driver"] == gateway.driver
        assert json.loads(gateway.cli("sandbox", "get", "lc-drv", "-o", "json", check=True).stdout)["driver"] == gateway.driver
        table = gateway.cli("sandbox", "list", check=True).stdout.decode().splitlines()
        assert "DRIVER" in table[0].upper()
        assert any(line.split()[:1] == ["lc-drv"] and gateway.driver in line.split() for line in table[1:]), table
    finally:
        gateway.cli("sandbox", "delete", "lc-drv")


def test_unnamed_sandbox_gets_two_words(gateway):
    p = gateway.cli("sandbox", "create", "--detach", check=True)
    name = p.stderr.decode().split("sandbox ", 1)[1].split(" ", 1)[0]
    try:
        words = name.split("-")
        assert len(words) == 2 and all(w.isalpha() and w.islower() for w in words), name
    finally:
        gateway.cli("sandbox", "delete", name)


# --------------------------------------------------------------------------- two sandboxes


def test_two_sandboxes_run_at_once_and_cannot_reach_each_other(gateway, upstream, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(ALLOW_UP)
    for n in ("lc-a", "lc-b"):
        gateway.cli("sandbox", "create", "--name", n, "--policy", str(policy), "--add-host", f"up.example.test:{upstream.ip}", "--detach", check=True)
    try:
        a, b = _ctx(gateway, _sandbox_id(gateway, "lc-a")), _ctx(gateway, _sandbox_id(gateway, "lc-b"))
        assert a["netns"] != b["netns"]
        assert a["extra"]["netns"]["sandbox_ip"] != b["extra"]["netns"]["sandbox_ip"]
        # Both reach the allowed upstream through their own proxies.
        for n in ("lc-a", "lc-b"):
            p = gateway.sx(n, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://up.example.test:8080/")
            assert p.stdout.decode() == "200", p.stderr
        # A listener in B is unreachable from A: by B's address and through B's proxy.
        listener = subprocess.Popen(
            [
                OPENSHELL,
                "sandbox",
                "exec",
                "lc-b",
                "--",
                "python3",
                "-c",
                "import socket,time\ns=socket.socket(); s.bind(('0.0.0.0', 9000)); s.listen(); time.sleep(20)",
            ],
            env=gateway.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.5)
            code = (
                "import socket,sys\n"
                "for host, port in ((sys.argv[1], 9000), (sys.argv[2], 3128), (sys.argv[2], 9000)):\n"
                " try:\n  socket.create_connection((host, port), timeout=2); print('REACHED', host, port)\n"
                " except OSError: print('BLOCKED', host, port)"
            )
            out = gateway.sx("lc-a", "python3", "-c", code, b["extra"]["netns"]["sandbox_ip"], b["extra"]["netns"]["proxy_ip"]).stdout.decode()
            assert "REACHED" not in out and out.count("BLOCKED") == 3, out
        finally:
            listener.kill()
        # Files: A's /sandbox is not B's.
        gateway.sx("lc-a", "sh", "-c", "echo a > /sandbox/only-a")
        assert gateway.sx("lc-b", "test", "-e", "/sandbox/only-a").returncode != 0
    finally:
        gateway.cli("sandbox", "delete", "lc-a", "lc-b")


# --------------------------------------------------------------------------- delete


def test_delete_removes_processes_namespaces_files_and_answers_not_found(gateway):
    gateway.cli("sandbox", "create", "--name", "lc-del", "--detach", check=True)
    sid = _sandbox_id(gateway, "lc-del")
    ctx = _ctx(gateway, sid)
    sup = _supervisor_pid(gateway, sid)
    # A background process that would outlive a careless delete.
    gateway.sx("lc-del", "sh", "-c", "nohup sleep 300 >/dev/null 2>&1 &")
    assert _pids_in_netns(ctx["netns"])
    sandbox_dir = gateway.state_dir / "sandboxes" / sid
    assert gateway.cli("sandbox", "delete", "lc-del").returncode == 0
    assert not _pid_alive(sup)
    assert ctx["netns"] not in _netns_names()
    assert ctx["extra"]["netns"]["proxy_netns"] not in _netns_names()
    assert not sandbox_dir.exists()
    assert not Path(f"/run/openshell/ssh/{sid}.sock").exists()
    p = gateway.cli("sandbox", "get", "lc-del")
    assert p.returncode == 1 and "not found" in p.stderr.decode()


def test_delete_keep_workdir_keeps_only_the_workdir(gateway):
    gateway.cli("sandbox", "create", "--name", "lc-keep", "--detach", check=True)
    sid = _sandbox_id(gateway, "lc-keep")
    gateway.sx("lc-keep", "sh", "-c", "echo kept > /sandbox/result.txt")
    gateway.cli("sandbox", "delete", "--keep-workdir", "lc-keep", check=True)
    d = gateway.state_dir / "sandboxes" / sid
    try:
        assert (d / "workdir" / "result.txt").read_text() == "kept\n"
        assert sorted(p.name for p in d.iterdir()) == ["workdir"]
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------- crashes and restarts


def test_crashed_supervisor_shows_error_with_reason_and_delete_leaves_nothing(gateway):
    gateway.cli("sandbox", "create", "--name", "lc-crash", "--detach", check=True)
    sid = _sandbox_id(gateway, "lc-crash")
    ctx = _ctx(gateway, sid)
    gateway.sx("lc-crash", "sh", "-c", "nohup sleep 300 >/dev/null 2>&1 &")
    pid = _supervisor_pid(gateway, sid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    rec = {}
    while time.monotonic() < deadline:
        rec = _records(gateway)["lc-crash"]
        if rec["phase"] == "ERROR":
            break
        time.sleep(0.5)
    assert rec["phase"] == "ERROR", rec
    # What happened, not just the supervisor's last log line (which may follow as context).
    assert rec["reason"].startswith(f"the supervisor (pid {pid}) was killed by signal 9 (SIGKILL)"), rec
    got = json.loads(gateway.cli("sandbox", "get", "lc-crash", "-o", "json", check=True).stdout)
    assert "killed by signal 9 (SIGKILL)" in got["reason"], got
    gateway.cli("sandbox", "delete", "lc-crash", check=True)
    assert not _pids_in_netns(ctx["netns"])
    assert ctx["netns"] not in _netns_names()
    assert not (gateway.state_dir / "sandboxes" / sid).exists()


def test_gateway_restart_keeps_every_record_and_running_sandboxes(gateway):
    gateway.cli("sandbox", "create", "--name", "lc-survive", "--label", "team=qa", "--detach", check=True)
    try:
        gateway.sx("lc-survive", "sh", "-c", "echo kept > /sandbox/across-restart.txt")
        before = _records(gateway)["lc-survive"]
        gateway.cli("gateway", "stop", "--name", gateway.name, check=True)
        gateway.cli("gateway", "start", "--name", gateway.name, "--port", str(gateway.port), check=True)
        after = _records(gateway)["lc-survive"]
        assert after["id"] == before["id"] and after["labels"] == {"team": "qa"}
        assert after["phase"] == "READY"
        p = gateway.sx("lc-survive", "echo", "still here")
        assert p.stdout.decode() == "still here\n"
        assert gateway.sx("lc-survive", "cat", "/sandbox/across-restart.txt").stdout.decode() == "kept\n"
    finally:
        gateway.cli("sandbox", "delete", "lc-survive")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, needle",
    [
        (("sandbox", "create", "--policy", "/nonexistent/policy.yaml", "--detach"), "/nonexistent/policy.yaml"),
        (("sandbox", "get", "no-such-sandbox"), "no-such-sandbox"),
        (("sandbox", "exec", "no-such-sandbox", "--", "true"), "no-such-sandbox"),
        (("sandbox", "create", "--add-host", "bad-entry", "--detach"), "NAME:IP"),
        (("sandbox", "create", "-o", "json", "--", "true"), "--detach"),
        (("sandbox", "create", "--detach", "--", "python3", "-m", "http.server"), "--detach runs no COMMAND"),
    ],
)
def test_bad_input_gets_one_clear_line_and_no_traceback(gateway, args, needle):
    p = gateway.cli(*args)
    err = p.stderr.decode()
    assert p.returncode != 0
    assert needle in err and "Traceback" not in err, err


def test_a_create_that_times_out_says_the_sandbox_is_kept(gateway):
    p = gateway.cli("sandbox", "create", "--name", "lc-slow", "--timeout", "0.001", "--detach")
    try:
        err = p.stderr.decode()
        assert p.returncode == 1 and "the sandbox is kept" in err and "openshell sandbox delete lc-slow" in err, err
        assert "lc-slow" in _records(gateway)
    finally:
        gateway.cli("sandbox", "delete", "lc-slow")


def test_invalid_policy_yaml_names_the_field(gateway, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nnetwork_policies:\n  w:\n    endpoints: [{host: a.example.com, port: 443, protocol: ftp}]\n    binaries: [{path: /usr/bin/curl}]\n"
    )
    p = gateway.cli("sandbox", "create", "--policy", str(bad), "--detach")
    err = p.stderr.decode()
    assert p.returncode == 1 and "network_policies.w.endpoints[0].protocol" in err and "Traceback" not in err, err


def test_gateway_down_says_how_to_start_it(tmp_path):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_STATE_HOME=str(tmp_path / "state"))
    env.pop("OPENSHELL_GATEWAY", None)
    p = subprocess.run([OPENSHELL, "sandbox", "list"], env=env, capture_output=True)
    err = p.stderr.decode()
    assert p.returncode == 1 and "gateway start" in err and "Traceback" not in err, err


def test_exec_exit_codes_are_exact_every_time(gateway):
    # Regression: a supervisor loop reaping any child stole session exit statuses (reported 0).
    gateway.cli("sandbox", "create", "--name", "lc-codes", "--detach", check=True)
    try:
        codes = [gateway.sx("lc-codes", "sh", "-c", f"exit {n % 5 + 3}").returncode for n in range(25)]
        assert codes == [n % 5 + 3 for n in range(25)]
        assert gateway.sx("lc-codes", "no-such-command").returncode == 127
    finally:
        gateway.cli("sandbox", "delete", "lc-codes")


def test_keep_workdir_delete_says_where_the_workdir_is(gateway):
    gateway.cli("sandbox", "create", "--name", "lc-where", "--detach", check=True)
    sid = _sandbox_id(gateway, "lc-where")
    p = gateway.cli("sandbox", "delete", "--keep-workdir", "lc-where", check=True)
    d = gateway.state_dir / "sandboxes" / sid
    try:
        assert str(d / "workdir") in p.stdout.decode()
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def test_labels_are_a_map_in_json_and_a_filter_without_match_says_so(gateway):
    made = gateway.cli("sandbox", "create", "--name", "lc-labels", "--label", "team=ml", "--label", "env=dev", "--detach", "-o", "json", check=True)
    try:
        created = json.loads(made.stdout)  # stdout is the record alone; progress went to stderr
        assert created["name"] == "lc-labels" and created["phase"] == "READY"
        rec = _records(gateway)["lc-labels"]
        assert rec["labels"] == {"env": "dev", "team": "ml"} == created["labels"] and rec["id"] == created["id"]
        p = gateway.cli("sandbox", "list", "-l", "team=nobody", check=True)
        assert "no sandboxes match" in p.stdout.decode()
    finally:
        gateway.cli("sandbox", "delete", "lc-labels")


def test_exec_timeout_must_be_positive(gateway):
    p = gateway.cli("sandbox", "exec", "whatever", "--timeout", "0", "--", "true")
    assert p.returncode == 2 and "--timeout" in p.stderr.decode()


def test_logs_show_proxy_decisions_with_reason(gateway, upstream, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(ALLOW_UP)
    gateway.cli("sandbox", "create", "--name", "lc-logs", "--policy", str(policy), "--add-host", f"up.example.test:{upstream.ip}", "--detach", check=True)
    try:
        gateway.sx("lc-logs", "curl", "-sS", "-o", "/dev/null", "http://up.example.test:8080/")
        gateway.sx("lc-logs", "python3", "-c", "import urllib.request as u\ntry: u.urlopen('http://up.example.test:8080/')\nexcept Exception: pass")
        deadline = time.monotonic() + 10
        rows: list = []
        while time.monotonic() < deadline:
            out = gateway.cli("sandbox", "logs", "lc-logs", "-o", "json", check=True).stdout.decode()
            rows = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
            decisions = [r["fields"] for r in rows if r["fields"].get("event") == "decision"]
            if len(decisions) >= 2:
                break
            time.sleep(0.5)
        by_decision = {d["decision"]: d for d in decisions}
        assert by_decision["ALLOWED"]["binary"] == "/usr/bin/curl" and by_decision["ALLOWED"]["policy"] == "up"
        assert "python3" in by_decision["DENIED"]["binary"] and "not allowed" in by_decision["DENIED"]["reason"]
        warn = gateway.cli("sandbox", "logs", "lc-logs", "--level", "warning", check=True).stdout.decode()
        assert "DENIED" in warn and "ALLOWED" not in warn
    finally:
        gateway.cli("sandbox", "delete", "lc-logs")


def test_the_last_lines_before_a_stop_reach_the_logs(gateway, upstream, tmp_path):
    # An info line waits up to half a second for its batch; a stop in that time
    # must not lose it (the supervisor pushes what is queued as it stops).
    import hostview

    policy = tmp_path / "p.yaml"
    policy.write_text(ALLOW_UP)
    gateway.cli("sandbox", "create", "--name", "lc-lastlog", "--policy", str(policy), "--add-host", f"up.example.test:{upstream.ip}", "--detach", check=True)
    try:
        loop = "while true; do curl -sS -o /dev/null http://up.example.test:8080/; sleep 0.05; done"
        gateway.sx("lc-lastlog", "sh", "-c", f"nohup sh -c '{loop}' >/dev/null 2>&1 &")
        time.sleep(1.5)
        gateway.cli("sandbox", "stop", "lc-lastlog", check=True)
        own = hostview.read_state_file(gateway, "lc-lastlog", "supervisor.log").decode()
        logged = sum(1 for ln in own.splitlines() if "event=decision" in ln and "decision=ALLOWED" in ln)
        out = gateway.cli("sandbox", "logs", "lc-lastlog", "-o", "json", check=True).stdout.decode()
        rows = [json.loads(ln)["fields"] for ln in out.splitlines() if ln.strip()]
        shown = sum(1 for f in rows if f.get("event") == "decision" and f.get("decision") == "ALLOWED")
        assert logged >= 5 and shown == logged, (logged, shown)
    finally:
        gateway.cli("sandbox", "delete", "lc-lastlog")


def test_supervisor_whose_state_directory_vanished_stops_and_cleans_up(gateway):
    # E.g. a gateway's files removed while its sandboxes ran: nothing can reach or
    # delete such a sandbox any more, so it must not run (and retry) forever.
    gateway.cli("sandbox", "create", "--name", "lc-orphan", "--detach", check=True)
    sid = _sandbox_id(gateway, "lc-orphan")
    ctx = _ctx(gateway, sid)
    sup = _supervisor_pid(gateway, sid)
    gateway.sx("lc-orphan", "sh", "-c", "nohup sleep 300 >/dev/null 2>&1 &")
    d = gateway.state_dir / "sandboxes" / sid
    moved = d.with_name(sid + ".moved")
    d.rename(moved)
    try:
        deadline = time.monotonic() + 30
        while _pid_alive(sup) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _pid_alive(sup)
        assert not _pids_in_netns(ctx["netns"])
        assert ctx["netns"] not in _netns_names()
        assert not Path(f"/run/openshell/ssh/{sid}.sock").exists()
        assert "event=orphaned" in (moved / "supervisor.log").read_text()
        # ... and the gateway collects it: no zombie left for `kill -0` to mistake as running
        deadline = time.monotonic() + 15
        while Path(f"/proc/{sup}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{sup}").exists()
    finally:
        moved.rename(d)
        gateway.cli("sandbox", "delete", "lc-orphan")
