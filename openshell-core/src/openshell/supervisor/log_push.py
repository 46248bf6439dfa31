"""Ship the supervisor's log lines to the gateway (``Supervisor.PushLogs``).

Proxy decisions, policy loads and lifecycle events become visible through
``openshell sandbox logs NAME`` without access to the host. Lines are buffered
in a bounded queue (oldest dropped first, counted) and pushed in batches, so a
slow or absent gateway never blocks the proxy.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from typing import Iterable

from openshell.supervisor.link import GatewayLink

MAX_BUFFERED = 10_000  # lines held while the gateway is unreachable
PUSH_INTERVAL = 0.5  # seconds between batches
_LOGFMT = re.compile(r'([A-Za-z_][A-Za-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|\S+)')


def logfmt_fields(message: str) -> dict[str, str]:
    """Parse ``key=value`` pairs (values may be double-quoted) out of a log message."""
    out: dict[str, str] = {}
    for key, value in _LOGFMT.findall(message):
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        out[key] = value
    return out


class PushHandler(logging.Handler):
    """A logging handler that queues records for the push loop (thread-safe)."""

    def __init__(self, level: int = logging.INFO, maxlen: int = MAX_BUFFERED) -> None:
        super().__init__(level)
        self.queue: collections.deque[tuple[float, str, str, str]] = collections.deque(maxlen=maxlen)
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("paramiko"):
            return
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not break logging
            message = str(record.msg)
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append((record.created, record.levelname.lower(), record.name, message))

    def drain(self, limit: int = 1000) -> list[tuple[float, str, str, str]]:
        items = []
        while self.queue and len(items) < limit:
            items.append(self.queue.popleft())
        return items


async def push_loop(link: GatewayLink, handler: PushHandler, interval: float = PUSH_INTERVAL) -> None:
    """Forever: every ``interval`` seconds push what the handler queued.

    A failed push puts the batch back (bounded by the queue) and retries later.
    """
    while True:
        await asyncio.sleep(interval)
        batch = handler.drain()
        if not batch:
            continue
        if not await link.push_logs(_records(batch)):
            handler.queue.extendleft(reversed(batch))


def _records(batch: Iterable[tuple[float, str, str, str]]):
    from openshell._proto import supervisor_pb2

    for created, level, target, message in batch:
        rec = supervisor_pb2.LogRecord(level=level, target=target, message=message)
        rec.time.FromNanoseconds(int(created * 1e9))
        rec.fields.update(logfmt_fields(message))
        yield rec
