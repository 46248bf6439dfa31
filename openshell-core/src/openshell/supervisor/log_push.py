"""Ship the supervisor's log lines to the gateway (``Supervisor.PushLogBatch``).

Proxy decisions, policy loads and lifecycle events become visible through
``openshell sandbox logs NAME`` without access to the host. Lines are buffered
in a bounded queue (oldest dropped first, counted) and pushed in batches, so a
slow or absent gateway never blocks the proxy.

A batch goes :data:`PUSH_INTERVAL` seconds after the first line queued since
the last batch, or :data:`URGENT_DELAY` after a warning-or-worse line (a denied
connection): someone watching the sandbox sees a denial about when it happens,
not up to half a second later, and a burst of them still travels as one batch.
With nothing queued the loop sleeps until a line comes: an idle supervisor does
not wake to find an empty queue (hundreds of idle sandboxes on one machine).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Iterable

from openshell._proto import supervisor_pb2
from openshell.supervisor.link import GatewayLink

MAX_BUFFERED = 10_000  # lines held while the gateway is unreachable
PUSH_INTERVAL = 0.5  # seconds a batch gathers lines after its first one
URGENT_DELAY = 0.02  # seconds a warning waits for the lines logged with it before the batch goes
MAX_MESSAGE = 16 * 1024  # characters of one log message (longer ones are cut)
MAX_BATCH_BYTES = 1 << 20  # characters of messages per pushed batch
FLUSH_TIMEOUT = 1.0  # seconds a stopping supervisor spends pushing its last lines


class PushHandler(logging.Handler):
    """A logging handler that queues records for the push loop (thread-safe)."""

    def __init__(self, level: int = logging.INFO, maxlen: int = MAX_BUFFERED) -> None:
        super().__init__(level)
        self.queue: collections.deque[tuple[float, str, str, str]] = collections.deque(maxlen=maxlen)
        self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._urgent: asyncio.Event | None = None
        self._queued: asyncio.Event | None = None
        self._flagged = False  # an urgent wake-up is on its way (one per batch, not one per line)
        self._woken = False  # a "lines queued" wake-up is on its way (one per batch)

    def bind(self, loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Event, asyncio.Event]:
        """The events :meth:`emit` sets (from any thread): ``(queued, urgent)``, when
        the first line since the last :meth:`unflag` is queued and when a
        warning-or-worse line is."""
        self._loop, self._urgent, self._queued = loop, asyncio.Event(), asyncio.Event()
        return self._queued, self._urgent

    def unflag(self) -> None:
        """The push loop took the wake-ups: the next line, and the next warning, send new ones."""
        self._flagged = self._woken = False
        if self._urgent is not None:
            self._urgent.clear()
        if self._queued is not None:
            self._queued.clear()

    def _wake(self, event: asyncio.Event | None) -> None:
        if self._loop is None or event is None:
            return
        try:
            self._loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop is closed (shutting down): the line waits for nothing
            pass

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("paramiko"):
            return
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not break logging
            message = str(record.msg)
        if len(message) > MAX_MESSAGE:  # one runaway line must not make every batch too big to send
            message = message[:MAX_MESSAGE] + " [truncated]"
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append((record.created, record.levelname.lower(), record.name, message))
        if not self._woken:
            self._woken = True
            self._wake(self._queued)
        if record.levelno >= logging.WARNING and not self._flagged:
            self._flagged = True
            self._wake(self._urgent)

    def drain(self, limit: int = 1000, max_bytes: int = MAX_BATCH_BYTES) -> list[tuple[float, str, str, str]]:
        """Take up to ``limit`` queued records, stopping once their messages reach
        ``max_bytes`` (a gRPC message must stay under the 4 MiB default)."""
        items: list[tuple[float, str, str, str]] = []
        size = 0
        while self.queue and len(items) < limit and size < max_bytes:
            item = self.queue.popleft()
            size += len(item[3])
            items.append(item)
        return items


async def push_loop(link: GatewayLink, handler: PushHandler, interval: float = PUSH_INTERVAL) -> None:
    """Forever: ``interval`` seconds after the first line queued, or :data:`URGENT_DELAY`
    after a warning-or-worse line, push what the handler queued, as one ``PushLogBatch`` call.
    With an empty queue it waits for a line, without a timer.

    A failed push puts the batch back (bounded by the queue) and retries ``interval``
    later. The records carry no parsed fields: the gateway parses the logfmt
    messages, off the proxy's event loop, which this loop shares.
    """
    queued, urgent = handler.bind(asyncio.get_running_loop())
    while True:
        if not handler.queue:
            await queued.wait()
        try:
            await asyncio.wait_for(urgent.wait(), interval)
        except TimeoutError:
            pass
        else:
            await asyncio.sleep(URGENT_DELAY)
        handler.unflag()
        batch = handler.drain()
        if not batch:
            continue
        try:
            pushed = await link.push_log_batch(_batch(batch))
        except asyncio.CancelledError:  # stopping: the batch goes with flush()
            handler.queue.extendleft(reversed(batch))
            raise
        if not pushed:
            handler.queue.extendleft(reversed(batch))


async def flush(link: GatewayLink, handler: PushHandler, timeout: float = FLUSH_TIMEOUT) -> None:
    """Push what is still queued, for at most ``timeout`` seconds: a stopping
    supervisor's last lines (the decisions of its last half second, its shutdown
    events) after :func:`push_loop` was cancelled. What cannot go in that time
    (the gateway is gone) stays only in the supervisor's own log file."""
    try:
        async with asyncio.timeout(timeout):
            while handler.queue:
                if not await link.push_log_batch(_batch(handler.drain())):
                    return
    except Exception:  # noqa: BLE001 - timed out, or a channel already closed: best effort, the stop goes on
        pass


def _batch(items: Iterable[tuple[float, str, str, str]]):
    out = supervisor_pb2.LogBatch()
    for created, level, target, message in items:
        rec = out.records.add(level=level, target=target, message=message)
        rec.time.FromNanoseconds(int(created * 1e9))
    return out
