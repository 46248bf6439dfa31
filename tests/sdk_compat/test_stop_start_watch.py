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
