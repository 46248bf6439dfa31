"""Serve ``inference.local``: terminate TLS, check the call, rewrite it, stream it to the backend.

Per request:

1. ``HEAD /`` / ``GET /`` → 200 (liveness probe of agents); any other call that
   :func:`~openshell.supervisor.inference.paths.classify` does not recognise →
   403 ``{"error": "inference_path_denied", "path": ...}``;
2. no route configured → 503 ``inference_not_configured``; a call of a protocol
   the backend does not speak → 400 ``inference_protocol_mismatch``;
3. the body (JSON, at most :data:`MAX_BODY` bytes) gets the route's ``model``;
   the caller's credentials (``Authorization``, ``x-api-key``, ``api-key``,
   cookies, proxy headers) are dropped and the backend's auth headers injected;
4. the request goes to ``base_url + subpath + ?query`` with a connect timeout
   and an idle (per read) timeout only — never a total timeout — and the
   response (server-sent events included) is relayed chunk by chunk;
5. backend unreachable / connect timeout → 502 ``inference_backend_unavailable``;
6. a backend that echoes the injected auth header values never returns them:
   response heads and bodies are scrubbed (``proxy.l7.scrub``; the value shows
   as :data:`REDACTED`), the backend is asked for identity encoding, gzip/deflate
   answers are decoded and any other coding is answered 502
   ``inference_response_uninspectable``.

Logs carry method, path, backend, status and duration; never headers or bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import importlib
import json
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any

from openshell.inference.bundle import RouteBundle
from openshell.supervisor.inference.paths import ALLOWED, InferenceCall, classify
from openshell.supervisor.proxy.l7.scrub import BodyDecoder, ScrubError, SecretSet, secret_forms

log = logging.getLogger("openshell.supervisor.inference")


class _LazyModule:
    """A module imported on first attribute access.

    aiohttp costs ~0.12 s of import and several MiB per supervisor; every
    sandbox makes a router but few ever call ``inference.local``, so it is
    imported by the first call instead of on the sandbox's way to READY.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


aiohttp: Any = _LazyModule("aiohttp")
web: Any = _LazyModule("aiohttp.web")

INFERENCE_HOST = "inference.local"
CONNECT_TIMEOUT = 10.0  # seconds to connect to the backend
IDLE_TIMEOUT = 300.0  # seconds without a byte from the backend (models think before the first token)
CLIENT_IDLE_TIMEOUT = 120.0  # seconds a keep-alive client connection may sit idle
HANDSHAKE_TIMEOUT = 10.0  # seconds for the client's TLS handshake
FIRST_REQUEST_TIMEOUT = 10.0  # seconds a new connection has to deliver its first request head (slowloris)
MAX_BODY = 32 << 20  # bytes of one request body
REDACTED = "openshell:redacted"  # what a client sees where a backend echoed the route's credential
_INLINE_JSON = 256 << 10  # bodies above this are (de)serialised in a worker thread

#: request headers never forwarded: hop-by-hop, the caller's credentials, what we recompute
#: (bodies arrive decompressed and are re-serialised, so their content-encoding goes too)
_DROP_REQUEST = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "accept-encoding",
        "authorization",
        "x-api-key",
        "api-key",
        "cookie",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
    }
)
_DROP_RESPONSE = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "content-length",
        "upgrade",
        "trailer",
        "te",
        "set-cookie",
        "server",
        "date",
    }
)


def _json(status: int, error: str, detail: str, **extra: Any) -> web.Response:
    body = {"error": error, "detail": detail, **extra}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def tls_context(ca: Any) -> ssl.SSLContext:
    """A server context presenting a certificate for ``inference.local`` signed by the sandbox CA.

    Uses ``SandboxCA.server_context`` (the proxy's leaf cache) when present;
    otherwise issues a leaf here. The key never touches a filesystem (memfd).
    """
    if hasattr(ca, "server_context"):
        return ca.server_context(INFERENCE_HOST)
    from openshell import pki  # cryptography: not on a supervisor's way to READY

    key = pki.new_key()
    cert = pki.issue_leaf(ca.cert, ca.key, key.public_key(), INFERENCE_HOST, sans=[INFERENCE_HOST], validity=datetime.timedelta(days=365))
    return pki.server_context(pki.cert_pem(cert) + pki.key_pem(key))


@functools.cache
def _server_class() -> type:
    """``_Server``: defined on first use (it subclasses aiohttp's server, see ``_LazyModule``)."""

    class _Server(web.Server):
        """aiohttp's low-level server, telling us when each connection ended."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.ended: dict[Any, asyncio.Future[None]] = {}

        def connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
            super().connection_made(handler, transport)
            self.ended.setdefault(handler, asyncio.get_running_loop().create_future())

        def connection_lost(self, handler: Any, exc: BaseException | None = None) -> None:
            super().connection_lost(handler, exc)
            fut = self.ended.pop(handler, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    return _Server


_Server = Any  # annotations only; the class is _server_class()


@functools.lru_cache(maxsize=8)
def _echo_secrets(auth: tuple[tuple[str, str], ...]) -> SecretSet:
    """Forms of the route's auth header values (and of their token after a scheme
    such as ``Bearer``) that must not come back to the client."""
    forms: dict[bytes, bytes] = {}
    for _name, value in auth:
        scheme, sep, token = value.partition(" ")
        if sep and token.strip() and scheme.isalpha():
            value = token.strip()  # "Bearer KEY": the key is the secret (and shows as "Bearer <redacted>")
        forms.update(secret_forms(value, REDACTED))
    return SecretSet(forms)


class InferenceRouter:
    """One sandbox's ``inference.local``.

    :param sandbox_id: for log lines.
    :param ca: the sandbox CA (``SandboxCA``); its leaf for ``inference.local`` is served.
    :param bundle: the initial route (revision 0: none); swap with :meth:`set_bundle`.
    :param connect_timeout: seconds to connect to the backend.
    :param idle_timeout: seconds without a byte from the backend before giving up.
    :param first_request_timeout: seconds a new client connection has to deliver
        its first complete request head; silent or trickling clients are closed.
    """

    def __init__(
        self,
        sandbox_id: str,
        ca: Any = None,
        bundle: RouteBundle | None = None,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        first_request_timeout: float = FIRST_REQUEST_TIMEOUT,
    ) -> None:
        self.sandbox_id = sandbox_id
        self.ca = ca
        self.bundle = bundle or RouteBundle()
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.first_request_timeout = first_request_timeout
        self._served: set[Any] = set()  # open connections that sent a request (removed when they end)
        self._tls: ssl.SSLContext | None = None
        self._server: _Server | None = None
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ lifecycle

    def set_bundle(self, bundle: RouteBundle) -> None:
        """Route new requests with ``bundle`` (requests in flight keep theirs)."""
        self.bundle = bundle
        log.info(
            "event=inference_route sandbox=%s backend=%s model=%s revision=%d", self.sandbox_id, bundle.backend or "-", bundle.model or "-", bundle.revision
        )

    def _ensure(self) -> _Server:
        if self._server is None:
            self._server = _server_class()(self._handle, keepalive_timeout=CLIENT_IDLE_TIMEOUT, max_line_size=8190, max_field_size=8190)
            timeout = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout, sock_connect=self.connect_timeout, sock_read=self.idle_timeout)
            self._session = aiohttp.ClientSession(
                timeout=timeout,
                trust_env=False,
                auto_decompress=False,
                connector=aiohttp.TCPConnector(limit=64, force_close=False),
            )
        return self._server

    async def close(self) -> None:
        """Close the backend connection pool and end client connections."""
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown(1.0)
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ connections

    async def serve_tls(self, sock: socket.socket, early: bytes = b"") -> None:
        """Serve a CONNECT tunnel to ``inference.local`` (after ``200 Connection Established``).

        TLS (first byte 0x16) is terminated with the sandbox CA's leaf; anything
        else is served as plain HTTP. Returns when the client connection has
        ended; the socket is closed then. ``early`` bytes (sent before our 200)
        are refused: clients wait for it.
        """
        if early:
            log.info("event=inference_refused sandbox=%s reason=bytes before the tunnel was established", self.sandbox_id)
            return
        first = await self._peek(sock)
        if not first:
            return
        if first != b"\x16":  # not a TLS handshake record: plain HTTP inside the tunnel (curl --proxytunnel http://)
            await self._serve(sock, b"", None)
            return
        if self._tls is None:
            self._tls = tls_context(self.ca)
        await self._serve(sock, b"", self._tls)

    async def _peek(self, sock: socket.socket) -> bytes:
        """The client's first byte without consuming it; b"" when it closed or stayed silent."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(sock.fileno(), wake)
        try:
            await asyncio.wait_for(ready, self.first_request_timeout)
            return sock.recv(1, socket.MSG_PEEK)
        except (TimeoutError, OSError):
            return b""
        finally:
            loop.remove_reader(sock.fileno())

    async def serve_plain(self, sock: socket.socket, initial: bytes) -> None:
        """Serve plain ``http://inference.local`` requests; ``initial`` is the first
        request (origin-form head plus any body bytes already read)."""
        await self._serve(sock, initial, None)

    async def _serve(self, sock: socket.socket, initial: bytes, tls: ssl.SSLContext | None) -> None:
        server = self._ensure()
        loop = asyncio.get_running_loop()
        try:
            _transport, handler = await loop.connect_accepted_socket(server, sock, ssl=tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls else None)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info("event=inference_handshake_failed sandbox=%s reason=%s", self.sandbox_id, exc)
            return
        if initial:
            handler.data_received(initial)
        ended = server.ended.get(handler)
        if ended is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(ended), self.first_request_timeout)
        except TimeoutError:
            if handler not in self._served:
                log.info("event=inference_client_timeout sandbox=%s reason=no request within %.0f s", self.sandbox_id, self.first_request_timeout)
                _transport.close()
            await ended
        finally:
            self._served.discard(handler)

    # ------------------------------------------------------------------ requests

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        self._served.add(request.protocol)
        path = request.rel_url.raw_path
        bundle = self.bundle
        response = await self._route(request, path, bundle)
        log.info(
            "event=inference_request sandbox=%s method=%s path=%s backend=%s status=%s ms=%d",
            self.sandbox_id,
            request.method,
            path,
            bundle.backend or "-",
            response.status,
            (time.monotonic() - started) * 1000,
        )
        return response

    async def _route(self, request: web.BaseRequest, path: str, bundle: RouteBundle) -> web.StreamResponse:
        if path == "/" and request.method in ("HEAD", "GET"):
            return web.Response(status=200, text="" if request.method == "HEAD" else '{"status":"ok"}', content_type="application/json")
        call = classify(request.method, path)
        if call is None:
            return _json(
                403, "inference_path_denied", f"{request.method} {path} is not an inference API call served by inference.local", path=path, allowed=ALLOWED
            )
        if bundle.revision == 0 or not bundle.base_url:
            return _json(503, "inference_not_configured", "no inference route is set; run 'openshell inference set --backend B --model M'")
        if call.protocol != "any" and call.protocol not in bundle.protocols:
            return _json(
                400,
                "inference_protocol_mismatch",
                f"backend '{bundle.backend}' speaks {', '.join(bundle.protocols)}; {request.method} {path} is a {call.protocol} call",
                path=path,
            )
        body = b""
        if request.method == "POST":
            body_or_error = await self._read_body(request, call, bundle)
            if isinstance(body_or_error, web.Response):
                return body_or_error
            body = body_or_error
        return await self._forward(request, call, bundle, body)

    async def _read_body(self, request: web.BaseRequest, call: InferenceCall, bundle: RouteBundle) -> bytes | web.Response:
        declared = request.content_length
        if declared is not None and declared > MAX_BODY:
            return _json(413, "request_too_large", f"request bodies are limited to {MAX_BODY} bytes")
        chunks, size = [], 0
        while chunk := await request.content.read(65536):
            size += len(chunk)
            if size > MAX_BODY:
                return _json(413, "request_too_large", f"request bodies are limited to {MAX_BODY} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not call.rewrites_model:
            return raw
        try:
            # Large bodies are parsed off the event loop: the proxy serves every connection on it.
            doc = await asyncio.to_thread(json.loads, raw) if len(raw) > _INLINE_JSON else json.loads(raw)
        except (ValueError, RecursionError):
            return _json(400, "invalid_json", "the request body is not JSON")
        if not isinstance(doc, dict):
            return _json(400, "invalid_json", "the request body must be a JSON object")
        doc["model"] = bundle.model
        if len(raw) > _INLINE_JSON:
            return (await asyncio.to_thread(json.dumps, doc)).encode()
        return json.dumps(doc).encode()

    def _upstream_headers(self, request: web.BaseRequest, auth: Mapping[str, str], has_body: bool) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            lower = name.lower()
            if lower in _DROP_REQUEST or lower.startswith("proxy-"):
                continue
            headers[name] = value
        for name, value in auth.items():  # the backend's auth wins over anything left
            for existing in [k for k in headers if k.lower() == name.lower()]:
                del headers[existing]
            headers[name] = value
        if has_body:
            headers.setdefault("Content-Type", "application/json")
        return headers

    async def _forward(self, request: web.BaseRequest, call: InferenceCall, bundle: RouteBundle, body: bytes) -> web.StreamResponse:
        assert self._session is not None
        url = bundle.base_url.rstrip("/") + "/" + call.subpath
        if request.query_string:
            url += "?" + request.query_string
        headers = self._upstream_headers(request, bundle.auth_headers, bool(body))
        secrets = _echo_secrets(tuple(sorted(bundle.auth_headers.items())))
        if secrets:
            headers["Accept-Encoding"] = "identity"  # a compressed answer would hide an echoed key
        try:
            upstream = await self._session.request(
                request.method,
                url,
                data=body if request.method == "POST" else None,
                headers=headers,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = "connect timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
            return _json(
                502, "inference_backend_unavailable", f"backend '{bundle.backend}' at {bundle.base_url} is unreachable: {reason}", backend=bundle.backend
            )
        try:
            decoder = None
            if secrets:
                try:
                    decoder = BodyDecoder(",".join(upstream.headers.getall("Content-Encoding", [])))
                except ScrubError as exc:
                    return _json(502, "inference_response_uninspectable", str(exc), backend=bundle.backend)
            scrub = secrets.stream()
            out = web.StreamResponse(status=upstream.status, reason=secrets.replace_all((upstream.reason or "").encode("latin-1")).decode("latin-1"))
            for name, value in upstream.headers.items():
                lower = name.lower()
                if lower in _DROP_RESPONSE or (decoder is not None and not decoder.identity and lower in ("content-encoding", "content-md5", "digest")):
                    continue
                out.headers.add(name, secrets.replace_all(value.encode("latin-1", "replace")).decode("latin-1") if secrets else value)
            await out.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    if decoder is None:
                        await out.write(chunk)
                        continue
                    for piece in decoder.feed(chunk):
                        if data := scrub.feed(piece):
                            await out.write(data)
                if decoder is not None:
                    decoder.finish()
                    if data := scrub.flush():
                        await out.write(data)
            except (aiohttp.ClientError, TimeoutError, ScrubError) as exc:
                # Mid-stream: the status is sent; end the response abruptly so the client sees the break.
                log.info("event=inference_stream_broken sandbox=%s backend=%s reason=%s", self.sandbox_id, bundle.backend, exc or "idle timeout")
                with contextlib.suppress(Exception):
                    request.transport.close() if request.transport else None
                return out
            await out.write_eof()
            return out
        finally:
            upstream.release()
