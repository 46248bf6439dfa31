"""Serving HTTP requests inside the supervisor (the ``inference.local`` seam).

Some names are answered by the supervisor itself rather than an upstream —
``https://inference.local/...`` reaches the inference router (DESIGN.md §5).
``serve_local`` gives such a service the same front door as inspected
connections: TLS termination with a sandbox-CA leaf for the name (or plain
HTTP when the client does not start TLS), the strict framing and smuggling
defences of ``message``, a ``Host`` check, canonical paths, keep-alive, and
streamed bodies in both directions. The handler only sees parsed requests.

Example (a router answering one JSON document)::

    async def handle(req: LocalRequest, resp: LocalResponse) -> None:
        body = await req.read(limit=1 << 20)
        await resp.send(200, [("Content-Type", "application/json")], b"{}")

    await serve_local(ca, client_sock, early, "inference.local", handle)

Streaming answers (server-sent events)::

    await resp.start(200, [("Content-Type", "text/event-stream")])
    async for piece in backend_stream():
        await resp.write(piece)            # one chunk each, sent at once
    await resp.end()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from openshell.policy.http import PathError, parse_query, split_target
from openshell.supervisor.proxy import responses
from openshell.supervisor.proxy.http1 import MAX_HEAD, HeadError, parse_authority, parse_head
from openshell.supervisor.proxy.l7.inspector import BODY_IDLE, HEAD_TIMEOUT, KEEPALIVE_IDLE, _peer_supports_keepalive, accept_client
from openshell.supervisor.proxy.l7.message import (
    BodyError,
    Framing,
    Reader,
    connection_tokens,
    copy_body,
    header_values,
    request_framing,
    serialize_head,
)
from openshell.supervisor.proxy.l7.transport import Transport, TransportError
from openshell.supervisor.proxy.log import DecisionLog


class BodyTooLarge(Exception):
    """``LocalRequest.read`` hit its limit; answer 413 (``serve_local`` does it)."""


class _Collect:
    def __init__(self, limit: int | None) -> None:
        self.data = bytearray()
        self.limit = limit

    async def sendall(self, data: bytes) -> None:
        self.data += data
        if self.limit is not None and len(self.data) > self.limit:
            raise BodyTooLarge(f"request body over {self.limit} bytes")


class _Queue:
    def __init__(self) -> None:
        self.q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)  # backpressure: one piece in flight

    async def sendall(self, data: bytes) -> None:
        await self.q.put(data)


@dataclass
class LocalRequest:
    """One parsed request.

    :ivar method: as sent; ``path``: canonical path; ``query``: ``(key, value)``
        pairs; ``target``: the original origin-form target (with the query);
        ``headers``: ``(name, value)`` pairs as sent (may hold credentials: never log values).
    """

    method: str
    target: str
    path: str
    query: tuple[tuple[str, str], ...]
    version: str
    headers: tuple[tuple[str, str], ...]
    _reader: Reader = field(repr=False)
    _framing: Framing = field(repr=False)
    _idle: float = field(repr=False, default=BODY_IDLE)
    _consumed: bool = field(repr=False, default=False)

    def header(self, name: str) -> str | None:
        """First value of ``name`` (case-insensitive), or None."""
        values = header_values(self.headers, name)
        return values[0] if values else None

    async def read(self, limit: int | None = 16 << 20) -> bytes:
        """The whole body (``b""`` when none).

        :param limit: maximum bytes (None = unbounded; do not, for sandbox input).
        :raises BodyTooLarge: over ``limit`` (the client gets 413).
        :raises BodyError: malformed chunked framing or a stalled client (400/408).
        """
        self._consumed = True
        sink = _Collect(limit)
        await copy_body(self._reader, self._framing, sink, idle=self._idle, decode=True)
        return bytes(sink.data)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body piece by piece as it arrives (for streaming it on; one piece
        in flight, so a slow consumer slows the client down).

        :raises BodyError: malformed chunked framing or a stalled client.
        """
        self._consumed = True
        sink = _Queue()

        async def produce() -> None:
            await copy_body(self._reader, self._framing, sink, idle=self._idle, decode=True)
            await sink.q.put(None)

        task = asyncio.ensure_future(produce())
        try:
            while True:
                get = asyncio.ensure_future(sink.q.get())
                done, _ = await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    task.result()  # a failed body raises here; a finished one left None queued
                    continue
                piece = get.result()
                if piece is None:
                    return
                yield piece
        finally:
            if not task.done():
                task.cancel()


class LocalResponse:
    """Writes the answer to one request: ``send`` (whole body) or ``start``/``write``/``end`` (chunked).

    :ivar started: True once the head went out (after that only closing can signal an error).
    """

    def __init__(self, transport: Transport, method: str, keep_alive: bool) -> None:
        self._t = transport
        self._method = method
        self.keep_alive = keep_alive
        self.started = False
        self.ended = False
        self._chunked = False

    def _head(self, status: int, reason: str, headers: list[tuple[str, str]], extra: list[tuple[str, str]]) -> bytes:
        drop = {"connection", "content-length", "transfer-encoding", "keep-alive"}
        fields = [(k, v) for k, v in headers if k.lower() not in drop] + extra
        fields.append(("Connection", "keep-alive" if self.keep_alive else "close"))
        return serialize_head(f"HTTP/1.1 {status} {reason or 'OK'}", fields)

    async def send(self, status: int, headers: list[tuple[str, str]], body: bytes = b"", reason: str = "") -> None:
        """Send a complete answer with ``Content-Length``."""
        self.started = True
        head = self._head(status, reason, headers, [("Content-Length", str(len(body)))])
        await self._t.sendall(head + (b"" if self._method == "HEAD" else body))
        self.ended = True

    async def start(self, status: int, headers: list[tuple[str, str]], reason: str = "") -> None:
        """Send the head of a streamed (chunked) answer; then ``write`` and ``end``."""
        self.started = True
        self._chunked = self._method != "HEAD"
        await self._t.sendall(self._head(status, reason, headers, [("Transfer-Encoding", "chunked")]))

    async def write(self, data: bytes) -> None:
        """Send one chunk at once (empty data is skipped: it would end the body)."""
        if data and self._chunked:
            await self._t.sendall(b"%x\r\n" % len(data) + bytes(data) + b"\r\n")

    async def end(self) -> None:
        """Finish a streamed answer."""
        if self._chunked:
            await self._t.sendall(b"0\r\n\r\n")
        self.ended = True


Handler = Callable[[LocalRequest, LocalResponse], Awaitable[None]]


async def serve_local(
    ca,
    sock: socket.socket,
    early: bytes,
    host: str,
    handler: Handler,
    *,
    log: DecisionLog | None = None,
    keepalive_idle: float = KEEPALIVE_IDLE,
    head_timeout: float = HEAD_TIMEOUT,
    body_idle: float = BODY_IDLE,
) -> None:
    """Serve HTTP/1.1 requests for ``host`` on an accepted client until it closes.

    :param ca: the sandbox CA (``server_context(host)``); TLS when the client starts it.
    :param sock: the client socket (non-blocking; the caller closes it afterwards).
    :param early: bytes already read after the ``CONNECT`` head.
    :param host: the name served (``inference.local``); ``Host`` must name it.
    :param handler: ``await handler(request, response)`` per request; it must
        answer (``send`` or ``start``…``end``). An exception before the head went
        out answers ``502 local_service_failed``; after it, the connection closes.
    :param log: where ``bad_request`` / ``tls_client_failed`` events go.
    Malformed input gets 400/408/431 and a close, exactly as on inspected connections.
    """
    try:
        client = await accept_client(ca, sock, early, host)
    except TransportError as exc:
        if log:
            log.event("tls_client_failed", host=host, reason=str(exc))
        return
    if client is None:
        return
    reader = Reader(client, "request")
    try:
        while True:
            head = await reader.read_head(limit=MAX_HEAD, first_timeout=keepalive_idle, timeout=head_timeout)
            if head is None:
                return
            req = parse_head(head)
            framing = request_framing(req)
            hosts = header_values(req.headers, "host")
            if len(hosts) != 1:
                raise BodyError(400, "a request needs exactly one Host header")
            try:
                named = parse_authority(hosts[0], 443 if client.tls else 80).host
            except HeadError:
                named = None
            if named != host:
                await _close_with(
                    client, responses.json_response(403, {"error": "request_authority_mismatch", "detail": f"the Host header does not name {host}"})
                )
                return
            if not req.target.startswith("/"):
                raise BodyError(400, "origin-form requests only (METHOD /path HTTP/1.1)")
            try:
                path, raw_query = split_target(req.target)
            except PathError as exc:
                raise BodyError(400, f"request path refused: {exc}") from None
            keep = _peer_supports_keepalive(req.version, connection_tokens(req.headers))
            request = LocalRequest(req.method, req.target, path, parse_query(raw_query), req.version, req.headers, reader, framing, body_idle)
            response = LocalResponse(client, req.method.upper(), keep)
            try:
                await handler(request, response)
            except BodyTooLarge as exc:
                if not response.started:
                    await _close_with(client, responses.error(413, "body_too_large", str(exc)))
                return
            except (HeadError, OSError, TransportError, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - the service failed: say so, never a traceback
                if log:
                    log.event("local_service_failed", host=host, method=req.method, path=path, reason=type(exc).__name__)
                if not response.started:
                    await _close_with(client, responses.error(502, "local_service_failed", f"{host} could not answer: {type(exc).__name__}"))
                return
            if not response.ended:
                return
            if not request._consumed and framing.kind != "none":
                return  # an unread body: the stream position is unknown, so close
            if not response.keep_alive:
                return
    except HeadError as exc:
        if log:
            log.event("bad_request", host=host, status=exc.status, reason=exc.message)
        await _close_with(client, responses.error(exc.status, "bad_request", exc.message))
    except (OSError, TransportError, TimeoutError, BodyTooLarge):
        pass
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_write(), 1.0)


async def _close_with(client: Transport, response: bytes) -> None:
    with contextlib.suppress(OSError, TransportError, TimeoutError):
        async with asyncio.timeout(1.0):
            await client.sendall(response)
            await client.shutdown_write()
            drained = 0
            while drained < 1 << 20 and (chunk := await client.recv(65536)):
                drained += len(chunk)
