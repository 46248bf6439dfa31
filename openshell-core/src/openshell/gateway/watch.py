"""Fan-out of one sandbox's status changes, log lines and platform events to its
watchers (``WatchSandbox``), independent of gRPC.

The core publishes; each watcher holds a :class:`Subscription` with a bounded
buffer. A watcher that does not keep up loses items rather than holding the
gateway's memory or slowing the publisher, and is told: the next thing it reads
at the point of the gap is a :class:`Lagged` with how many it lost.

Every method runs on the gateway's event loop thread (no locks).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Union

from openshell.gateway.store import SandboxRecord

#: items a watcher may have unread before new ones are dropped (and it is told)
DEFAULT_BUFFER = 1000
#: platform events kept per sandbox for ``event_tail`` (in memory: a gateway restart forgets them)
EVENT_HISTORY = 100


@dataclass(frozen=True)
class PlatformEvent:
    """Something that happened to a sandbox outside its own log.

    :ivar time: unix seconds.
    :ivar source: ``supervisor``, ``gateway`` or ``driver``.
    :ivar type: ``Normal`` or ``Warning``.
    :ivar reason: CamelCase, e.g. ``OOMKilled``, ``Stopped``.
    :ivar message: one line for people.
    :ivar metadata: the details as strings (e.g. ``memory_limit``).
    """

    time: float
    source: str
    type: str
    reason: str
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LogRow:
    """One pushed log line: ``row`` has ``time``, ``level``, ``target``, ``message``, ``fields``."""

    row: Mapping[str, Any]


@dataclass(frozen=True)
class Lagged:
    """The watcher fell behind and ``dropped`` items were not delivered here."""

    dropped: int


#: what a subscription yields: a new record (status change), a log line, an event, a gap
Item = Union[SandboxRecord, LogRow, PlatformEvent, Lagged]


class Subscription:
    """One watcher's bounded queue (make it with :meth:`WatchHub.subscribe`)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._items: deque[Item] = deque()
        self._dropped = 0
        self._wake = asyncio.Event()
        self.closed = False

    def offer(self, item: Item) -> None:
        """Queue ``item``, or count it dropped when ``limit`` items are unread."""
        if self.closed:
            return
        if len(self._items) >= self.limit:
            self._dropped += 1
            return
        if self._dropped:
            # Where the gap is; may take the queue one past its limit.
            self._items.append(Lagged(self._dropped))
            self._dropped = 0
        self._items.append(item)
        self._wake.set()

    def close(self) -> None:
        """No more items (the sandbox is gone); ``get`` returns what is queued, then None."""
        self.closed = True
        self._wake.set()

    async def get(self) -> Item | None:
        """The next item; a :class:`Lagged` where items were dropped; None once closed and drained."""
        while True:
            if self._items:
                return self._items.popleft()
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                return Lagged(dropped)
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()


class WatchHub:
    """Subscriptions by sandbox id, and the recent platform events of each sandbox.

    :param buffer: unread items a watcher may have (:data:`DEFAULT_BUFFER`).
    """

    def __init__(self, buffer: int = DEFAULT_BUFFER) -> None:
        self.buffer = buffer
        self._subs: dict[str, set[Subscription]] = {}
        self._events: dict[str, deque[PlatformEvent]] = {}

    @contextmanager
    def subscribe(self, sandbox_id: str) -> Iterator[Subscription]:
        """A subscription to ``sandbox_id`` for the ``with`` block (removed afterwards)."""
        sub = Subscription(self.buffer)
        self._subs.setdefault(sandbox_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(sandbox_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sandbox_id]

    def watchers(self, sandbox_id: str) -> int:
        """How many watchers ``sandbox_id`` has."""
        return len(self._subs.get(sandbox_id, ()))

    def publish(self, sandbox_id: str, item: Item) -> None:
        """Offer ``item`` to every watcher of ``sandbox_id`` (never blocks)."""
        if isinstance(item, PlatformEvent):
            self._events.setdefault(sandbox_id, deque(maxlen=EVENT_HISTORY)).append(item)
        for sub in tuple(self._subs.get(sandbox_id, ())):
            sub.offer(item)

    def recent_events(self, sandbox_id: str, tail: int) -> list[PlatformEvent]:
        """The last ``tail`` platform events of ``sandbox_id``, oldest first."""
        if tail <= 0:
            return []
        return list(self._events.get(sandbox_id, ()))[-tail:]

    def close(self, sandbox_id: str) -> None:
        """The sandbox is gone: end its watchers' streams and forget its events."""
        for sub in tuple(self._subs.get(sandbox_id, ())):
            sub.close()
        self._events.pop(sandbox_id, None)


# --------------------------------------------------------------------------- events in supervisor logs


def _limit_event(fields: Mapping[str, str]) -> tuple[str, str, str] | None:
    """``(type, reason, message)`` for a supervisor log line that reports a platform event."""
    event = fields.get("event", "")
    if event == "oom_kill":
        return "Warning", "OOMKilled", f"out of memory: {fields.get('count', '?')} process(es) killed at the memory limit ({fields.get('memory_limit', '?')})"
    if event == "pids_limit":
        return "Warning", "PidsLimit", f"process limit reached: {fields.get('refused', '?')} fork(s) refused (pids limit {fields.get('pids_limit', '?')})"
    if event == "tmp_full":
        if fields.get("cause") == "inodes":
            return "Warning", "TmpFull", f"/tmp is out of inodes ({fields.get('tmp_limit', '?')}): creating files fails with ENOSPC"
        return "Warning", "TmpFull", f"/tmp is full ({fields.get('tmp_limit', '?')}): writes fail with ENOSPC"
    if event == "start_failed":
        return "Warning", "StartFailed", "the supervisor could not start the sandbox (see its log)"
    if event == "entrypoint_exited":
        return "Normal", "EntrypointExited", f"the sandbox's command exited with code {fields.get('code', '?')}"
    if event == "orphaned":
        return "Warning", "Orphaned", "the sandbox's state directory is gone; its supervisor stopped"
    return None


def event_from_log(row: Mapping[str, Any]) -> PlatformEvent | None:
    """The platform event a pushed supervisor log line reports (an OOM kill, a
    refused fork, a full /tmp, the entrypoint's exit, …), or None."""
    fields = row.get("fields") or {}
    found = _limit_event(fields)
    if found is None:
        return None
    kind, reason, message = found
    metadata = {k: str(v) for k, v in fields.items() if k not in ("event", "sandbox")}
    return PlatformEvent(float(row.get("time") or 0.0), "supervisor", kind, reason, message, metadata)
