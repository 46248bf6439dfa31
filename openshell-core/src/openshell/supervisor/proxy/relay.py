"""Raw bidirectional byte relay between a client and its upstream.

Kept alone so it can be swapped without touching policy code. On Linux each
direction moves bytes with ``splice(2)`` socket → pipe → socket, driven by the
event loop (non-blocking splices, waiting on readiness only when a splice
would block): the payload never enters Python, so a tunnel runs close to the
speed of a direct connection. Each direction is a ``_SplicePump``: plain
readiness callbacks rather than a coroutine, and the wait registration is only
changed when what it waits for changes. The first version awaited a fresh
future per wait and added and removed the reader each time (two
``epoll_ctl`` calls, a future and two loop turns per message), which cost a
small request/answer exchange more than the kernel work. Where ``os.splice`` is missing, a copy loop with
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


def _pipe() -> tuple[int, int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # above /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE: keep the default
        size = fcntl.fcntl(w, _F_GETPIPE_SZ)
    return r, w, size


class _SplicePump:
    """Move ``src`` → pipe → ``dst`` until EOF on ``src`` and the pipe is empty.

    Driven by the loop's readiness callbacks: with bytes in the pipe it waits
    only for ``dst`` to be writable (a pipe full of small segments refuses
    more input while ``src`` stays readable, which would spin); with an empty
    pipe it waits for ``src``. ``future`` ends with None at EOF (``dst`` then
    gets ``shutdown(SHUT_WR)``) or with the ``OSError`` that broke it.
    ``close()`` releases everything (idempotent, also mid-transfer).
    """

    ROUNDS = 16  # splice rounds per callback before giving other connections a turn

    def __init__(self, loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket, count: list[int], i: int) -> None:
        self.loop = loop
        self.dst = dst
        self.src_fd, self.dst_fd = src.fileno(), dst.fileno()
        self.count, self.i = count, i
        self.r, self.w, self.cap = _pipe()
        self.buffered = 0
        self.eof = False
        self.waiting: str | None = None  # "read" (src) | "write" (dst) | None
        self.future: asyncio.Future[None] = loop.create_future()
        self.closed = False

    def start(self) -> None:
        """Move what is there now, then wait for readiness."""
        self._run()

    def _wait(self, what: str | None) -> None:
        if what == self.waiting:
            return
        if self.waiting == "read":
            self.loop.remove_reader(self.src_fd)
        elif self.waiting == "write":
            self.loop.remove_writer(self.dst_fd)
        if what == "read":
            self.loop.add_reader(self.src_fd, self._run)
        elif what == "write":
            self.loop.add_writer(self.dst_fd, self._run)
        self.waiting = what

    def _run(self) -> None:
        if self.closed:
            return
        flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
        splice = os.splice
        try:
            for _ in range(self.ROUNDS):
                moved = False
                if not self.eof and self.buffered < self.cap:
                    try:
                        n = splice(self.src_fd, self.w, self.cap - self.buffered, flags=flags)
                    except BlockingIOError:
                        pass
                    else:
                        if n == 0:
                            self.eof = True
                        self.buffered += n
                        moved = n > 0
                if self.buffered:
                    try:
                        n = splice(self.r, self.dst_fd, self.buffered, flags=flags)
                    except BlockingIOError:
                        pass
                    else:
                        self.buffered -= n
                        self.count[self.i] += n
                        moved = moved or n > 0
                if self.eof and not self.buffered:
                    self._finish(None)
                    return
                if not moved:
                    break
        except OSError as exc:
            self._finish(exc)
            return
        # Out of rounds while still moving: the registration below fires again at
        # once (level-triggered), after the loop has served everyone else.
        self._wait("write" if self.buffered else "read")

    def _finish(self, exc: OSError | None) -> None:
        if exc is None:
            try:
                self.dst.shutdown(socket.SHUT_WR)  # pass the EOF on; the other direction may continue
            except OSError:
                pass
        if not self.future.done():
            if exc is None:
                self.future.set_result(None)
            else:
                self.future.set_exception(exc)
        self.close()

    def close(self) -> None:
        """Stop waiting, close the pipe, cancel ``future`` if still pending. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._wait(None)
        os.close(self.r)
        os.close(self.w)
        if not self.future.done():
            self.future.cancel()


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
    pumps: list[_SplicePump] = []
    up: asyncio.Future
    down: asyncio.Future
    if HAVE_SPLICE:
        pumps = [_SplicePump(loop, client, upstream, count, 0)]
        try:
            pumps.append(_SplicePump(loop, upstream, client, count, 1))
        except BaseException:
            pumps[0].close()
            raise
        up, down = pumps[0].future, pumps[1].future
        for pump in pumps:
            pump.start()
    else:
        up = asyncio.ensure_future(_pump(loop, client, upstream, buffer_size, count, 0))
        down = asyncio.ensure_future(_pump(loop, upstream, client, buffer_size, count, 1))
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
        for pump in pumps:
            pump.close()
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
