"""Raw bidirectional byte relay between a client and its upstream.

Kept alone so it can be swapped without touching policy code. On Linux each
direction moves bytes with ``splice(2)`` socket → pipe → socket, driven by the
event loop (non-blocking splices, waiting on readiness only when a splice
would block): the payload never enters Python, so a tunnel runs close to the
speed of a direct connection. Where ``os.splice`` is missing, a copy loop with
one preallocated buffer per direction (``loop.sock_recv_into``/``sock_sendall``)
does the same job more slowly.

Half-close is preserved (a client that ends its request with ``shutdown(SHUT_WR)``
still gets the whole answer). An error in one direction (reset, broken pipe)
ends both. There is no idle timeout: long-lived tunnels (SSE, websockets) are
legitimate; policy reloads end a tunnel by cancelling its task.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket

BUFFER_SIZE = 256 * 1024  # bytes per direction; large chunks keep per-chunk Python work small
PIPE_SIZE = 1 << 20  # bytes; asked of F_SETPIPE_SZ (the kernel may cap it at pipe-max-size)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
HAVE_SPLICE = hasattr(os, "splice")


async def _pump(
    loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket, size: int, count: list[int], i: int
) -> None:
    buf = bytearray(size)
    view = memoryview(buf)
    recv_into = loop.sock_recv_into
    sendall = loop.sock_sendall
    while True:
        n = await recv_into(src, buf)
        if not n:
            break
        await sendall(dst, view[:n])
        count[i] += n
    try:
        dst.shutdown(socket.SHUT_WR)  # pass the EOF on; the other direction may continue
    except OSError:
        pass


async def _wait(loop: asyncio.AbstractEventLoop, fd: int, writable: bool) -> None:
    fut = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
    add(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        remove(fd)


def _pipe() -> tuple[int, int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # above /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE: keep the default
        size = fcntl.fcntl(w, _F_GETPIPE_SZ)
    return r, w, size


async def _splice_pump(
    loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket, size: int, count: list[int], i: int
) -> None:
    """Move ``src`` → pipe → ``dst`` until EOF on ``src`` and the pipe is empty."""
    r, w, cap = _pipe()
    src_fd, dst_fd = src.fileno(), dst.fileno()
    flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
    buffered = 0
    eof = False
    try:
        while True:
            moved = False
            if not eof and buffered < cap:
                try:
                    n = os.splice(src_fd, w, cap - buffered, flags=flags)
                except BlockingIOError:
                    pass
                else:
                    if n == 0:
                        eof = True
                    buffered += n
                    moved = n > 0
            if buffered:
                try:
                    n = os.splice(r, dst_fd, buffered, flags=flags)
                except BlockingIOError:
                    pass
                else:
                    buffered -= n
                    count[i] += n
                    moved = moved or n > 0
            if eof and not buffered:
                break
            if not moved:
                # Nothing moved. With bytes in the pipe the destination is full: wait
                # for it (not for the source too — a pipe full of small segments
                # refuses more input while the source stays readable, which would
                # spin). With an empty pipe, wait for input.
                if buffered:
                    await _wait(loop, dst_fd, True)
                else:
                    await _wait(loop, src_fd, False)
    finally:
        os.close(r)
        os.close(w)
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


async def relay(
    client: socket.socket,
    upstream: socket.socket,
    *,
    to_upstream: bytes = b"",
    to_client: bytes = b"",
    buffer_size: int = BUFFER_SIZE,
    until_upstream_eof: bool = False,
) -> tuple[int, int]:
    """Copy bytes both ways until both directions ended.

    :param client: non-blocking connected socket of the sandbox client.
    :param upstream: non-blocking connected socket of the upstream.
    :param to_upstream: bytes to send upstream first (e.g. data the client sent
        right after its request head).
    :param to_client: bytes to send to the client first.
    :param buffer_size: bytes per direction.
    :param until_upstream_eof: stop both directions as soon as the upstream ends
        its side (forward requests: the answer is complete, the client must not
        send more requests to this upstream).
    :returns: ``(bytes client→upstream, bytes upstream→client)``, prefixes included.
    :raises OSError: when either side fails; the other direction is cancelled first.
        The caller closes both sockets.
    """
    loop = asyncio.get_running_loop()
    if to_upstream:
        await loop.sock_sendall(upstream, to_upstream)
    if to_client:
        await loop.sock_sendall(client, to_client)
    count = [len(to_upstream), len(to_client)]
    pump = _splice_pump if HAVE_SPLICE else _pump
    up = asyncio.ensure_future(pump(loop, client, upstream, buffer_size, count, 0))
    down = asyncio.ensure_future(pump(loop, upstream, client, buffer_size, count, 1))
    try:
        pending = {up, down}
        # Normal end: both directions reached EOF (or only the upstream one with
        # until_upstream_eof). Any failure ends the relay at once.
        while pending and (down in pending or not until_upstream_eof):
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raise the first failure
        return count[0], count[1]
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
