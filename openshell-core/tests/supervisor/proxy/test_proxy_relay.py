"""``relay``: both implementations (splice and copy) move every byte and keep half-close."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket

import pytest
from openshell.supervisor.proxy import relay as relay_mod

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["splice", "copy"])
def mode(request, monkeypatch):
    if request.param == "splice" and not relay_mod.HAVE_SPLICE:
        pytest.skip("os.splice not available")
    monkeypatch.setattr(relay_mod, "HAVE_SPLICE", request.param == "splice")
    return request.param


async def _exchange(payload_up: bytes, payload_down: bytes) -> tuple[bytes, bytes, tuple[int, int]]:
    loop = asyncio.get_running_loop()
    client_app, client_proxy = socket.socketpair()
    upstream_proxy, upstream_app = socket.socketpair()
    for s in (client_app, client_proxy, upstream_proxy, upstream_app):
        s.setblocking(False)

    async def send(sock: socket.socket, payload: bytes) -> None:
        await loop.sock_sendall(sock, payload)
        sock.shutdown(socket.SHUT_WR)

    async def app(sock: socket.socket, payload: bytes) -> bytes:
        # Send and receive at once: both payloads exceed the socket buffers.
        sender = asyncio.ensure_future(send(sock, payload))
        got = bytearray()
        while chunk := await loop.sock_recv(sock, 1 << 16):
            got += chunk
        await sender
        return bytes(got)

    try:
        counts, got_up, got_down = await asyncio.gather(
            relay_mod.relay(client_proxy, upstream_proxy, to_upstream=b"early:"),
            app(upstream_app, payload_down),
            app(client_app, payload_up),
        )
    finally:
        for s in (client_app, client_proxy, upstream_proxy, upstream_app):
            s.close()
    return got_up, got_down, counts


def test_relay_moves_every_byte_both_ways_with_half_close(mode):
    up, down = os.urandom(3_000_000), os.urandom(5_000_000)
    got_up, got_down, counts = asyncio.run(_exchange(up, down))
    assert got_up == b"early:" + up
    assert got_down == down
    assert counts == (len(up) + 6, len(down))


async def _ping_pong(rounds: int) -> int:
    """Client ↔ relay ↔ echo server, one small message at a time (interactive traffic)."""
    loop = asyncio.get_running_loop()
    client_app, client_proxy = socket.socketpair()
    upstream_proxy, upstream_app = socket.socketpair()
    for s in (client_app, client_proxy, upstream_proxy, upstream_app):
        s.setblocking(False)

    async def echo() -> None:
        while data := await loop.sock_recv(upstream_app, 65536):
            await loop.sock_sendall(upstream_app, data)
        upstream_app.shutdown(socket.SHUT_WR)

    relayed = asyncio.ensure_future(relay_mod.relay(client_proxy, upstream_proxy))
    echoed = asyncio.ensure_future(echo())
    ok = 0
    try:
        for i in range(rounds):
            msg = f"ping {i}\n".encode()
            await loop.sock_sendall(client_app, msg)
            got = b""
            while len(got) < len(msg):
                got += await loop.sock_recv(client_app, 65536)
            ok += got == msg
        client_app.shutdown(socket.SHUT_WR)
        assert await loop.sock_recv(client_app, 10) == b""  # the echo's EOF came through
        await asyncio.wait_for(relayed, 10)
        await echoed
    finally:
        for s in (client_app, client_proxy, upstream_proxy, upstream_app):
            s.close()
    return ok


def test_relay_carries_many_small_round_trips_in_order(mode):
    assert asyncio.run(_ping_pong(300)) == 300


def test_relay_cancelled_mid_transfer_releases_its_pipes(mode):
    async def scenario() -> None:
        client_app, client_proxy = socket.socketpair()
        upstream_proxy, upstream_app = socket.socketpair()
        for s in (client_proxy, upstream_proxy):
            s.setblocking(False)
        try:
            relay_mod._pool.clear()  # pipes kept from earlier tunnels are not a leak
            before = len(os.listdir("/proc/self/fd"))
            task = asyncio.ensure_future(relay_mod.relay(client_proxy, upstream_proxy))
            client_app.sendall(b"x" * 100_000)  # the upstream never reads: the relay is mid-transfer
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert len(os.listdir("/proc/self/fd")) == before
        finally:
            for s in (client_app, client_proxy, upstream_proxy, upstream_app):
                s.close()

    asyncio.run(scenario())


def test_clean_tunnels_reuse_their_pipes_and_never_leak_bytes_into_the_next():
    if not relay_mod.HAVE_SPLICE:
        pytest.skip("os.splice not available")
    relay_mod._pool.clear()
    asyncio.run(_exchange(b"a" * 10_000, b"b" * 20_000))
    pipes_after_first = _open_pipes()
    for _ in range(20):  # every tunnel takes the pipes the last one returned: no growth
        up, down = os.urandom(200_000), os.urandom(300_000)
        got_up, got_down, _ = asyncio.run(_exchange(up, down))
        assert got_up == b"early:" + up and got_down == down
    assert _open_pipes() == pipes_after_first


def _open_pipes() -> int:
    """Pipes this process holds, after a collection (an earlier test's garbage closing
    its sockets or pipes mid-test must not count)."""
    gc.collect()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
    return count


def test_a_pipe_with_bytes_left_is_closed_not_reused():
    if not relay_mod.HAVE_SPLICE:
        pytest.skip("os.splice not available")
    pool = relay_mod.PipePool(limit=4)
    dirty = pool.take()
    os.write(dirty[1], b"secret of the last tunnel")
    pool.give(dirty, clean=True)  # the caller believed it empty; FIONREAD says otherwise
    with pytest.raises(OSError):
        os.fstat(dirty[0])
    clean = pool.take()
    pool.give(clean, clean=True)
    assert pool.take() == clean  # an empty pipe is kept and handed out again
    pool.give(clean, clean=False)  # a pump that failed mid-transfer: always closed
    with pytest.raises(OSError):
        os.fstat(clean[0])
