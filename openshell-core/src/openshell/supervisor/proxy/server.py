"""The sandbox's egress proxy: HTTP CONNECT and absolute-form forward requests.

Per connection (POLICY.md §2):

1. accept; start the kernel identity lookup at once (it runs in a thread while
   the request head arrives);
2. read and parse the head (bounded, with a deadline: ``http1``);
3. decide: engine first, then destination safety over the addresses *we*
   resolved (``openshell.policy.decide.decide``). Names that need DNS are shown
   to the engine before any lookup, so a denied name never leaves the machine
   as a DNS query;
4. dial the validated addresses in order (never re-resolving);
5. CONNECT: ``200 Connection Established`` only after the dial succeeded, then a
   raw relay (``relay``) or, for ``protocol: rest`` endpoints, the inspector.
   Forward: the request goes upstream in origin-form without hop-by-hop headers.

Policy reloads (``set_policy``) apply to new connections at once; open raw
tunnels that the new policy no longer allows are closed (POLICY.md §6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from openshell.plugin.kinds import CompiledPolicy, PolicyEngine
from openshell.policy.decide import decide
from openshell.policy.decision import ConnectInput, Decision
from openshell.policy.hosts import ip_literal
from openshell.providers.placeholders import contains_placeholder
from openshell.supervisor.proxy import responses
from openshell.supervisor.proxy.forward import origin_request
from openshell.supervisor.proxy.http1 import (
    HEAD_TIMEOUT,
    Authority,
    HeadError,
    RequestHead,
    parse_authority,
    parse_head,
    read_head,
    split_absolute,
)
from openshell.supervisor.proxy.identity import (
    IdentityError,
    IdentityResolver,
    ProcessIdentity,
)
from openshell.supervisor.proxy.inspect import Flow, Inspector
from openshell.supervisor.proxy.log import DecisionLog
from openshell.supervisor.proxy.relay import relay
from openshell.supervisor.proxy.resolve import ResolveError, Resolver

DecideFn = Callable[[PolicyEngine, CompiledPolicy, ConnectInput, Sequence[str]], Decision]

CONNECT_TIMEOUT = 10.0  # seconds per upstream address
INFERENCE_HOST = "inference.local"  # served by the inference router, never dialed
MAX_CONNECTIONS = 1024  # concurrent client connections; accept waits beyond this
_LINGER = 1.0  # seconds to drain a client after an error answer (see _reject)


class _Reject(Exception):
    """Answer ``response`` and close; raised inside a connection handler."""

    def __init__(self, response: bytes) -> None:
        self.response = response


@dataclass(eq=False)  # identity hashing: tunnels live in a set
class _Tunnel:
    inp: ConnectInput
    address: str
    task: asyncio.Task


def _default_decide() -> DecideFn:
    return decide


class ProxyServer:
    """One sandbox's proxy.

    :param sandbox_id: printed on every log line.
    :param engine: the loaded policy engine (``PolicyEngine``).
    :param compiled: the policy in force (``engine.load(...)``).
    :param hosts: sandbox hosts entries ``{name: [ip, ...]}``, consulted before DNS.
    :param identity: kernel identity lookup for the sandbox's namespace; the proxy
        owns it and closes it in ``close()`` (its threads hold the namespace open).
    :param logger: where decision lines go; default ``openshell.supervisor.proxy``.
    :param inspector: HTTP inspection for ``protocol: rest`` endpoints; None denies them.
    :param inference: the ``inference.local`` router (``openshell.supervisor.inference.InferenceRouter``);
        connections to that name go to it before any policy decision. None: the
        name is decided like any other host (and normally denied).
    :param decide: decision function; default ``openshell.policy.decide.decide``.
    :param head_timeout: seconds a client has to send its whole request head.
    :param connect_timeout: seconds per upstream address dial.
    :param max_connections: concurrent client connections.
    """

    def __init__(
        self,
        sandbox_id: str,
        engine: PolicyEngine,
        compiled: CompiledPolicy,
        *,
        hosts: Mapping[str, Sequence[str]] | None = None,
        identity: IdentityResolver,
        logger: logging.Logger | None = None,
        inspector: Inspector | None = None,
        inference: Any = None,
        decide: DecideFn | None = None,
        head_timeout: float = HEAD_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.sandbox_id = sandbox_id
        self.engine = engine
        self._compiled = compiled
        self._hosts = {k.lower().rstrip("."): tuple(v) for k, v in (hosts or {}).items()}
        self._resolver = Resolver(self._hosts)
        self.identity = identity
        self.log = DecisionLog(sandbox_id, logger)
        self.inspector = inspector
        self.inference = inference
        self._decide = decide or _default_decide()
        self.head_timeout = head_timeout
        self.connect_timeout = connect_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._sock: socket.socket | None = None
        self._local: tuple | None = None  # the listener's address when it is not a wildcard
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accept_task: asyncio.Task | None = None
        self._conns: set[asyncio.Task] = set()
        self._tunnels: set[_Tunnel] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The listening port (after ``start``)."""
        assert self._sock is not None, "ProxyServer.start() not called"
        return self._sock.getsockname()[1]

    @property
    def policy(self) -> CompiledPolicy:
        """The policy new connections are decided under."""
        return self._compiled

    async def start(self, sock: socket.socket) -> None:
        """Serve connections accepted on ``sock`` (bound and listening; may belong to
        another network namespace). The proxy owns ``sock`` from now on."""
        sock.setblocking(False)
        self._sock = sock
        local = sock.getsockname()
        self._local = None if local[0] in ("0.0.0.0", "::") else local
        self._loop = asyncio.get_running_loop()
        self._accept_task = asyncio.create_task(self._accept_loop(), name=f"proxy-accept-{self.sandbox_id}")

    async def close(self) -> None:
        """Stop accepting, end every connection, close the listening socket and the
        identity resolver."""
        tasks = [t for t in (self._accept_task, *self._conns) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
        self.log.flush()
        self.identity.close()

    def set_policy(self, compiled: CompiledPolicy) -> None:
        """Use ``compiled`` for every new connection from now on; close open raw
        tunnels it no longer allows. Thread-safe."""
        self._compiled = compiled
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._recheck_tunnels, compiled)

    def _recheck_tunnels(self, compiled: CompiledPolicy) -> None:
        for tunnel in list(self._tunnels):
            decision = self._safe_decide(compiled, tunnel.inp, [tunnel.address])
            if not decision.allowed:
                self.log.event(
                    "tunnel_closed",
                    host=tunnel.inp.host,
                    port=tunnel.inp.port,
                    binary=tunnel.inp.binary,
                    reason=f"policy reload: {decision.reason}",
                )
                tunnel.task.cancel()

    async def _accept_loop(self) -> None:
        assert self._sock is not None and self._loop is not None
        while True:
            await self._slots.acquire()
            try:
                client, peer = await self._loop.sock_accept(self._sock)  # non-blocking already
            except OSError as exc:
                self._slots.release()
                self.log.event("accept_failed", reason=str(exc))
                await asyncio.sleep(0.1)  # EMFILE and friends: do not spin
                continue
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._serve(client, peer))
            self._conns.add(task)
            task.add_done_callback(self._conn_done)

    def _conn_done(self, task: asyncio.Task) -> None:
        self._conns.discard(task)
        self._slots.release()

    # ------------------------------------------------------------------ one connection

    async def _serve(self, client: socket.socket, peer: tuple) -> None:
        loop = asyncio.get_running_loop()
        upstream: socket.socket | None = None
        ident_task: asyncio.Future | None = None
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # The listener's own address is the connection's local end unless it is a
            # wildcard; one system call fewer per connection.
            local = self._local if self._local is not None else client.getsockname()
            ident_task = self._identify(loop, peer, local)
            head, early = await read_head(loop, client, timeout=self.head_timeout)
            req = parse_head(head)
            if req.method == "CONNECT":
                upstream = await self._connect(loop, client, req, early, ident_task)
            else:
                upstream = await self._forward(loop, client, req, early, ident_task)
        except HeadError as exc:
            self.log.event("bad_request", status=exc.status, reason=exc.message)
            await self._reject(client, responses.error(exc.status, "bad_request", exc.message))
        except _Reject as rej:
            await self._reject(client, rej.response)
        except (OSError, asyncio.CancelledError):
            pass  # client or upstream went away / proxy closing / tunnel revoked
        except Exception:
            self.log.logger.exception("event=connection_error sandbox=%s", self.sandbox_id)
        finally:
            if ident_task is not None:
                if not ident_task.done():
                    ident_task.cancel()
                elif not ident_task.cancelled():
                    ident_task.exception()  # a denial nobody awaited (the head was bad): retrieved, not logged
            if upstream is not None:
                upstream.close()
            client.close()

    def _identify(self, loop: asyncio.AbstractEventLoop, peer: tuple, local: tuple) -> asyncio.Future:
        """The kernel identity lookup of a new connection, as a future.

        Answered at once when the resolver can (``IdentityResolver.lookup_now``: a
        connect-time record), so the connection's task never waits a turn of the
        event loop for it; otherwise a task running ``lookup`` alongside the head read.
        """
        try:
            ident = self.identity.lookup_now(peer[0], peer[1], local[0], local[1])
        except IdentityError as exc:
            fut = loop.create_future()
            fut.set_exception(exc)
            return fut
        if ident is None:
            return asyncio.ensure_future(self.identity.lookup(peer[0], peer[1], local[0], local[1]))
        fut = loop.create_future()
        fut.set_result(ident)
        return fut

    async def _reject(self, client: socket.socket, response: bytes) -> None:
        """Send an error answer, then drain briefly before closing: closing with
        unread request bytes makes the kernel send RST, which can destroy the
        answer before the client reads it."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(loop.sock_sendall(client, response), _LINGER)
            client.shutdown(socket.SHUT_WR)
            async with asyncio.timeout(_LINGER):
                drained = 0
                while drained < 1 << 20 and (chunk := await loop.sock_recv(client, 65536)):
                    drained += len(chunk)

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, client: socket.socket, req: RequestHead, early: bytes, ident_task: asyncio.Future
    ) -> socket.socket | None:
        auth = parse_authority(req.target)
        if self.inference is not None and auth.host == INFERENCE_HOST:
            # served by the router before the policy engine sees it
            self.log.event("inference", host=auth.host, port=auth.port, reason="served by the inference router")
            await loop.sock_sendall(client, responses.CONNECTION_ESTABLISHED)
            await self.inference.serve_tls(client, early)
            return None
        detail = responses.detail_for("CONNECT", str(auth))
        inp, decision = await self._decision(auth, ident_task, detail)
        inspect = self._needs_inspection(decision, auth, inp, detail)
        upstream, address = await self._dial(loop, decision.addresses, auth)
        self.log.flush()  # the decision line is written before the client hears anything
        await loop.sock_sendall(client, responses.CONNECTION_ESTABLISHED)
        if inspect:
            assert self.inspector is not None
            await self.inspector.tunnel(self._flow(inp, decision, address), client, upstream, early)
            return upstream
        tunnel = _Tunnel(inp, address, cast(asyncio.Task, asyncio.current_task()))  # in a task: never None
        self._tunnels.add(tunnel)
        try:
            await relay(client, upstream, to_upstream=early)
        finally:
            self._tunnels.discard(tunnel)
        return upstream

    async def _forward(
        self, loop: asyncio.AbstractEventLoop, client: socket.socket, req: RequestHead, early: bytes, ident_task: asyncio.Future
    ) -> socket.socket | None:
        scheme, auth, origin = split_absolute(req.target)
        if scheme == "https":
            raise _Reject(responses.error(400, "use_connect", "https:// URLs must be tunnelled with CONNECT"))
        if scheme != "http":
            raise _Reject(responses.error(400, "bad_request", f"unsupported scheme {scheme}:// in forward request"))
        path = origin.partition("?")[0]  # the query may carry secrets: never in logs or answers
        if self.inference is not None and auth.host == INFERENCE_HOST:
            self.log.event("inference", host=auth.host, port=auth.port, reason="served by the inference router")
            await self.inference.serve_plain(client, origin_request(req, auth, origin) + early)
            return None
        detail = responses.detail_for(req.method, str(auth), path)
        inp, decision = await self._decision(auth, ident_task, detail, method=req.method, path=path)
        inspect = self._needs_inspection(decision, auth, inp, detail)
        upstream, address = await self._dial(loop, decision.addresses, auth)
        self.log.flush()  # the decision line is written before anything is relayed
        if inspect:
            assert self.inspector is not None
            await self.inspector.forward(self._flow(inp, decision, address), client, upstream, req, early)
            return upstream
        head = origin_request(req, auth, origin)
        if contains_placeholder(head):
            # placeholders are substituted only on inspected endpoints; never forward one
            reason = (
                f"the request carries an openshell:resolve:env placeholder but {auth} is not inspected; "
                "add 'protocol: rest' to its policy endpoint so the proxy can substitute the credential"
            )
            self.log.event("credential_denied", host=auth.host, port=auth.port, binary=inp.binary, reason=reason)
            raise _Reject(responses.denied("credential_placeholder_denied", detail, reason))
        # The upstream is told "Connection: close"; end the client connection with
        # it so a client reusing the connection for another URL reconnects (and
        # gets its own decision) instead of talking to this upstream.
        await relay(client, upstream, to_upstream=head + early, until_upstream_eof=True)
        return upstream

    # ------------------------------------------------------------------ decision

    def _safe_decide(self, compiled: CompiledPolicy, inp: ConnectInput, resolved: Sequence[str]) -> Decision:
        try:
            return self._decide(self.engine, compiled, inp, resolved)
        except Exception as exc:
            self.log.logger.exception("event=decide_failed sandbox=%s", self.sandbox_id)
            return Decision.deny(f"policy evaluation failed: {exc}", engine=self.engine.name)

    def _needs_dns(self, host: str) -> bool:
        return ip_literal(host) is None and host not in self._hosts

    async def _decision(
        self, auth: Authority, ident_task: asyncio.Future, detail: str, *, method: str | None = None, path: str | None = None
    ) -> tuple[ConnectInput, Decision]:
        """Decide and log; raise ``_Reject`` (403) when denied."""
        try:
            ident: ProcessIdentity = await ident_task
        except IdentityError as exc:
            reason = f"the identity of the connecting process could not be determined ({exc})"
            self.log.decision(
                decision="DENIED",
                engine="identity",
                host=auth.host,
                port=auth.port,
                reason=reason,
                error="policy_denied",
                method=method,
                path=path,
            )
            raise _Reject(responses.denied("policy_denied", detail, reason)) from None
        inp = ConnectInput(auth.host, auth.port, ident.binary, ident.ancestors)
        compiled = self._compiled  # one policy version for the whole decision
        if self._needs_dns(auth.host):
            first = self._engine_only(compiled, inp)
            if not first.allowed:
                self._log_decision(inp, first, method, path)
                raise _Reject(responses.denied(first.error or "policy_denied", detail, first.reason))
            try:
                resolved = await self._resolver.resolve(auth.host, auth.port)
            except ResolveError as exc:
                self.log.event("resolve_failed", host=auth.host, port=auth.port, binary=inp.binary, reason=str(exc))
                raise _Reject(responses.error(502, "upstream_unresolved", str(exc))) from None
        else:
            resolved = await self._resolver.resolve(auth.host, auth.port)
        decision = self._safe_decide(compiled, inp, resolved)
        # An allowed line is written while the dial is under way (flushed before the
        # client is answered); a denial at once.
        self._log_decision(inp, decision, method, path, defer=decision.allowed)
        if not decision.allowed:
            raise _Reject(responses.denied(decision.error or "policy_denied", detail, decision.reason))
        return inp, decision

    def _engine_only(self, compiled: CompiledPolicy, inp: ConnectInput) -> Decision:
        try:
            return self.engine.decide_connect(compiled, inp)
        except Exception as exc:  # noqa: BLE001 - see _safe_decide
            return Decision.deny(f"policy evaluation failed: {exc}", engine=self.engine.name)

    def _log_decision(self, inp: ConnectInput, decision: Decision, method: str | None, path: str | None, defer: bool = False) -> None:
        label = {"allow": "ALLOWED", "audit": "AUDIT"}.get(decision.action, "DENIED")
        self.log.decision(
            decision=label,
            engine=decision.engine or self.engine.name,
            host=inp.host,
            port=inp.port,
            binary=inp.binary,
            ancestors=inp.ancestors,
            policy=decision.policy,
            reason=decision.reason,
            error=None if decision.allowed else (decision.error or "policy_denied"),
            method=method,
            path=path,
            defer=defer,
        )

    def _needs_inspection(self, decision: Decision, auth: Authority, inp: ConnectInput, detail: str) -> bool:
        """True when the endpoint wants L7 inspection; raises ``_Reject`` if no inspector."""
        endpoint = decision.endpoint
        if endpoint is None or endpoint.protocol != "rest":
            return False
        if self.inspector is None:
            reason = f"endpoint {auth} requires HTTP inspection (protocol: rest), which this proxy does not provide"
            self.log.event("inspection_unavailable", host=auth.host, port=auth.port, binary=inp.binary, policy=decision.policy)
            raise _Reject(responses.denied("policy_denied", detail, reason))
        return True

    def _flow(self, inp: ConnectInput, decision: Decision, address: str) -> Flow:
        return Flow(self.sandbox_id, inp, decision, address, self.engine, lambda: self._compiled, self.log)

    # ------------------------------------------------------------------ upstream

    async def _dial(self, loop: asyncio.AbstractEventLoop, addresses: Sequence[str], auth: Authority) -> tuple[socket.socket, str]:
        """Connect to the first validated address that answers; raise ``_Reject(502)``."""
        failures = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await loop.sock_connect(sock, (address, auth.port))
            except (OSError, TimeoutError) as exc:
                sock.close()
                failures.append(f"{address}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else 'timed out'}")
                continue
            except BaseException:
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock, address
        reason = "; ".join(failures) or "no address to dial"
        self.log.event("dial_failed", host=auth.host, port=auth.port, reason=reason)
        raise _Reject(responses.error(502, "upstream_unreachable", f"could not connect to {auth}: {reason}"))
