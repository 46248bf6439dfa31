"""The HTTP inspector: every request on a ``rest`` endpoint is decided (POLICY.md §3).

``tunnel`` (after an allowed ``CONNECT``): peek at the client's first byte; a TLS
handshake (``0x16``) is terminated with a leaf of the sandbox CA for the CONNECT
host and the upstream is spoken to over TLS with normal verification; anything
else is inspected as plain HTTP on both sides. ``forward`` (absolute-form
``http://`` request): that one request is inspected, then the connection closes.

Per request, in order:

1. strict head and framing checks (``message``): 400/431 and close;
2. exactly one ``Host`` that names the CONNECT target, else 403
   ``request_authority_mismatch``;
3. canonical path (``openshell.policy.http.split_target``), 400 when refused;
4. decision under the policy in force *now* (``flow.current_policy()``): after a
   reload the connection itself is decided again first; one log line with
   method and canonical path (never the query or header values);
5. deny → 403 with the §3 JSON body and ``X-OpenShell-Policy``, then close;
   allow/audit → hooks, then the request goes upstream and the response streams
   back (no total timeout); the connection is kept alive when both sides allow it.

Once a hook substituted a secret on a connection (``L7Request.redact``), every
later response on it is scrubbed (``scrub``): the secret's forms are replaced by
its placeholder in the head and the body, the upstream is asked for
``Accept-Encoding: identity`` (gzip/deflate answers are decoded anyway, other
codings give 502), and the body is re-framed as chunked (close-delimited for
HTTP/1.0 clients) because its length changes. Connections without a
substitution are never scanned.

``Upgrade: websocket`` on an allowed GET answered ``101`` becomes a raw relay;
any other upgrade is stripped (an unexpected ``101`` closes the connection), so
no protocol switch can escape inspection. When a secret was substituted on the
connection, the upgrade goes without ``Sec-WebSocket-Extensions`` and the
server's frames are scrubbed and re-framed (``websocket``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import ssl
import threading
from collections.abc import Sequence

from openshell.plugin.kinds import CompiledPolicy
from openshell.policy.decide import decide
from openshell.policy.decision import Decision, RequestInput
from openshell.policy.http import PathError, parse_query, split_target
from openshell.supervisor.proxy import responses
from openshell.supervisor.proxy.http1 import MAX_HEAD, HeadError, RequestHead, parse_authority, parse_head, split_absolute
from openshell.supervisor.proxy.inspect import Flow, Inspector
from openshell.supervisor.proxy.l7.hooks import HookRefused, L7Request, RequestHook
from openshell.supervisor.proxy.l7.message import (
    MAX_RESPONSE_HEAD,
    BodyError,
    Framing,
    Reader,
    ResponseHead,
    UpstreamError,
    connection_tokens,
    copy_body,
    header_values,
    parse_response_head,
    request_framing,
    response_framing,
    serialize_head,
)
from openshell.supervisor.proxy.l7.scrub import BodyDecoder, ScrubbingSink, ScrubError, SecretSet, secret_forms
from openshell.supervisor.proxy.l7.transport import PlainTransport, TlsTransport, Transport, TransportError, upstream_context
from openshell.supervisor.proxy.l7.upgrade import relay_upgraded
from openshell.supervisor.proxy.l7.websocket import FrameScrubber

log = logging.getLogger("openshell.supervisor.proxy")

KEEPALIVE_IDLE = 120.0  # seconds a kept-alive client may stay silent between requests
HEAD_TIMEOUT = 10.0  # seconds for a request head once its first byte arrived
BODY_IDLE = 60.0  # seconds a client may stall inside a request body
FIRST_BYTE_TIMEOUT = 30.0  # seconds after CONNECT for the client's first byte
_LINGER = 1.0  # seconds to drain after an error answer (see ProxyServer._reject)

# Fields meant for this hop only; never forwarded (RFC 9110 §7.6.1).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "upgrade", "http2-settings"}
)
# Framing and target fields are never dropped, even when listed in Connection.
_KEEP = frozenset({"host", "content-length", "transfer-encoding"})


class _Close(Exception):
    """Answer ``response`` (if any) to the client and close the connection."""

    def __init__(self, response: bytes | None = None) -> None:
        self.response = response


def _peer_supports_keepalive(version: str, tokens: set[str]) -> bool:
    if "close" in tokens:
        return False
    return version == "HTTP/1.1" or "keep-alive" in tokens


async def _wait_readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())


async def accept_client(ca, sock: socket.socket, early: bytes, host: str, *, timeout: float = FIRST_BYTE_TIMEOUT) -> Transport | None:  # noqa: ASYNC109 - first-byte deadline, distinct from the handshake
    """Terminate a client that may or may not start TLS (the inference.local seam too).

    Peeks at the first byte (``early[0]`` or ``MSG_PEEK``): ``0x16`` (a TLS
    handshake record) → TLS server side with ``ca.server_context(host)``;
    anything else → plain.

    :param ca: a ``SandboxCA`` (``server_context(host) -> ssl.SSLContext``).
    :param sock: non-blocking client socket (not owned).
    :param early: bytes already read from the client.
    :param host: the name the leaf certificate is issued for.
    :param timeout: seconds to wait for the first byte.
    :returns: the transport, or None when the client closed or stayed silent.
    :raises TransportError: the TLS handshake failed (e.g. the client does not
        trust the sandbox CA).
    """
    first = early[:1]
    if not first:
        try:
            async with asyncio.timeout(timeout):
                await _wait_readable(sock)
            first = sock.recv(1, socket.MSG_PEEK)
        except (TimeoutError, BlockingIOError, OSError):
            return None
        if not first:
            return None
    if first == b"\x16":
        return await TlsTransport.server(sock, ca.server_context(host), early)
    return PlainTransport(sock, early)


_NO_SECRETS = SecretSet()


@dataclasses.dataclass
class _Conn:
    """State of one inspected client connection."""

    flow: Flow
    client: Transport
    creader: Reader
    upstream: Transport | None
    ureader: Reader | None
    tls: bool
    forward_mode: bool
    compiled: CompiledPolicy | None = None
    conn_decision: Decision | None = None
    upgraded: tuple[str, tuple[tuple[str, str], ...]] | None = None  # (path, query) of a WebSocket upgrade
    served: int = 0  # requests forwarded so far
    secrets: SecretSet = _NO_SECRETS  # substituted on this connection: scrubbed from every later response


def _upstream_gone(conn: _Conn) -> bool:
    """True when the idle upstream closed or sent something unasked (between
    requests an HTTP server only ever closes)."""
    assert conn.upstream is not None and conn.ureader is not None
    if conn.ureader.buf or conn.ureader.eof:
        return True
    try:
        conn.upstream.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # b"" (closed) or bytes: readable
    except BlockingIOError:
        return False  # nothing pending: still open
    except OSError:
        pass  # reset
    return True


class HttpInspector(Inspector):
    """Inspects HTTP on ``protocol: rest`` endpoints (POLICY.md §3).

    :param ca: the sandbox CA (``openshell.supervisor.sandbox_ca.SandboxCA``);
        leaves come from its bounded LRU cache, its key never leaves memory.
    :param upstream_ctx: client TLS context for upstreams; default
        ``upstream_context(extra_ca)`` (system roots + ``extra_ca``, verification on),
        built by the first inspected TLS connection: loading the system roots is
        ~20 ms of every sandbox start otherwise. ``extra_ca`` is still
        read and parsed here, so a bad file stops the start.
    :param extra_ca: PEM file of extra trust roots (``$OPENSHELL_EXTRA_CA``).
    :param hooks: ``RequestHook`` objects run in order on every allowed request.
    :param keepalive_idle: seconds a client may idle between requests (then closed quietly).
    :param body_idle: seconds a client may stall inside a request body (then 408 and close).
    :param head_timeout: seconds for a request head once its first byte arrived (408).
    :raises OSError / ssl.SSLError: ``extra_ca`` cannot be read or parsed — the
        supervisor does not start (fail closed).

    There is no total timeout anywhere and no timeout on upstream reads, so long
    polls, large downloads and server-sent events are never cut.
    """

    def __init__(
        self,
        ca,
        *,
        upstream_ctx: ssl.SSLContext | None = None,
        extra_ca: str | None = None,
        hooks: Sequence[RequestHook] = (),
        keepalive_idle: float = KEEPALIVE_IDLE,
        body_idle: float = BODY_IDLE,
        head_timeout: float = HEAD_TIMEOUT,
    ) -> None:
        self.ca = ca
        if upstream_ctx is None and extra_ca:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=extra_ca)  # fail closed now
        self._upstream_ctx = upstream_ctx
        self._extra_ca = extra_ca
        self._ctx_lock = threading.Lock()
        self.hooks = list(hooks)
        self.keepalive_idle = keepalive_idle
        self.body_idle = body_idle
        self.head_timeout = head_timeout

    @property
    def upstream_ctx(self) -> ssl.SSLContext:
        """The client TLS context for upstreams (see ``upstream_ctx`` above), made on first use.

        :raises OSError / ssl.SSLError: ``extra_ca`` became unreadable since start
            (that connection fails; verification is never skipped).
        """
        with self._ctx_lock:
            if self._upstream_ctx is None:
                self._upstream_ctx = upstream_context(self._extra_ca)
            return self._upstream_ctx

    # ------------------------------------------------------------------ Inspector API

    async def tunnel(self, flow: Flow, client: socket.socket, upstream: socket.socket, early: bytes) -> None:
        """Inspect an allowed CONNECT to a ``rest`` endpoint (see module docstring)."""
        host = flow.connect.host
        try:
            ct = await accept_client(self.ca, client, early, host)
        except TransportError as exc:
            flow.log.event("tls_client_failed", host=host, port=flow.connect.port, binary=flow.connect.binary, reason=str(exc))
            return
        if ct is None:
            return
        ut: Transport
        if ct.tls:
            try:
                try:
                    upstream_ctx = self.upstream_ctx
                except OSError as exc:  # ssl.SSLError too: the extra CA file went bad since start
                    raise TransportError(f"upstream trust store: {exc}") from exc
                ut = await TlsTransport.client(upstream, upstream_ctx, host)
            except TransportError as exc:
                flow.log.event("upstream_tls_failed", host=host, port=flow.connect.port, binary=flow.connect.binary, reason=str(exc))
                await self._answer_and_close(ct, responses.error(502, "upstream_tls_failed", f"TLS to {host}:{flow.connect.port} failed: {exc}"))
                return
        else:
            ut = PlainTransport(upstream)
        conn = _Conn(flow, ct, Reader(ct, "request"), ut, Reader(ut, "response"), ct.tls, forward_mode=False)
        await self._serve(conn, None)

    async def forward(self, flow: Flow, client: socket.socket, upstream: socket.socket, request: RequestHead, early: bytes) -> None:
        """Inspect one plain-HTTP forward request; the connection closes after its answer."""
        ct = PlainTransport(client, early)
        ut = PlainTransport(upstream)
        conn = _Conn(flow, ct, Reader(ct, "request"), ut, Reader(ut, "response"), False, forward_mode=True)
        try:
            _, auth, origin = split_absolute(request.target)
        except HeadError as exc:
            await self._answer_and_close(ct, responses.error(exc.status, "bad_request", exc.message))
            return
        host = auth.host if ":" not in auth.host else f"[{auth.host}]"
        host_value = host if auth.port == 80 else f"{host}:{auth.port}"
        headers = tuple((k, v) for k, v in request.headers if k.lower() != "host") + (("Host", host_value),)
        await self._serve(conn, RequestHead(request.method, origin, request.version, headers))

    # ------------------------------------------------------------------ the request loop

    async def _serve(self, conn: _Conn, first: RequestHead | None) -> None:
        try:
            while True:
                if first is not None:
                    req, first = first, None
                else:
                    head = await conn.creader.read_head(limit=MAX_HEAD, first_timeout=self.keepalive_idle, timeout=self.head_timeout)
                    if head is None:
                        return
                    req = parse_head(head)
                if not await self._one(conn, req):
                    return
        except HeadError as exc:  # includes BodyError
            conn.flow.log.event("bad_request", host=conn.flow.connect.host, port=conn.flow.connect.port, status=exc.status, reason=exc.message)
            await self._answer_and_close(conn.client, responses.error(exc.status, "bad_request", exc.message))
        except _Close as close:
            if close.response:
                await self._answer_and_close(conn.client, close.response)
        except (OSError, TransportError, UpstreamError, TimeoutError):
            pass  # a side went away mid-message: nothing sensible to answer
        # CancelledError (proxy closing) propagates; the finally below still runs.
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.client.shutdown_write(), _LINGER)

    async def _answer_and_close(self, client: Transport, response: bytes) -> None:
        """Send an error answer, end our side, drain briefly (avoids RST eating it)."""
        with contextlib.suppress(OSError, TransportError, TimeoutError, ssl.SSLError):
            async with asyncio.timeout(_LINGER):
                await client.sendall(response)
                await client.shutdown_write()
                drained = 0
                while drained < 1 << 20 and (chunk := await client.recv(65536)):
                    drained += len(chunk)

    async def _one(self, conn: _Conn, req: RequestHead) -> bool:
        """Serve one request; True when the connection may carry another."""
        flow = conn.flow
        if conn.served and _upstream_gone(conn):
            # The upstream ended the kept-alive connection while it was idle. Close
            # without answering: clients retry such a request on a new connection.
            return False
        conn.served += 1
        framing = request_framing(req)
        if req.method == "CONNECT" or not req.target.startswith("/"):
            raise BodyError(400, "inspected connections accept origin-form requests only (METHOD /path HTTP/1.1)")
        try:
            path, raw_query = split_target(req.target)
        except PathError as exc:
            raise BodyError(400, f"request path refused: {exc}") from None
        method = req.method.upper()
        if not conn.forward_mode:
            self._check_host(conn, req, method, path)
        decision = self._decide(conn, method, path, parse_query(raw_query))
        label = {"allow": "ALLOWED", "audit": "AUDIT"}.get(decision.action, "DENIED")
        flow.log.decision(
            decision=label,
            engine=decision.engine or flow.engine.name,
            host=flow.connect.host,
            port=flow.connect.port,
            binary=flow.connect.binary,
            ancestors=flow.connect.ancestors,
            policy=decision.policy,
            reason=decision.reason,
            error=None if decision.allowed else (decision.error or "policy_denied"),
            method=method,
            path=path,
        )
        if not decision.allowed:
            raise _Close(self._denied(conn, decision, method, path))

        websocket = (
            method == "GET"
            and any(v.strip().lower() == "websocket" for v in header_values(req.headers, "upgrade"))
            and "upgrade" in connection_tokens(req.headers)
        )
        if websocket:
            conn.upgraded = (path, parse_query(raw_query))
        l7 = L7Request(
            req.method, req.target, req.version, self._upstream_headers(req, websocket), flow.connect.host, flow.connect.port, conn.tls, flow, decision.policy
        )
        self._run_hooks(l7, path)
        if l7.redactions:
            forms: dict[bytes, bytes] = {}
            for secret, replacement in l7.redactions.items():
                forms.update(secret_forms(secret, replacement))
            conn.secrets = conn.secrets.union(forms)
        if conn.secrets:
            # A compressed answer would hide an echoed secret from the scrubber.
            l7.headers = [(k, v) for k, v in l7.headers if k.lower() != "accept-encoding"] + [("Accept-Encoding", "identity")]
            if websocket:
                # No WebSocket extension (permessage-deflate): frames must stay scrub-able.
                l7.headers = [(k, v) for k, v in l7.headers if k.lower() != "sec-websocket-extensions"]
        head = serialize_head(f"{l7.method} {l7.target} {l7.version}", l7.headers)
        return await self._exchange(conn, req, method, framing, head, websocket)

    def _check_host(self, conn: _Conn, req: RequestHead, method: str, path: str) -> None:
        """Exactly one ``Host``, naming the CONNECT target (an explicit port must
        match too); else 400 / 403 ``request_authority_mismatch``."""
        hosts = header_values(req.headers, "host")
        if len(hosts) != 1:
            raise BodyError(400, "a request needs exactly one Host header")
        target = conn.flow.connect
        try:
            auth = parse_authority(hosts[0], 443 if conn.tls else 80)
        except HeadError:
            auth = None
        explicit_port = hosts[0].rpartition(":")[2].isdigit() and not hosts[0].endswith("]")
        if auth is None or auth.host != target.host or (explicit_port and auth.port != target.port):
            shown = f"{target.host}:{target.port}" if ":" not in target.host else f"[{target.host}]:{target.port}"
            conn.flow.log.event("request_authority_mismatch", host=target.host, port=target.port, binary=target.binary, method=method, path=path)
            raise _Close(
                responses.json_response(
                    403,
                    {
                        "error": "request_authority_mismatch",
                        "detail": f"the Host header does not name the CONNECT target {shown}",
                    },
                )
            )

    def _decide(self, conn: _Conn, method: str, path: str, query: tuple[tuple[str, str], ...]) -> Decision:
        """Decide under the policy in force now; a new revision re-decides the connection."""
        flow = conn.flow
        compiled = flow.current_policy()
        if compiled is not conn.compiled:
            conn.compiled = compiled
            conn.conn_decision = decide(flow.engine, compiled, flow.connect, [flow.address])
        d = conn.conn_decision
        assert d is not None
        if not d.allowed:
            return Decision.deny(
                f"the connection is no longer allowed (policy revision {compiled.version}): {d.reason}",
                error=d.error or "policy_denied",
                engine=d.engine,
                policy=d.policy,
                rule=f"{method} {path}",
            )
        if d.endpoint is None or d.endpoint.protocol != "rest":
            return Decision("allow", reason=f"allowed by policy {d.policy} (endpoint not inspected)", policy=d.policy, engine=d.engine, endpoint=d.endpoint)
        try:
            return flow.engine.decide_request(compiled, RequestInput(flow.connect, d.policy or "", method, path, query, d.endpoint))
        except Exception as exc:  # noqa: BLE001 - fail closed
            log.exception("event=decide_request_failed sandbox=%s", flow.sandbox_id)
            return Decision.deny(f"policy evaluation failed: {exc}", engine=flow.engine.name, policy=d.policy, rule=f"{method} {path}")

    def _denied(self, conn: _Conn, decision: Decision, method: str, path: str) -> bytes:
        """The §3 403 answer: exact JSON body plus ``X-OpenShell-Policy``."""
        target = conn.flow.connect
        key = decision.policy or ""
        body = {
            "error": decision.error or "policy_denied",
            "policy": key,
            "rule": decision.rule or f"{method} {path}",
            "detail": f"{method} {path} not permitted by policy",
            "layer": "l7",
            "method": method,
            "path": path,
            "host": target.host,
            "port": target.port,
            "binary": target.binary,
        }
        return responses.json_response(403, body, (("X-OpenShell-Policy", key),))

    @staticmethod
    def _upstream_headers(req: RequestHead, websocket: bool) -> list[tuple[str, str]]:
        listed = connection_tokens(req.headers)
        drop = (_HOP_BY_HOP | listed) - _KEEP
        headers = [(k, v) for k, v in req.headers if k.lower() not in drop]
        if websocket:
            headers += [(k, v) for k, v in req.headers if k.lower() == "upgrade"]
            headers.append(("Connection", "Upgrade"))
        elif "close" in listed:
            headers.append(("Connection", "close"))
        elif req.version == "HTTP/1.0" and "keep-alive" in listed:
            headers.append(("Connection", "keep-alive"))
        return headers

    def _run_hooks(self, l7: L7Request, path: str) -> None:
        for hook in self.hooks:
            try:
                hook.rewrite(l7)
            except HookRefused as exc:
                raise _Close(
                    responses.json_response(exc.status if exc.status in responses._REASONS else 502, {"error": exc.error, "detail": exc.detail})
                ) from None
            except Exception as exc:  # noqa: BLE001 - a broken hook must not forward anything
                log.error("event=hook_failed sandbox=%s hook=%s error=%s", l7.flow.sandbox_id, type(hook).__name__, type(exc).__name__)
                raise _Close(responses.error(502, "hook_failed", f"request hook {type(hook).__name__} failed")) from None
            try:
                new_path, _ = split_target(l7.target)
            except PathError:
                new_path = None
            if new_path != path:
                log.error("event=hook_failed sandbox=%s hook=%s error=path_changed", l7.flow.sandbox_id, type(hook).__name__)
                raise _Close(responses.error(502, "hook_failed", f"request hook {type(hook).__name__} changed the request path"))

    def _still_allowed(self, conn: _Conn) -> bool:
        """Whether the upgraded request is still allowed (decided again only when
        the policy changed); logs ``tunnel_closed`` when not."""
        if conn.flow.current_policy() is conn.compiled or conn.upgraded is None:
            return True
        decision = self._decide(conn, "GET", *conn.upgraded)
        if decision.allowed:
            return True
        target = conn.flow.connect
        conn.flow.log.event(
            "tunnel_closed",
            host=target.host,
            port=target.port,
            binary=target.binary,
            method="GET",
            path=conn.upgraded[0],
            reason=f"policy reload: {decision.reason}",
        )
        return False

    # ------------------------------------------------------------------ one exchange

    async def _exchange(self, conn: _Conn, req: RequestHead, method: str, framing, head: bytes, websocket: bool) -> bool:
        """Send ``head``, stream the request body and the response concurrently.

        :returns: True when the connection may carry another request.
        """
        assert conn.upstream is not None
        try:
            await conn.upstream.sendall(head)
        except (OSError, TransportError) as exc:
            raise _Close(responses.error(502, "upstream_failed", f"upstream connection failed: {exc}")) from None
        state = {"started": False}
        if framing.kind == "none" or (framing.kind == "length" and not framing.length):
            # No request body (most GETs): nothing to stream beside the answer, so
            # no second task and no asyncio.wait per request.
            body_done: asyncio.Future = asyncio.get_running_loop().create_future()
            body_done.set_result(True)
            try:
                return await self._response(conn, req, method, websocket, body_done, state)
            except UpstreamError as exc:
                conn.flow.log.event("upstream_bad_response", host=conn.flow.connect.host, port=conn.flow.connect.port, reason=str(exc))
                raise _Close(None if state["started"] else responses.error(502, "upstream_bad_response", str(exc))) from None
        body_task = asyncio.ensure_future(copy_body(conn.creader, framing, conn.upstream, idle=self.body_idle))
        resp_task = asyncio.ensure_future(self._response(conn, req, method, websocket, body_task, state))
        try:
            done, _ = await asyncio.wait({body_task, resp_task}, return_when=asyncio.FIRST_COMPLETED)
            if body_task in done and isinstance(head_error := body_task.exception(), HeadError):
                # A malformed or stalled request body: the upstream would wait for
                # the rest forever. Stop, and answer only if nothing went out yet.
                # (A socket error instead — typically the upstream refusing the
                # rest of the body — leaves its answer to be relayed below.)
                resp_task.cancel()
                await asyncio.gather(resp_task, return_exceptions=True)
                if not state["started"]:
                    raise head_error
                raise _Close(None)
            try:
                keep = await resp_task
            except UpstreamError as exc:
                conn.flow.log.event("upstream_bad_response", host=conn.flow.connect.host, port=conn.flow.connect.port, reason=str(exc))
                raise _Close(None if state["started"] else responses.error(502, "upstream_bad_response", str(exc))) from None
        finally:
            for task in (body_task, resp_task):
                if not task.done():
                    task.cancel()
        if not body_task.done() or body_task.cancelled() or body_task.exception() is not None:
            # The upstream answered before the request body ended: the stream
            # position is unknown, so this connection cannot carry another request.
            return False
        return keep

    async def _response(self, conn: _Conn, req: RequestHead, method: str, websocket: bool, body_task: asyncio.Future, state: dict) -> bool:
        """Relay the upstream's answer (1xx, then the final one); True = keep-alive."""
        assert conn.upstream is not None and conn.ureader is not None
        while True:
            rhead = await conn.ureader.read_head(limit=MAX_RESPONSE_HEAD, first_timeout=None, timeout=None)
            if rhead is None:
                raise UpstreamError("upstream closed the connection without answering")
            if conn.secrets:
                rhead = conn.secrets.replace_all(rhead)
            resp = parse_response_head(rhead)
            if resp.status == 101:
                if not websocket:
                    raise UpstreamError("upstream switched protocols without a WebSocket upgrade")
                await body_task  # a GET upgrade has no body
                scrubber = None
                if conn.secrets:
                    if header_values(resp.headers, "sec-websocket-extensions"):
                        raise UpstreamError("upstream accepted a WebSocket extension the proxy did not offer; its frames could not be scrubbed")
                    scrubber = FrameScrubber(conn.secrets)
                state["started"] = True
                await conn.client.sendall(serialize_head(f"{resp.version} 101 {resp.reason}", resp.headers))
                await relay_upgraded(
                    conn.creader, conn.upstream, conn.ureader, conn.client, lambda: self._still_allowed(conn), scrubber.feed if scrubber else None
                )
                return False
            if resp.status < 200:
                state["started"] = True
                await conn.client.sendall(serialize_head(f"{resp.version} {resp.status} {resp.reason}", resp.headers))
                continue
            rframing = response_framing(resp, method)
            keep = (
                not conn.forward_mode
                and rframing.kind != "close"
                and _peer_supports_keepalive(req.version, connection_tokens(req.headers))
                and _peer_supports_keepalive(resp.version, connection_tokens(resp.headers))
            )
            drop = {"connection", "keep-alive", "proxy-connection"}
            if rframing.kind == "chunked":
                drop.add("content-length")  # the body is re-chunked; a stray length would desync the client
            sink: ScrubbingSink | None = None
            if conn.secrets and rframing.kind != "none":
                sink = self._scrub_sink(conn, resp, rframing, req.version == "HTTP/1.1", drop)
                keep = keep and sink.chunked
            headers = [(k, v) for k, v in resp.headers if k.lower() not in drop]
            if sink is not None and sink.chunked:
                headers.append(("Transfer-Encoding", "chunked"))
            if not keep:
                headers.append(("Connection", "close"))
            elif req.version == "HTTP/1.0":
                headers.append(("Connection", "keep-alive"))
            state["started"] = True
            out_head = serialize_head(f"{resp.version} {resp.status} {resp.reason}", headers)
            if sink is None:
                # the head goes out with the body's first bytes when they are here
                ended = await copy_body(conn.ureader, rframing, conn.client, idle=None, prefix=out_head)
            else:
                await conn.client.sendall(out_head)
                try:
                    ended = await copy_body(conn.ureader, rframing, sink, idle=None, decode=True)
                    await sink.finish()
                except ScrubError as exc:
                    raise UpstreamError(str(exc)) from None
            if keep and not body_task.done():
                await asyncio.wait({body_task}, timeout=1.0)  # a body that just finished reports it
            return keep and ended

    @staticmethod
    def _scrub_sink(conn: _Conn, resp: ResponseHead, rframing: Framing, chunked: bool, drop: set[str]) -> ScrubbingSink:
        """The scrubbing body destination for ``resp``; adds the fields it re-does to ``drop``.

        :param chunked: the client speaks HTTP/1.1 (else the body is close-delimited).
        :raises UpstreamError: a transfer coding other than chunked, several content
            codings, or one that cannot be decoded (answered 502: fail closed).
        """
        codings = [t.strip().lower() for v in resp.values("transfer-encoding") for t in v.split(",") if t.strip()]
        if any(c != "chunked" for c in codings):
            raise UpstreamError("the upstream answered with a transfer coding the proxy cannot inspect for echoed credentials")
        content = [t.strip() for v in resp.values("content-encoding") for t in v.split(",") if t.strip()]
        if len(content) > 1:
            raise UpstreamError("the upstream answered with several content codings, which the proxy cannot inspect for echoed credentials")
        try:
            decoder = BodyDecoder(content[0] if content else "")
        except ScrubError as exc:
            raise UpstreamError(str(exc)) from None
        drop |= {"content-length", "transfer-encoding"}
        if not decoder.identity:
            drop |= {"content-encoding", "content-md5", "digest", "repr-digest"}
        return ScrubbingSink(conn.client, conn.secrets, decoder, chunked=chunked)
