"""Raw bidirectional byte relay between a client and its upstream.

Kept alone so it can be swapped for something faster (``os.splice`` through a
pipe in a thread, ``loop.sock_sendfile``) without touching policy code. The
current version works on the raw non-blocking sockets with
``loop.sock_recv_into``/``loop.sock_sendall`` and one preallocated buffer per
direction: no per-chunk allocation, one ``await`` pair per chunk, and the
kernel socket buffers provide the pipelining.

Half-close is preserved (a client that ends its request with ``shutdown(SHUT_WR)``
still gets the whole answer). An error in one direction (reset, broken pipe)
ends both. There is no idle timeout: long-lived tunnels (SSE, websockets) are
legitimate; policy reloads end a tunnel by cancelling its task.
"""

from __future__ import annotations

import asyncio
import socket

BUFFER_SIZE = 256 * 1024  # bytes per direction; large chunks keep per-chunk Python work small


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
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
