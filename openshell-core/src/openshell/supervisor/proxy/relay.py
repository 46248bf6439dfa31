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
import struct
import termios
from collections.abc import Callable

BUFFER_SIZE = 256 * 1024  # bytes per direction; large chunks keep per-chunk Python work small
PIPE_SIZE = 1 << 20  # bytes; asked of F_SETPIPE_SZ (the kernel may cap it at pipe-max-size)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
HAVE_SPLICE = hasattr(os, "splice")


async def _pump(loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket, size: int, count: list[int], i: int) -> None:
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


def _new_pipe() -> tuple[int, int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # above /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE: keep the default
        size = fcntl.fcntl(w, _F_GETPIPE_SZ)
    return r, w, size


class PipePool:
    """Empty pipes kept for the next tunnel: ``(read fd, write fd, capacity bytes)``.

    A new pipe costs four system calls (``pipe2``, ``F_SETPIPE_SZ`` and two
    ``close``) per direction per connection, a fifth of the proxy's per-connection
    system calls. A pipe goes back only when a pump ended cleanly with nothing
    buffered, and ``FIONREAD`` confirms it is empty, so no byte of one tunnel can
    reach another. At most ``limit`` pipes are kept (two file descriptors each).
    """

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._free: list[tuple[int, int, int]] = []

    def take(self) -> tuple[int, int, int]:
        """An empty pipe (reused or new). :raises OSError: out of file descriptors."""
        try:
            return self._free.pop()  # list.pop is atomic: safe if loops in several threads share the pool
        except IndexError:
            return _new_pipe()

    def give(self, pipe: tuple[int, int, int], clean: bool) -> None:
        """Return ``pipe``; it is closed unless ``clean``, empty and there is room."""
        if clean and len(self._free) < self.limit:
            try:
                pending = struct.unpack("i", fcntl.ioctl(pipe[0], termios.FIONREAD, b"\0\0\0\0"))[0]
            except OSError:
                pending = -1
            if pending == 0:
                self._free.append(pipe)
                return
        os.close(pipe[0])
        os.close(pipe[1])

    def clear(self) -> None:
        """Close every kept pipe."""
        while self._free:
            r, w, _ = self._free.pop()
            os.close(r)
            os.close(w)


_pool = PipePool()


class _SplicePump:
    """Move ``src`` → pipe → ``dst`` until EOF on ``src`` and the pipe is empty.

    Driven by the loop's readiness callbacks: with bytes in the pipe it waits
    only for ``dst`` to be writable (a pipe full of small segments refuses
    more input while ``src`` stays readable, which would spin); with an empty
    pipe it waits for ``src``. At EOF ``dst`` gets ``shutdown(SHUT_WR)``;
    ``error`` is then None, or the ``OSError`` that broke the pump; either way
    ``done(pump)`` is called once. ``close()`` releases everything (idempotent,
    also mid-transfer).
    """

    ROUNDS = 16  # splice rounds per callback before giving other connections a turn

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        src: socket.socket,
        dst: socket.socket,
        count: list[int],
        i: int,
        done: Callable[[_SplicePump], None],
    ) -> None:
        self.loop = loop
        self.dst = dst
        self.src_fd, self.dst_fd = src.fileno(), dst.fileno()
        self.count, self.i = count, i
        self.pipe = _pool.take()
        self.r, self.w, self.cap = self.pipe
        self._done = done
        self.buffered = 0
        self.eof = False
        self.waiting: str | None = None  # "read" (src) | "write" (dst) | None
        self.finished = False
        self.error: OSError | None = None
        self.closed = False

    def start(self) -> None:
        """Wait for readiness (level-triggered: bytes already there wake it at once;
        trying a splice first costs a failed system call on a fresh tunnel)."""
        self._wait("read")

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
                drained = False  # src had less than the pipe could take: it is empty now
                if not self.eof and self.buffered < self.cap:
                    want = self.cap - self.buffered
                    try:
                        n = splice(self.src_fd, self.w, want, flags=flags)
                    except BlockingIOError:
                        drained = True
                    else:
                        if n == 0:
                            self.eof = True
                        self.buffered += n
                        moved = n > 0
                        drained = n < want
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
                # Another splice from a socket just drained would only fail with
                # EAGAIN: wait for readiness instead (small messages pay one system
                # call less each way).
                if not moved or (drained and not self.buffered):
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
        self.finished, self.error = True, exc
        self.close()
        self._done(self)

    def close(self) -> None:
        """Stop waiting and release the pipe (back to the pool only when it is
        known empty). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._wait(None)
        _pool.give(self.pipe, self.finished and self.error is None and not self.buffered)


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
    if not HAVE_SPLICE:
        return await _relay_copy(loop, client, upstream, count, buffer_size, until_upstream_eof)
    ended: asyncio.Future[None] = loop.create_future()

    def done(pump: _SplicePump) -> None:
        # Any failure ends the relay at once; a clean EOF ends it when both
        # directions are done (or the upstream one, with until_upstream_eof).
        if ended.done():
            return
        if pump.error is not None:
            ended.set_exception(pump.error)
        elif all(p.finished for p in pumps) or (until_upstream_eof and pumps[1].finished):
            ended.set_result(None)

    pumps: list[_SplicePump] = []
    try:
        pumps.append(_SplicePump(loop, client, upstream, count, 0, done))
        pumps.append(_SplicePump(loop, upstream, client, count, 1, done))
        for pump in pumps:
            pump.start()
        await ended
        return count[0], count[1]
    finally:
        for pump in pumps:
            pump.close()


async def _relay_copy(
    loop: asyncio.AbstractEventLoop,
    client: socket.socket,
    upstream: socket.socket,
    count: list[int],
    buffer_size: int,
    until_upstream_eof: bool,
) -> tuple[int, int]:
    up = asyncio.ensure_future(_pump(loop, client, upstream, buffer_size, count, 0))
    down = asyncio.ensure_future(_pump(loop, upstream, client, buffer_size, count, 1))
    try:
        pending = {up, down}
        while pending and (down in pending or not until_upstream_eof):
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raise the first failure
        return count[0], count[1]
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
