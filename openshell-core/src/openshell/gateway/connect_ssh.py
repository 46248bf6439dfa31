"""``CONNECT /connect/ssh``: an SSH tunnel from a client to a sandbox's supervisor.

The client (already authenticated by mTLS at the front) sends::

    CONNECT /connect/ssh HTTP/1.1
    x-sandbox-id: <sandbox id from CreateSshSession>
    x-sandbox-token: <token from CreateSshSession>

Answers, in this order of checks:

- ``405`` not a CONNECT;
- ``404`` no sandbox with that id;
- ``401`` token missing, unknown, expired, revoked or bound to another sandbox;
- ``412`` the sandbox is not READY;
- ``429`` the token already holds 3 tunnels, or the sandbox 20;
- ``502`` the supervisor's SSH endpoint cannot be reached or refused the preface;
- ``200 Connection Established``, after which the gateway has sent the NSSH1
  preface (signed with the sandbox's secret) to the supervisor's SSH server and
  relays bytes both ways until either side closes.

Error bodies are ``{"error": "..."}`` and the connection is closed after them.
The token never appears in a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from typing import Any

from openshell.gateway import store as st
from openshell.gateway.front import HttpConnection, HttpRequest, HttpResponse
from openshell.gateway.sandbox_exec import SandboxUnreachable, open_ssh_socket
from openshell.gateway.ssh_sessions import TokenInvalid, TooManyTunnels

log = logging.getLogger("openshell.gateway")

CHUNK = 64 * 1024  # bytes per read on each side of the relay
#: seconds without a byte in either direction before a tunnel is closed; the
#: supervisor's SSH server sends a keepalive every 30 s, so only dead peers hit it
IDLE_TIMEOUT = 300.0
_REASONS = {
    200: "Connection Established",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    412: "Precondition Failed",
    429: "Too Many Requests",
    502: "Bad Gateway",
}


def _head(status: int, body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    if status != 200:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ConnectSshHandler:
    """The ``/connect/ssh`` route for one gateway (``front.add_route("/connect/ssh", handler)``).

    :param core: the :class:`~openshell.gateway.core.GatewayCore` (its ``ssh_sessions``,
        store and compute driver are used).
    """

    def __init__(self, core: Any) -> None:
        self.core = core

    async def __call__(self, request: HttpRequest, conn: HttpConnection) -> HttpResponse | None:
        """Answer an error, or take the connection over and relay SSH bytes; returns None."""
        status, message, session, sock = await self._admit(request)
        if status != 200:
            conn.writer.write(_head(status, json.dumps({"error": message}).encode()))
            with contextlib.suppress(ConnectionError, OSError):
                await conn.writer.drain()
            log.info("event=connect_ssh_refused status=%d peer=%s cn=%s reason=%s", status, conn.peer, conn.peer_cn, message)
            return None
        assert sock is not None  # _admit gives a socket with every 200
        sandbox_id = request.header("x-sandbox-id")
        log.info("event=connect_ssh_open sandbox=%s peer=%s cn=%s", sandbox_id, conn.peer, conn.peer_cn)
        try:
            conn.writer.write(_head(200))
            await relay(conn.reader, conn.writer, sock)
        finally:
            self.core.ssh_sessions.release(session)
            log.info("event=connect_ssh_closed sandbox=%s peer=%s", sandbox_id, conn.peer)
        return None

    async def _admit(self, request: HttpRequest) -> tuple[int, str, Any, socket.socket | None]:
        if request.method != "CONNECT":
            return 405, "use CONNECT /connect/ssh with headers x-sandbox-id and x-sandbox-token", None, None
        sandbox_id = request.header("x-sandbox-id").strip()
        token = request.header("x-sandbox-token").strip()
        record = await self.core.sandbox_by_id(sandbox_id)
        if record is None:
            return 404, "sandbox not found; see 'openshell sandbox list'", None, None
        sessions = self.core.ssh_sessions
        try:
            sessions.check(sandbox_id, token)
        except TokenInvalid as exc:
            return 401, f"{exc}; get a new one with CreateSshSession", None, None
        if record.phase != st.READY:
            return 412, f"sandbox '{record.name}' is {record.phase}, not READY", None, None
        try:
            session = sessions.acquire(sandbox_id, token)
        except TokenInvalid as exc:
            return 401, str(exc), None, None
        except TooManyTunnels as exc:
            return 429, str(exc), None, None
        try:
            endpoint = await asyncio.to_thread(self.core.driver.ssh_endpoint, record.id)
            sock = await asyncio.to_thread(open_ssh_socket, endpoint, bytes.fromhex(record.secret), "connect")
        except (SandboxUnreachable, OSError) as exc:
            sessions.release(session)
            return 502, f"sandbox '{record.name}' is unreachable: {exc}", None, None
        except BaseException:
            sessions.release(session)
            raise
        return 200, "", session, sock


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock: socket.socket, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
    """Copy bytes client ⇄ ``sock`` until the supervisor side ends; closes ``sock``.

    Each direction reads at most :data:`CHUNK` bytes and waits for the other
    side to drain before reading more (bounded buffers). EOF from the client
    half-closes the socket (SSH then ends the session cleanly). No byte in
    either direction for ``idle_timeout`` seconds closes the tunnel.
    """
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    up_reader, up_writer = await asyncio.open_connection(sock=sock, limit=CHUNK)
    last = [loop.time()]

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, half_close: bool) -> None:
        try:
            while True:
                data = await src.read(CHUNK)
                if not data:
                    break
                last[0] = loop.time()
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                if half_close and dst.can_write_eof():
                    dst.write_eof()
                else:
                    dst.close()

    up = asyncio.ensure_future(pump(reader, up_writer, True))
    down = asyncio.ensure_future(pump(up_reader, writer, False))
    try:
        # The supervisor closing ends the tunnel; the client closing only ends its half.
        while not down.done():
            await asyncio.wait([down], timeout=min(idle_timeout, 30.0))
            if not down.done() and loop.time() - last[0] > idle_timeout:
                log.info("event=connect_ssh_idle_timeout seconds=%d", int(idle_timeout))
                break
        up.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await up
    finally:
        for task in (up, down):
            task.cancel()
        up_writer.close()
        with contextlib.suppress(Exception):
            await up_writer.wait_closed()


def install(front: Any, core: Any) -> None:
    """Register ``/connect/ssh`` on ``front`` for ``core`` (called by the gateway at start)."""
    if core is None:
        return
    front.add_route("/connect/ssh", ConnectSshHandler(core))
