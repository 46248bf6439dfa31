"""The gateway's single TCP port: mTLS, then ALPN decides who serves the bytes.

::

    TCP accept ─▶ TLS handshake (client certificate required, signed by our CA)
                     ├─ ALPN "h2"                 ─▶ byte relay to the gRPC server (unix socket)
                     └─ ALPN "http/1.1" or none   ─▶ small HTTP/1.1 server (routes below)

HTTP routes: ``GET /healthz`` → ``200 {"status":"ok"}``; ``/connect/ssh`` → 501 until
a handler is plugged in with :meth:`Front.add_route`; anything else → 404.

A route handler is ``async def handler(request, conn) -> HttpResponse | None``.
Returning a response lets the front write it (and keep the connection alive when
the client allows); returning ``None`` means the handler took the connection over
(``conn.reader``/``conn.writer``, e.g. after answering ``CONNECT /connect/ssh`` with
200 and splicing an SSH stream) and the front closes it when the handler returns.

The TLS handshake is started by us on an accepted socket (rather than by
``create_server(ssl=...)``) so a refused handshake is logged with its reason.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

from openshell.gateway import peers
from openshell.gateway.tls import peer_common_name

log = logging.getLogger("openshell.gateway")

#: bytes moved per write-buffer high-water mark on each side of a relay
RELAY_HIGH_WATER = 1 << 20
MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100
MAX_BODY_BYTES = 64 * 1024
MAX_REQUESTS_PER_CONNECTION = 100

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class PortInUseError(OSError):
    """The gateway's TCP port is taken by another process."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            errno.EADDRINUSE, f"port {port} on {host} is already in use; start the gateway on another port with 'openshell gateway start --port N'"
        )
        self.host = host
        self.port = port

    def __str__(self) -> str:
        return self.strerror or ""


@dataclass
class HttpRequest:
    """One parsed HTTP/1.x request.

    :ivar target: the request target as sent (``/healthz?x=1`` or ``host:port`` for CONNECT).
    :ivar headers: ``(name, value)`` pairs in order; names as sent.
    :ivar peer_cn: common name of the client's verified certificate.
    """

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    peer_cn: str = ""

    def header(self, name: str, default: str = "") -> str:
        """Return the first value of header ``name`` (case-insensitive)."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return default


@dataclass
class HttpResponse:
    """A complete response; ``body`` of a dict/list is sent as JSON."""

    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain; charset=utf-8"

    def encode(self, keep_alive: bool, head_only: bool = False) -> bytes:
        body = self.body
        ctype = self.content_type
        if isinstance(body, (dict, list)):
            body, ctype = json.dumps(body).encode(), "application/json"
        elif isinstance(body, str):
            body = body.encode()
        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Status')}"]
        headers = {"Content-Type": ctype, "Content-Length": str(len(body)), "Connection": "keep-alive" if keep_alive else "close"}
        headers.update(self.headers)
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)


@dataclass
class HttpConnection:
    """The connection a request came in on, for handlers that take it over.

    ``reader`` was made for request heads (limit :data:`MAX_HEAD_BYTES`); a handler
    that splices a byte stream should use ``reader.read(n)``, not ``readline``.
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    peer_cn: str


HttpHandler = Callable[[HttpRequest, HttpConnection], Awaitable["HttpResponse | None"]]


def json_error(status: int, message: str) -> HttpResponse:
    """Return ``{"error": message}`` with ``status``."""
    return HttpResponse(status, {"error": message})


async def healthz(request: HttpRequest, conn: HttpConnection) -> HttpResponse:
    """``GET /healthz`` → ``200 {"status":"ok"}`` (the front answers, so the process is up)."""
    if request.method not in ("GET", "HEAD"):
        return json_error(405, "use GET")
    return HttpResponse(200, {"status": "ok"})


async def connect_ssh_not_implemented(request: HttpRequest, conn: HttpConnection) -> HttpResponse:
    """Placeholder for ``/connect/ssh`` until the SSH relay is plugged in."""
    return json_error(501, "/connect/ssh is not implemented by this gateway yet")


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Front:
    """The TLS front on one TCP port.

    :param ssl_context: from :func:`openshell.gateway.tls.server_context` (must require
        client certificates and offer ALPN ``h2`` and ``http/1.1``).
    :param grpc_socket: path of the gRPC server's unix socket (ALPN ``h2`` goes there).
    :param host, port: where to listen; ``port=0`` picks a free port (see :attr:`port`).
    :param handshake_timeout: seconds a peer has to finish the TLS handshake.
    :param idle_timeout: seconds an HTTP/1.1 connection may wait for (the rest of) a request.
        gRPC relays have no idle timeout: watch and exec streams are legitimately
        silent for long stretches, and gRPC keepalives detect dead peers.
    :param max_connections: open connections beyond this are closed at accept
        (bounds memory and file descriptors under a flood).
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        grpc_socket: str,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        handshake_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        max_connections: int = 1024,
    ) -> None:
        self.ssl_context = ssl_context
        self.grpc_socket = grpc_socket
        self.host = host
        self.port = port
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.routes: dict[str, HttpHandler] = {"/healthz": healthz, "/connect/ssh": connect_ssh_not_implemented}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._transports: set[asyncio.Transport] = set()

    def add_route(self, path: str, handler: HttpHandler) -> None:
        """Serve exact ``path`` with ``handler`` (replacing any existing route)."""
        self.routes[path] = handler

    # ------------------------------------------------------------------ lifecycle

    async def bind(self) -> None:
        """Bind the port without accepting yet (so the real port is known early).

        :raises PortInUseError: the port is taken.
        :raises OSError: any other bind failure (e.g. address not available).
        """
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Accept(self),
                self.host,
                self.port,
                reuse_address=True,
                start_serving=False,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(self.host, self.port) from exc
            raise
        self.port = self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        """Bind (if not yet bound) and start accepting connections.

        :raises PortInUseError: the port is taken.
        """
        await self.bind()
        assert self._server is not None
        await self._server.start_serving()
        log.info("front listening host=%s port=%d grpc=%s", self.host, self.port, self.grpc_socket)

    def stop_accepting(self) -> None:
        """Close the listening socket; live connections continue."""
        if self._server is not None:
            self._server.close()

    async def close(self, grace: float = 2.0) -> None:
        """Stop accepting, give live connections ``grace`` seconds, then abort them."""
        self.stop_accepting()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        for transport in list(self._transports):
            transport.abort()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # ------------------------------------------------------------------ per connection

    def _accepted(self, transport: asyncio.Transport) -> None:
        if len(self._tasks) >= self.max_connections:
            log.warning("connection refused peer=%s reason=too many connections (%d)", _fmt_peer(transport.get_extra_info("peername")), self.max_connections)
            transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self._handle(transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, raw: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        peer = _fmt_peer(raw.get_extra_info("peername"))
        holder = _Handover()
        try:
            tls = await loop.start_tls(raw, holder, self.ssl_context, server_side=True, ssl_handshake_timeout=self.handshake_timeout)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            log.info("tls refused peer=%s reason=%s", peer, _reason(exc))
            raw.abort()
            return
        if tls is None:  # the peer went away during the handshake
            raw.abort()
            return
        holder.connection_made(tls)
        ssl_object = tls.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        peer_cn = peer_common_name(ssl_object)
        self._transports.add(tls)
        try:
            if alpn == "h2":
                await self._relay_grpc(tls, holder, peer, peer_cn)
            else:
                await self._serve_http(tls, holder, peer, peer_cn)
        except Exception:  # noqa: BLE001 - one bad connection must not hurt the others
            log.exception("connection failed peer=%s", peer)
        finally:
            self._transports.discard(tls)
            if not tls.is_closing():
                tls.close()

    async def _relay_grpc(self, tls: asyncio.Transport, holder: _Handover, peer: str, peer_cn: str) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        down = _Pipe(done, half_close=False)  # TLS client side
        up = _Pipe(done, half_close=True)  # gRPC server side
        down.peer, up.peer = up, down
        tls.pause_reading()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Autobind: the gRPC server sees this unique address as the call's
            # peer, and GetCurrentUser finds the client certificate by it.
            sock.bind(b"")
            sock.setblocking(False)
            await loop.sock_connect(sock, self.grpc_socket)
            upstream, _ = await loop.create_unix_connection(lambda: up, sock=sock)
        except OSError as exc:
            sock.close()
            log.error("grpc backend unavailable socket=%s error=%s", self.grpc_socket, exc)
            tls.abort()
            return
        address = sock.getsockname()
        peers.register(address, peer_cn)
        self._transports.add(upstream)
        try:
            for t in (tls, upstream):
                t.set_write_buffer_limits(high=RELAY_HIGH_WATER)
            tls.set_protocol(down)
            down.connection_made(tls)
            if holder.buffer:
                upstream.write(bytes(holder.buffer))
            if holder.closed:
                down.eof_received()
            else:
                tls.resume_reading()
            log.debug("grpc relay open peer=%s cn=%s", peer, peer_cn)
            await done
        finally:
            self._transports.discard(upstream)
            upstream.close()
            peers.forget(address)
            log.debug("grpc relay closed peer=%s", peer)

    async def _serve_http(self, tls: asyncio.Transport, holder: _Handover, peer: str, peer_cn: str) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        if holder.buffer:
            reader.feed_data(bytes(holder.buffer))
        tls.set_protocol(protocol)
        protocol.connection_made(tls)
        if holder.closed:
            reader.feed_eof()
        tls.resume_reading()
        writer = asyncio.StreamWriter(tls, protocol, reader, loop)
        conn = HttpConnection(reader, writer, peer, peer_cn)
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                request = await asyncio.wait_for(_read_request(reader), self.idle_timeout)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return  # idle, or the peer left between requests
            except _HttpError as exc:
                writer.write(json_error(exc.status, str(exc)).encode(keep_alive=False))
                await _drain(writer)
                return
            request.peer_cn = peer_cn
            handler = self.routes.get(request.path)
            try:
                response = await handler(request, conn) if handler else json_error(404, f"no route for {request.path}")
            except Exception:  # noqa: BLE001 - a handler bug is a 500, not a dead front
                log.exception("http handler failed path=%s peer=%s", request.path, peer)
                response = json_error(500, "internal error")
            if response is None:
                return  # the handler owned the connection
            keep = _keep_alive(request)
            writer.write(response.encode(keep_alive=keep, head_only=request.method == "HEAD"))
            # /healthz is polled (CLI start, monitors); keep it out of the INFO log
            log.log(
                logging.DEBUG if request.path == "/healthz" else logging.INFO,
                "http method=%s path=%s status=%d peer=%s cn=%s",
                request.method,
                request.path,
                response.status,
                peer,
                peer_cn,
            )
            if not await _drain(writer) or not keep:
                return


class _Accept(asyncio.Protocol):
    """Raw TCP protocol that only exists until the TLS handshake starts."""

    def __init__(self, front: Front) -> None:
        self.front = front

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Stop reading at once: bytes read before start_tls() swaps the protocol
        # (the ClientHello) would be lost.
        tcp = cast(asyncio.Transport, transport)  # a TCP server's (the Protocol API says BaseTransport)
        tcp.pause_reading()
        self.front._accepted(tcp)


class _Handover(asyncio.Protocol):
    """Holds application bytes that arrive between the handshake and the ALPN dispatch."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream's (the Protocol API says BaseTransport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > MAX_HEAD_BYTES and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.closed = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True


class _Pipe(asyncio.Protocol):
    """One side of a relay: bytes received here are written to ``peer``'s transport,
    with back-pressure (a full peer write buffer pauses reading here)."""

    def __init__(self, done: asyncio.Future, half_close: bool) -> None:
        self.done = done
        #: keep our transport open after EOF (a unix socket can; TLS cannot, and
        #: asyncio warns when an SSL protocol asks to)
        self.half_close = half_close
        self.peer: _Pipe | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream's (the Protocol API says BaseTransport)

    def data_received(self, data: bytes) -> None:
        peer = self.peer.transport if self.peer else None
        if peer is not None and not peer.is_closing():
            peer.write(data)

    def eof_received(self) -> bool:
        peer = self.peer.transport if self.peer else None
        if peer is not None and not peer.is_closing():
            if peer.can_write_eof():
                peer.write_eof()  # half-close toward the gRPC server; it answers and closes
            else:
                peer.close()  # TLS cannot half-close; close() still flushes what is buffered
        return self.half_close

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer.transport if self.peer else None
        if peer is not None and not peer.is_closing():
            peer.close()
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        if self.peer and self.peer.transport:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer and self.peer.transport and not self.peer.transport.is_closing():
            self.peer.transport.resume_reading()


# --------------------------------------------------------------------------- HTTP/1.1 parsing


async def _read_request(reader: asyncio.StreamReader) -> HttpRequest:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise _HttpError(431, f"request head larger than {MAX_HEAD_BYTES} bytes") from exc
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _HttpError(400, "incomplete request") from exc
        raise
    lines = head[:-4].decode("latin-1").split("\r\n")
    while lines and not lines[0]:  # tolerate stray CRLF between requests (RFC 9112 §2.2)
        lines.pop(0)
    if not lines:
        raise _HttpError(400, "empty request")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _HttpError(400, "malformed request line")
    method, target, version = parts
    if len(lines) - 1 > MAX_HEADERS:
        raise _HttpError(431, f"more than {MAX_HEADERS} headers")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _HttpError(400, "malformed header line")
        headers.append((name, value.strip()))
    if target.startswith("/"):  # origin-form, also for ``CONNECT /connect/ssh?sandbox=…``
        split = urlsplit(target)
        path, query = split.path or "/", split.query
    else:  # authority-form (``CONNECT host:port``) or absolute-form: routed by the whole target
        path, query = target, ""
    request = HttpRequest(method, target, path, query, version, headers)
    if request.header("Transfer-Encoding"):
        raise _HttpError(501, "chunked request bodies are not supported")
    length = request.header("Content-Length")
    if length:
        if not length.isdigit():
            raise _HttpError(400, "bad Content-Length")
        if int(length) > MAX_BODY_BYTES:
            raise _HttpError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        request.body = await reader.readexactly(int(length))
    return request


def _keep_alive(request: HttpRequest) -> bool:
    conn = request.header("Connection").lower()
    if request.version == "HTTP/1.0":
        return "keep-alive" in conn
    return "close" not in conn


async def _drain(writer: asyncio.StreamWriter) -> bool:
    try:
        await writer.drain()
        return True
    except (ConnectionError, OSError):
        return False


def _fmt_peer(peername: object) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername or "?")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, (asyncio.TimeoutError, ConnectionAbortedError)):
        return "handshake timeout" if "timeout" in str(exc).lower() or isinstance(exc, asyncio.TimeoutError) else str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__
