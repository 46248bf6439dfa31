"""The published SDK's stop, start, wait_stopped and WatchSandbox against our gateway,
with real sandboxes (see conftest.py, docs/sdk-compat.md).

What a user would notice is checked from the host: after stop the sandbox's
supervisor and every process it ran are gone (by pid), its /sandbox files are
still on disk; after start the same files are there in a new supervisor run.
The 0.1.5 SDK has no watch method, so WatchSandbox is driven through the SDK's
own generated stub on the SDK client's channel.
"""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.timeout(900)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _pids_in_netns(netns: str) -> list[int]:
    try:
        ino = os.stat(f"/run/netns/{netns}").st_ino
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


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_sdk_stop_keeps_files_ends_processes_and_start_brings_it_back(gateway, sdk):
    name = "sdk-stop-start"
    created = sdk(
        f"""
        import json
        from openshell import SandboxClient

        with SandboxClient.from_active_cluster(timeout=60) as client:
            ref = client.create(workspace="default", name={name!r})
            client.wait_ready({name!r}, workspace="default", timeout_seconds=180)
            res = client.exec({name!r}, ["sh", "-c", "echo kept > /sandbox/kept.txt; nohup sleep 600 >/dev/null 2>&1 & echo ok"], workspace="default")
        print(json.dumps({{"id": ref.id, "exec": [res.exit_code, res.stdout]}}))
        """,
        env=gateway.env,
    )
    assert created["exec"] == [0, "ok\n"]
    sdir = gateway.state_dir / "sandboxes" / created["id"]
    supervisor = int((sdir / "supervisor.pid").read_text())
    netns = json.loads((sdir / "context.json").read_text())["netns"]
    running = _pids_in_netns(netns)
    assert any("sleep 600" in _cmdline(p) for p in running), "the background sleep runs in the sandbox"

    stopped = sdk(
        f"""
        import json, grpc
        from openshell import SandboxClient

        out = {{}}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            ref = client.stop({name!r}, workspace="default")
            out["stop_phase"] = int(ref.status.phase)
            out["wait_stopped"] = int(client.wait_stopped({name!r}, workspace="default", timeout_seconds=60).status.phase)
            try:
                client.exec({name!r}, ["true"], workspace="default")
                out["exec"] = "ran"
            except grpc.RpcError as exc:
                out["exec"] = [exc.code().name, exc.details()]
            out["stop_again"] = int(client.stop({name!r}, workspace="default").status.phase)
        print(json.dumps(out))
        """,
        env=gateway.env,
    )
    assert stopped["stop_phase"] == 7  # SANDBOX_PHASE_STOPPED
    assert stopped["wait_stopped"] == 7
    assert stopped["exec"][0] == "FAILED_PRECONDITION" and "STOPPED" in stopped["exec"][1]
    assert stopped["stop_again"] == 7
    # every process of the sandbox is gone, its files are not
    assert not _alive(supervisor)
    assert not [p for p in running if _alive(p)], "processes of the stopped sandbox still run"
    # (the workdir's file system is unmounted while stopped; its image stays)
    assert (sdir / "workdir.ext4").is_file() and not os.path.ismount(sdir / "workdir")

    started = sdk(
        f"""
        import json
        from openshell import SandboxClient, SandboxSession

        out = {{}}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            ref = client.start({name!r}, workspace="default")
            out["start_phase"] = int(ref.status.phase)
            out["ready_phase"] = int(client.wait_ready({name!r}, workspace="default", timeout_seconds=180).status.phase)
            res = client.exec({name!r}, ["sh", "-c", "cat /sandbox/kept.txt; pgrep -c sleep || true"], workspace="default")
            out["exec"] = [res.exit_code, res.stdout]
            # the session object's stop/start, too
            session = SandboxSession(client, client.get({name!r}, workspace="default"))
            out["session_stop"] = int(session.stop().status.phase)
            out["session_start"] = int(session.start().status.phase)
            out["session_ready"] = int(client.wait_ready({name!r}, workspace="default", timeout_seconds=180).status.phase)
            client.delete({name!r}, workspace="default")
        print(json.dumps(out))
        """,
        env=gateway.env,
    )
    assert started["start_phase"] in (1, 2)  # PROVISIONING (or READY already)
    assert started["ready_phase"] == 2
    assert started["exec"] == [0, "kept\n0\n"], "same /sandbox contents; the old processes did not come back"
    assert started["session_stop"] == 7 and started["session_start"] in (1, 2) and started["session_ready"] == 2
    assert not sdir.exists(), "delete of a stopped-and-started sandbox removes its files"


def test_sdk_watch_streams_status_logs_and_events(gateway, sdk):
    name = "sdk-watch"
    result = sdk(
        f"""
        import json, threading, queue
        from openshell import SandboxClient
        from openshell._proto import datamodel_pb2, openshell_pb2, openshell_pb2_grpc

        out = {{}}
        with SandboxClient.from_active_cluster(timeout=60) as client:
            client.create(workspace="default", name={name!r})
            client.wait_ready({name!r}, workspace="default", timeout_seconds=180)
            stub = openshell_pb2_grpc.OpenShellStub(client._channel)
            req = openshell_pb2.WatchSandboxRequest(
                sandbox={name!r},
                workspace_scope=datamodel_pb2.WorkspaceSelector(workspace="default"),
                follow_status=True, follow_logs=True, follow_events=True, log_tail_lines=3,
            )
            call = stub.WatchSandbox(req, timeout=240)
            items = queue.Queue()

            def read():
                try:
                    for ev in call:
                        items.put(ev)
                except Exception as exc:
                    items.put(repr(exc))
                items.put(None)

            threading.Thread(target=read, daemon=True).start()
            first = items.get(timeout=30)
            out["first"] = [first.WhichOneof("payload"), int(first.sandbox.status.phase)]
            client.stop({name!r}, workspace="default")
            client.start({name!r}, workspace="default")
            client.wait_ready({name!r}, workspace="default", timeout_seconds=180)
            seen, stopped = [], False
            while True:
                ev = items.get(timeout=60)
                which = ev.WhichOneof("payload")
                if which == "sandbox":
                    seen.append(["status", int(ev.sandbox.status.phase)])
                    stopped = stopped or ev.sandbox.status.phase == openshell_pb2.SANDBOX_PHASE_STOPPED
                elif which == "event":
                    seen.append(["event", ev.event.reason, ev.event.source])
                elif which == "log":
                    seen.append(["log", ev.log.message[:60]])
                    if stopped and "event=ready" in ev.log.message:
                        break  # the new supervisor's log reached the stream
            out["seen"] = seen
            client.delete({name!r}, workspace="default")
            rest = []
            while (ev := items.get(timeout=60)) is not None:
                rest.append(ev if isinstance(ev, str) else ev.WhichOneof("payload"))
            out["after_delete"] = rest
        print(json.dumps(out))
        """,
        env=gateway.env,
    )
    assert result["first"] == ["sandbox", 2]
    seen = result["seen"]
    statuses = [s[1] for s in seen if s[0] == "status"]
    # STOPPING, STOPPED, PROVISIONING, READY in that order
    order = [statuses.index(p) for p in (6, 7, 1, 2)]
    assert order == sorted(order), statuses
    events = [s[1:] for s in seen if s[0] == "event"]
    assert [r for r, src in events if src == "gateway"][:3] == ["Stopping", "Stopped", "Starting"], events
    # the local driver's own reports
    assert [r for r, src in events if src == "driver"][:2] == ["SupervisorStopped", "SupervisorStarted"], events
    assert any(s[0] == "log" for s in seen)
    # the stream ends cleanly when the sandbox is deleted (no error)
    assert not [r for r in result["after_delete"] if r not in ("sandbox", "log", "event")], result["after_delete"]


# Shared prelude of the watch scripts below: the SDK's client, its generated stub on
# the SDK's channel, and a WatchSandbox stream that is read only when asked to.
WATCH_PRELUDE = """
import json, queue, threading
import grpc
from google.protobuf import struct_pb2
from openshell import SandboxClient
from openshell._proto import datamodel_pb2, openshell_pb2, openshell_pb2_grpc

client = SandboxClient.from_active_cluster(timeout=60)
stub = openshell_pb2_grpc.OpenShellStub(client._channel)

def watch(name, timeout=300, **follow):
    req = openshell_pb2.WatchSandboxRequest(
        sandbox=name, workspace_scope=datamodel_pb2.WorkspaceSelector(workspace="default"), **follow)
    return stub.WatchSandbox(req, timeout=timeout)

def read_into(call, items):
    # Read call into the queue items on a thread (until it ends or is cancelled).
    def run():
        try:
            for ev in call:
                items.put(ev)
        except grpc.RpcError:
            pass
    threading.Thread(target=run, daemon=True).start()
"""


def test_sdk_watch_reports_an_oom_kill_at_a_small_memory_limit(gateway, sdk):
    """A process that allocates past the sandbox's memory limit is killed, and a
    watcher of the sandbox gets the supervisor's OOMKilled platform event."""
    name = "sdk-watch-oom"
    result = sdk(
        WATCH_PRELUDE
        + f"""
out = {{}}
resources = struct_pb2.Struct()
resources.update({{"limits": {{"memory": "64Mi"}}}})
spec = openshell_pb2.SandboxSpec(template=openshell_pb2.SandboxTemplate(resources=resources))
client.create(workspace="default", name={name!r}, spec=spec)
try:
    client.wait_ready({name!r}, workspace="default", timeout_seconds=180)
    call = watch({name!r}, follow_events=True)
    items = queue.Queue()
    read_into(call, items)
    # 512 MiB, touched page by page, in a sandbox limited to 64 MiB
    res = client.exec({name!r}, ["python3", "-c", "b = bytearray(512 * 2**20); print(len(b))"], workspace="default", timeout_seconds=120)
    out["exec"] = [res.exit_code, res.stdout]
    events = []
    while True:
        ev = items.get(timeout=120).event
        events.append([ev.source, ev.type, ev.reason, ev.message])
        if ev.reason == "OOMKilled":
            break
    out["events"] = events
    call.cancel()
finally:
    client.delete({name!r}, workspace="default")
print(json.dumps(out))
""",
        env=gateway.env,
    )
    code, stdout = result["exec"]
    assert code == 137 and stdout == "", "the allocating process was killed (SIGKILL)"
    source, kind, reason, message = result["events"][-1]
    assert [source, kind, reason] == ["supervisor", "Warning", "OOMKilled"]
    assert "out of memory" in message and "64" in message, message


def test_sdk_watcher_that_falls_behind_is_told_with_a_warning(gateway, sdk, tmp_path):
    """A watcher that does not read while the sandbox logs tens of thousands of lines
    (denied requests through its proxy) loses lines, and the stream says so: a
    warning saying it fell behind, then the current status; then the stream goes on."""
    name = "sdk-watch-lag"
    flood = tmp_path / "flood.py"
    # Denied requests to the sandbox's own proxy (nothing leaves the sandbox's
    # namespace: the policy allows no host, so the proxy answers 403 itself, before
    # any DNS lookup of the name), each
    # logged as one decision line. Keep-alive when the proxy allows it.
    flood.write_text(
        """
import os, socket, sys
count, host = int(sys.argv[1]), sys.argv[2]
addr, port = os.environ["HTTP_PROXY"].rsplit("/", 1)[1].split(":")
request = f"GET http://{host}:8080/ HTTP/1.1\\r\\nHost: {host}:8080\\r\\n\\r\\n".encode()
sock = None
for _ in range(count):
    if sock is None:
        sock = socket.create_connection((addr, int(port)), timeout=30)
        f = sock.makefile("rb")
    sock.sendall(request)
    length, close = 0, False
    while (line := f.readline()) not in (b"\\r\\n", b"\\n", b""):
        key, _, value = line.partition(b":")
        length = int(value) if key.lower() == b"content-length" else length
        close = close or (key.lower() == b"connection" and value.strip().lower() == b"close")
    f.read(length)
    if close or not line:
        sock.close()
        sock = None
print(count)
"""
    )
    created = gateway.cli("sandbox", "create", "--name", name)
    assert created.returncode == 0, created.stderr.decode()
    try:
        up = gateway.cli("sandbox", "upload", name, str(flood), "/sandbox/flood.py")
        assert up.returncode == 0, up.stderr.decode()
        result = sdk(
            WATCH_PRELUDE
            + f"""
out = {{}}
call = watch({name!r}, follow_status=True, follow_logs=True, timeout=300)
stream = iter(call)
out["first"] = next(stream).WhichOneof("payload")
# The watcher reads nothing while 40000 lines are logged (its buffer holds 1000).
res = client.exec({name!r}, ["python3", "/sandbox/flood.py", "40000", "flood.example.test"], workspace="default", timeout_seconds=300)
out["flood"] = [res.exit_code, res.stdout]
seen = []
for ev in stream:
    which = ev.WhichOneof("payload")
    if which == "warning":
        seen.append(["warning", ev.warning.message])
    elif which == "sandbox":
        seen.append(["sandbox", int(ev.sandbox.status.phase)])
        if seen[-2][0] == "warning":
            # Caught up: a line logged from now on reaches this watcher.
            client.exec({name!r}, ["python3", "/sandbox/flood.py", "1", "after-flood.example.test"], workspace="default", timeout_seconds=60)
    elif which == "log" and "after-flood.example.test" in ev.log.message:
        seen.append(["log", "after the flood"])
        break
    elif which == "log" and (not seen or seen[-1][0] != "logs"):
        seen.append(["logs"])
call.cancel()
out["seen"] = seen
print(json.dumps(out))
""",
            env=gateway.env,
            timeout=400,
        )
    finally:
        gateway.cli("sandbox", "delete", name)
    assert result["first"] == "sandbox"
    assert result["flood"] == [0, "40000\n"]
    seen = result["seen"]
    warnings = [i for i, s in enumerate(seen) if s[0] == "warning"]
    assert warnings, f"the watcher was not told it fell behind: {seen}"
    message = seen[warnings[0]][1]
    assert "fell behind" in message and "dropped" in message, message
    assert seen[warnings[0] + 1] == ["sandbox", 2], "the current status (READY) follows the gap"
    assert seen[-1] == ["log", "after the flood"], "the stream goes on after the gap"
