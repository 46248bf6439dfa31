"""The raw relay after ``101 Switching Protocols`` on an inspected connection (WebSocket).

Once the upstream accepted an allowed ``Upgrade: websocket`` GET, the bytes are
no longer HTTP: they are copied both ways (through the TLS sessions of both
sides) without a total or idle timeout — long-lived sockets are legitimate.
Policy reloads still apply (POLICY.md §6): every ``RELOAD_POLL`` seconds the
relay asks ``still_allowed()`` and ends when the answer is no.

When a secret was substituted into the upgrade request, the server's bytes go
through ``transform`` (a :class:`~openshell.supervisor.proxy.l7.websocket.FrameScrubber`'s
``feed``) before the client sees them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from openshell.supervisor.proxy.l7.message import Reader
from openshell.supervisor.proxy.l7.transport import Transport

Transform = Callable[[bytes], bytes]

RELOAD_POLL = 1.0  # seconds between policy checks on an upgraded relay


async def relay_upgraded(
    creader: Reader,
    upstream: Transport,
    ureader: Reader,
    client: Transport,
    still_allowed: Callable[[], bool],
    server_transform: Transform | None = None,
) -> None:
    """Copy bytes both ways until both directions ended, one failed, or a reload
    denies the relay.

    :param creader: the client side (bytes it buffered are sent first).
    :param upstream: where client bytes go.
    :param ureader: the upstream side (bytes it buffered are sent first).
    :param client: where upstream bytes go.
    :param still_allowed: cheap check run every ``RELOAD_POLL`` seconds; False ends the relay.
    :param server_transform: rewrites upstream → client bytes (None: copied as they are).
    :raises OSError / TransportError: a side failed (the other direction is cancelled first).
    :raises UpstreamError: ``server_transform`` refused the upstream's bytes.
    """

    async def pump(reader: Reader, dst: Transport, transform: Transform | None = None) -> None:
        if reader.buf:
            data = reader.take()
            await dst.sendall(transform(data) if transform else data)
        while data := await reader.transport.recv():
            if transform is not None:
                data = transform(data)
                if not data:
                    continue
            await dst.sendall(data)
        await dst.shutdown_write()

    async def watch() -> None:
        while True:
            await asyncio.sleep(RELOAD_POLL)
            if not still_allowed():
                return

    pumps = {asyncio.ensure_future(pump(creader, upstream)), asyncio.ensure_future(pump(ureader, client, server_transform))}
    watcher = asyncio.ensure_future(watch())
    try:
        pending = set(pumps)
        while pending:
            done, pending = await asyncio.wait(pending | {watcher}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(watcher)
            for task in done - {watcher}:
                task.result()
            if watcher in done:
                return  # no longer allowed
    finally:
        for task in (*pumps, watcher):
            task.cancel()
        await asyncio.gather(*pumps, watcher, return_exceptions=True)
