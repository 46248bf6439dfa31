"""StopSandbox, StartSandbox and WatchSandbox over the wire.

A real grpc.aio server and SQLite store (``WireServer`` of test_service.py);
the compute driver records calls (no supervisor runs), and the supervisor's
side is played by calling the real Supervisor service (ReportStatus,
PushLogBatch) with the sandbox's secret.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from openshell._proto import openshell_pb2, supervisor_pb2
from openshell.plugin.kinds import ComputeDriver, SandboxStatus, SshEndpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_service import DEFAULT, WireServer, code_of  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def wire(tmp_path):
    srv = WireServer(tmp_path)
    try:
        yield srv
    finally:
        srv.close()


def _phase(wire, name: str) -> int:
    return wire.stub.GetSandbox(openshell_pb2.GetSandboxRequest(name=name, workspace_scope=DEFAULT), timeout=10).sandbox.status.phase


def _stop(wire, name: str) -> openshell_pb2.Sandbox:
    return wire.stub.StopSandbox(openshell_pb2.StopSandboxRequest(name=name, workspace_scope=DEFAULT), timeout=10).sandbox


def _start(wire, name: str) -> openshell_pb2.Sandbox:
    return wire.stub.StartSandbox(openshell_pb2.StartSandboxRequest(name=name, workspace_scope=DEFAULT), timeout=10).sandbox


def _push(wire, sandbox_id: str, messages: list[str], level: str = "info") -> None:
    now = Timestamp()
    now.GetCurrentTime()
    batch = supervisor_pb2.LogBatch(records=[supervisor_pb2.LogRecord(time=now, level=level, target="openshell.supervisor", message=m) for m in messages])
    wire.sup.PushLogBatch(batch, metadata=wire.meta(sandbox_id), timeout=30)


class Watcher:
    """A WatchSandbox stream read by a thread into a queue (``next()`` takes one event)."""

    def __init__(self, wire, name: str, **fields) -> None:
        self.call = wire.stub.WatchSandbox(openshell_pb2.WatchSandboxRequest(sandbox=name, workspace_scope=DEFAULT, **fields), timeout=50)
        self.items: queue.Queue = queue.Queue()
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for ev in self.call:
                self.items.put(ev)
        except grpc.RpcError as exc:
            self.items.put(exc)
        finally:
            self.ended.set()
            self.items.put(None)

    def next(self, timeout: float = 10):
        return self.items.get(timeout=timeout)

    def until(self, pred, timeout: float = 20) -> list:
        """Events up to and including the first one ``pred`` accepts."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.next(max(deadline - time.monotonic(), 0.01))
            seen.append(ev)
            if ev is None or isinstance(ev, Exception):
                break
            if pred(ev):
                return seen
        raise AssertionError(f"not seen; got {[str(e)[:80] for e in seen]}")


def _is_phase(phase: int):
    return lambda ev: ev.WhichOneof("payload") == "sandbox" and ev.sandbox.status.phase == phase


# --------------------------------------------------------------------------- stop / start


def test_stop_keeps_the_record_and_start_runs_it_again(wire):
    sb = wire.create("demo")
    wire.make_ready(sb)
    stopped = _stop(wire, "demo")
    assert stopped.status.phase == openshell_pb2.SANDBOX_PHASE_STOPPED
    assert "start" in stopped.status.conditions[0].message
    assert wire.driver.stopped == [sb.metadata.id]
    # exec needs READY: the answer says what the sandbox is and how to start it
    err = code_of(lambda: list(wire.stub.ExecSandbox(openshell_pb2.ExecSandboxRequest(sandbox="demo", command=["true"], workspace_scope=DEFAULT), timeout=10)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "STOPPED" in err.details() and "sandbox start demo" in err.details()
    # a late report of the old supervisor does not bring it back
    wire.make_ready(sb)
    assert _phase(wire, "demo") == openshell_pb2.SANDBOX_PHASE_STOPPED
    # stopping again is a no-op
    assert _stop(wire, "demo").status.phase == openshell_pb2.SANDBOX_PHASE_STOPPED
    assert wire.driver.stopped == [sb.metadata.id]

    started = _start(wire, "demo")
    assert started.status.phase == openshell_pb2.SANDBOX_PHASE_PROVISIONING
    assert wire.driver.started == [sb.metadata.id]
    wire.make_ready(sb)
    assert _phase(wire, "demo") == openshell_pb2.SANDBOX_PHASE_READY
    # starting a running sandbox is a no-op
    assert _start(wire, "demo").status.phase == openshell_pb2.SANDBOX_PHASE_READY
    assert wire.driver.started == [sb.metadata.id]


def test_start_of_a_failed_sandbox_says_to_stop_it_first(wire):
    sb = wire.create("broken")
    wire.sup.ReportStatus(
        supervisor_pb2.ReportStatusRequest(phase=openshell_pb2.SANDBOX_PHASE_ERROR, reason="boom"), metadata=wire.meta(sb.metadata.id), timeout=10
    )
    err = code_of(lambda: _start(wire, "broken"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "sandbox stop broken" in err.details()
    assert _stop(wire, "broken").status.phase == openshell_pb2.SANDBOX_PHASE_STOPPED
    assert _start(wire, "broken").status.phase == openshell_pb2.SANDBOX_PHASE_PROVISIONING


def test_stop_and_start_of_an_unknown_sandbox_are_not_found(wire):
    assert code_of(lambda: _stop(wire, "nope")).code() == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: _start(wire, "nope")).code() == grpc.StatusCode.NOT_FOUND


class _NoStopDriver(ComputeDriver):
    """A driver keeping the ABC's stop/start defaults."""

    name = "nostop"

    def create(self, sandbox):
        pass

    def delete(self, sandbox_id, keep_workdir=False):
        pass

    def status(self, sandbox_id):
        return SandboxStatus("PROVISIONING")

    def ssh_endpoint(self, sandbox_id):
        return SshEndpoint(unix_path="/nonexistent.sock")


def test_a_driver_without_stop_refuses_and_leaves_the_sandbox_alone(wire):
    sb = wire.create("kept")
    wire.make_ready(sb)
    wire.core.driver = _NoStopDriver(wire.driver.ctx)
    err = code_of(lambda: _stop(wire, "kept"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "cannot stop" in err.details()
    assert _phase(wire, "kept") == openshell_pb2.SANDBOX_PHASE_READY


class _RefusingStopDriver(_NoStopDriver):
    """Stops sandboxes in general but refuses this one (kubernetes without a workdir claim)."""

    name = "refusing"

    def stop(self, sandbox_id):
        from openshell.plugin.kinds import DriverUnsupported

        raise DriverUnsupported("its /sandbox would be lost")


def test_a_driver_refusing_one_stop_leaves_that_sandbox_running_and_says_why(wire):
    sb = wire.create("busy")
    wire.make_ready(sb)
    wire.core.driver = _RefusingStopDriver(wire.driver.ctx)
    err = code_of(lambda: _stop(wire, "busy"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == "sandbox 'busy' was not stopped: its /sandbox would be lost"
    assert _phase(wire, "busy") == openshell_pb2.SANDBOX_PHASE_READY  # not ERROR: nothing was done


# --------------------------------------------------------------------------- watch


def test_watch_streams_status_logs_and_platform_events_until_delete(wire):
    sb = wire.create("watched")
    wire.make_ready(sb)
    sid = sb.metadata.id
    _push(wire, sid, ["event=policy_loaded revision=1 early line"])
    w = Watcher(wire, "watched", log_tail_lines=5)
    first = w.next()
    assert first.WhichOneof("payload") == "sandbox" and first.sandbox.status.phase == openshell_pb2.SANDBOX_PHASE_READY
    tail = w.next()
    assert tail.WhichOneof("payload") == "log" and "early line" in tail.log.message and tail.log.sandbox_id == sid

    _push(wire, sid, ["event=connect decision=allow host=a.test new line"])
    seen = w.until(lambda ev: ev.WhichOneof("payload") == "log")
    assert "new line" in seen[-1].log.message and seen[-1].log.fields["host"] == "a.test"

    # the supervisor's OOM report is a platform event as well as a log line
    _push(wire, sid, ["event=oom_kill sandbox=x count=1 total=1 memory_limit=32Mi"], level="warning")
    oom = w.until(lambda ev: ev.WhichOneof("payload") == "event")[-1].event
    assert (oom.source, oom.type, oom.reason) == ("supervisor", "Warning", "OOMKilled")
    assert "32Mi" in oom.message and oom.metadata["memory_limit"] == "32Mi"

    _stop(wire, "watched")
    seen = w.until(_is_phase(openshell_pb2.SANDBOX_PHASE_STOPPED))
    phases = [ev.sandbox.status.phase for ev in seen if ev.WhichOneof("payload") == "sandbox"]
    assert phases == [openshell_pb2.SANDBOX_PHASE_STOPPING, openshell_pb2.SANDBOX_PHASE_STOPPED]
    assert [ev.event.reason for ev in seen if ev.WhichOneof("payload") == "event"] == ["Stopping"]

    wire.stub.DeleteSandbox(openshell_pb2.DeleteSandboxRequest(name="watched", workspace_scope=DEFAULT), timeout=10)
    assert w.ended.wait(10), "the stream ends when the sandbox is deleted"
    rest = []
    while (ev := w.next()) is not None:
        rest.append(ev)
    assert not any(isinstance(ev, Exception) for ev in rest), rest


def test_watch_filters_and_event_tail(wire):
    sb = wire.create("quiet")
    wire.make_ready(sb)
    sid = sb.metadata.id
    _push(wire, sid, ["event=tmp_full sandbox=x tmp_limit=1Mi"], level="warning")
    w = Watcher(wire, "quiet", follow_logs=True, follow_events=True, event_tail=10, log_min_level="warning")
    first = w.next()
    assert first.WhichOneof("payload") == "event" and first.event.reason == "TmpFull", "no status when only logs and events are followed"
    _push(wire, sid, ["an info line", "a warning line"], level="info")
    _push(wire, sid, ["a warning line"], level="warning")
    seen = w.until(lambda ev: ev.WhichOneof("payload") == "log")
    assert [ev.log.message for ev in seen] == ["a warning line"]
    w.call.cancel()


def test_watch_of_an_unknown_sandbox_is_not_found_and_a_cursor_is_refused(wire):
    w = Watcher(wire, "nope")
    err = w.next()
    assert isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.NOT_FOUND
    wire.create("here")
    req = openshell_pb2.WatchSandboxRequest(sandbox="here", workspace_scope=DEFAULT)
    # resume_after_cursor (12), a field of the SDK's schema we do not implement
    raw = req.SerializeToString() + b"\x62\x01x"
    call = wire.channel.unary_stream("/openshell.v1.OpenShell/WatchSandbox", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as info:
        list(call(raw, timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "resume_after_cursor" in info.value.details()


def test_a_watcher_that_falls_behind_is_told_and_gets_the_status_again(wire):
    sb = wire.create("busy")
    wire.make_ready(sb)
    sid = sb.metadata.id
    wire.core.watch.buffer = 50  # small, so a few pushes outrun a reader that does not read
    call = wire.stub.WatchSandbox(openshell_pb2.WatchSandboxRequest(sandbox="busy", workspace_scope=DEFAULT), timeout=50)
    assert next(call).WhichOneof("payload") == "sandbox"
    for batch in range(5):
        _push(wire, sid, [f"event=line batch={batch} n={i} " + "x" * 100 for i in range(10_000)])
    _push(wire, sid, ["event=after the flood"])
    got = []
    for ev in call:
        got.append(ev)
        if ev.WhichOneof("payload") == "log" and "after the flood" in ev.log.message:
            break
    call.cancel()
    kinds = [ev.WhichOneof("payload") for ev in got]
    assert "warning" in kinds, "the watcher is told it lost events"
    at = kinds.index("warning")
    warning = got[at].warning
    assert warning.dropped > 0 and "lagged" in warning.message
    assert kinds[at + 1] == "sandbox", "the current status follows the gap"
    # our client's view of the same stream: a "lagged" item, then the status
    from openshell.client.sdk import sandbox_from_proto
    from openshell.client.watch import watch_event_from_proto

    ours = [watch_event_from_proto(ev, sandbox_from_proto) for ev in got[at : at + 2]]
    assert ours[0].kind == "lagged" and ours[0].dropped == warning.dropped and "fell behind" in ours[0].message
    assert ours[1].kind == "status" and ours[1].sandbox is not None and ours[1].sandbox.phase == "READY"
    assert ours[0].to_dict() == {"kind": "lagged", "time": 0.0, "message": warning.message, "dropped": warning.dropped}
    logs = sum(1 for k in kinds if k == "log")
    assert logs + sum(ev.warning.dropped for ev in got if ev.WhichOneof("payload") == "warning") == 50_001


def test_events_a_driver_reports_reach_watchers(wire):
    sb = wire.create("pulled")
    wire.run(wire.core.start())  # from here the driver's report_event is heard
    try:
        w = Watcher(wire, "pulled", follow_status=True, follow_events=True)
        assert w.next().WhichOneof("payload") == "sandbox"  # subscribed: the status comes after that
        # from a driver thread, as a real driver would
        t = threading.Thread(target=wire.driver.report_event, args=(sb.metadata.id, "ImagePulled", "pulled alpine:3.20"), kwargs={"image": "alpine:3.20"})
        t.start()
        t.join()
        ev = w.next().event
        assert (ev.source, ev.type, ev.reason, ev.message, dict(ev.metadata)) == (
            "driver",
            "Normal",
            "ImagePulled",
            "pulled alpine:3.20",
            {"image": "alpine:3.20"},
        )
        wire.driver.report_event(sb.metadata.id, "Evicted", "node pressure", warning=True)
        assert w.next().event.type == "Warning"
        w.call.cancel()
    finally:
        wire.run(wire.core.stop())
    # once the core stopped listening, a report is dropped without an error
    wire.driver.report_event(sb.metadata.id, "Late", "nobody listens")


def test_a_tmp_out_of_inodes_is_told_apart_from_a_full_one():
    from openshell.gateway.watch import event_from_log

    def message(**fields):
        ev = event_from_log({"time": 1.0, "fields": {"event": "tmp_full", "sandbox": "x", "tmp_limit": "1Mi", **fields}})
        assert ev is not None
        return ev.message

    assert message(cause="space") == message() == "/tmp is full (1Mi): writes fail with ENOSPC"  # older supervisors send no cause
    assert message(cause="inodes") == "/tmp is out of inodes (1Mi): creating files fails with ENOSPC"
