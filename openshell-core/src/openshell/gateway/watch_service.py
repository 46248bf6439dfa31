"""``WatchSandbox``: one sandbox's status changes, log lines and platform events as a stream.

:func:`watch_sandbox` maps the core's :class:`openshell.gateway.watch.WatchHub`
items to ``SandboxStreamEvent`` messages; ``service.py`` calls it with its
``Sandbox`` mapping. Order on the stream: the current status, the event tail,
the log tail, then everything new as it happens. A watcher that falls behind
gets a warning with ``dropped`` set where items were lost, followed by the
current status again (when it follows status), so it never acts on a stale
phase. The stream ends when the sandbox is deleted (or, with
``stop_on_terminal``, after a status in ERROR or STOPPED).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from openshell._proto import openshell_pb2
from openshell.gateway import store as st
from openshell.gateway.errors import InvalidArgument
from openshell.gateway.watch import Lagged, LogRow, PlatformEvent
from openshell.gateway.wire import refuse_unsupported, timestamp, workspace_of

#: phases after which ``stop_on_terminal`` ends the stream
TERMINAL_PHASES = (st.ERROR, st.STOPPED)
MAX_LOG_TAIL = 10_000
_LEVELS = {"debug": 0, "info": 1, "warning": 2, "warn": 2, "error": 3, "critical": 4}
_UNSUPPORTED = {12: "resume_after_cursor"}


def log_line_to_proto(row: Mapping[str, Any], sandbox_id: str) -> openshell_pb2.SandboxLogLine:
    """A pushed log row (``time``, ``level``, ``target``, ``message``, ``fields``) as the wire line."""
    line = openshell_pb2.SandboxLogLine(
        sandbox_id=sandbox_id,
        level=str(row.get("level", "")),
        target=str(row.get("target", "")),
        message=str(row.get("message", "")),
        source="supervisor",
    )
    line.fields.update({str(k): str(v) for k, v in (row.get("fields") or {}).items()})
    line.event_time.CopyFrom(timestamp(float(row.get("time") or 0.0)))
    return line


def event_to_proto(ev: PlatformEvent) -> openshell_pb2.PlatformEvent:
    """A :class:`PlatformEvent` as the wire message."""
    return openshell_pb2.PlatformEvent(
        source=ev.source,
        type=ev.type,
        reason=ev.reason,
        message=ev.message,
        metadata=dict(ev.metadata),
        event_time=timestamp(ev.time),
    )


def lagged_to_proto(dropped: int) -> openshell_pb2.SandboxStreamWarning:
    """The warning a watcher gets where ``dropped`` items were lost."""
    return openshell_pb2.SandboxStreamWarning(
        message=f"lagged: this watcher fell behind and {dropped} event(s) were dropped; the current status follows",
        dropped=dropped,
    )


async def watch_sandbox(
    core: Any, request: openshell_pb2.WatchSandboxRequest, to_proto: Callable[[Any], openshell_pb2.Sandbox]
) -> AsyncIterator[openshell_pb2.SandboxStreamEvent]:
    """The stream of one ``WatchSandboxRequest`` against ``core`` (a ``GatewayCore``).

    :param to_proto: maps a ``SandboxInfo`` to the wire ``Sandbox``.
    :raises InvalidArgument: no sandbox name, a bad ``log_min_level`` or ``resume_after_cursor`` set.
    :raises SandboxNotFound: no such sandbox (before the first message).
    """
    refuse_unsupported(request, _UNSUPPORTED)
    if not request.sandbox:
        raise InvalidArgument("sandbox", "name the sandbox to watch")
    level = request.log_min_level.lower()
    if level and level not in _LEVELS:
        raise InvalidArgument("log_min_level", "one of debug, info, warning, error (or empty for all)")
    floor = _LEVELS.get(level, 0)
    workspace = workspace_of(request.workspace_scope)
    follow_status, follow_logs, follow_events = request.follow_status, request.follow_logs, request.follow_events
    if not (follow_status or follow_logs or follow_events):
        follow_status = follow_logs = follow_events = True
    if request.log_sources and "supervisor" not in request.log_sources:
        follow_logs = False  # the only source we have
    stop_on_terminal = request.stop_on_terminal

    info = await core.get_sandbox(request.sandbox, workspace)
    sandbox_id = info.record.id
    with core.watch.subscribe(sandbox_id) as sub:
        # Subscribed before this check: a delete from now on closes the subscription.
        if await core.sandbox_by_id(sandbox_id) is None:
            return
        info = await core.get_sandbox(request.sandbox, workspace)
        last_version = info.record.resource_version
        last_sent = to_proto(info)
        if follow_status:
            yield openshell_pb2.SandboxStreamEvent(sandbox=last_sent)
            if stop_on_terminal and info.record.phase in TERMINAL_PHASES:
                return
        if follow_events:
            for ev in core.watch.recent_events(sandbox_id, int(request.event_tail)):
                yield openshell_pb2.SandboxStreamEvent(event=event_to_proto(ev))
        tail_keys: set[tuple[float, str]] = set()
        if follow_logs and request.log_tail_lines:
            since = request.since_time.ToNanoseconds() / 1e9 if request.HasField("since_time") else 0.0
            rows, _ = await core.read_logs_filtered(
                request.sandbox, workspace, lines=min(int(request.log_tail_lines), MAX_LOG_TAIL), min_level=level, since=since
            )
            for row in rows:
                # Lines pushed between subscribing and reading are in both: send them once.
                tail_keys.add((float(row.get("time") or 0.0), str(row.get("message", ""))))
                yield openshell_pb2.SandboxStreamEvent(log=log_line_to_proto(row, sandbox_id))

        while True:
            item = await sub.get()
            if item is None:  # the sandbox was deleted
                return
            if isinstance(item, LogRow):
                row = item.row
                if not follow_logs or _LEVELS.get(str(row.get("level", "")).lower(), 1) < floor:
                    continue
                if tail_keys and (float(row.get("time") or 0.0), str(row.get("message", ""))) in tail_keys:
                    continue
                yield openshell_pb2.SandboxStreamEvent(log=log_line_to_proto(row, sandbox_id))
            elif isinstance(item, PlatformEvent):
                if follow_events:
                    yield openshell_pb2.SandboxStreamEvent(event=event_to_proto(item))
            elif isinstance(item, Lagged):
                yield openshell_pb2.SandboxStreamEvent(warning=lagged_to_proto(item.dropped))
                if follow_status:
                    current = await core.sandbox_by_id(sandbox_id)
                    if current is None:
                        return
                    last_version = current.resource_version
                    last_sent = to_proto(await core.sandbox_info(current))
                    yield openshell_pb2.SandboxStreamEvent(sandbox=last_sent)
                    if stop_on_terminal and current.phase in TERMINAL_PHASES:
                        return
            elif follow_status and item.resource_version >= last_version:  # a SandboxRecord, not an older one
                msg = to_proto(await core.sandbox_info(item))
                if msg == last_sent:  # e.g. re-published with nothing a client sees changed
                    continue
                last_version, last_sent = item.resource_version, msg
                yield openshell_pb2.SandboxStreamEvent(sandbox=msg)
                if stop_on_terminal and item.phase in TERMINAL_PHASES:
                    return
