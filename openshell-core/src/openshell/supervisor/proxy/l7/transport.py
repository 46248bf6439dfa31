"""Byte transports for HTTP inspection: a plain socket or TLS over one (POLICY.md §3).

Both expose the same small async interface (``recv``, ``sendall``,
``shutdown_write``) over a non-blocking socket driven by the event loop. TLS
uses ``ssl.SSLObject`` with memory BIOs rather than ``asyncio`` streams so that
bytes the proxy already read from the client (the start of its TLS handshake,
received together with the ``CONNECT`` head) can be fed in first, and so both
sides of a connection share one implementation.

Reads never buffer more than one TLS record plus one ``recv`` (``RECV_SIZE``);
writes wait until the kernel accepted the bytes, which is what gives the
relay its backpressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Protocol

RECV_SIZE = 64 * 1024  # bytes per socket read
WRITE_CHUNK = 64 * 1024  # plaintext bytes encrypted per step (bounds the outgoing BIO)
HANDSHAKE_TIMEOUT = 10.0  # seconds for a whole TLS handshake


class TransportError(Exception):
    """The peer's TLS failed (handshake refused, certificate invalid, bad record).

    ``str()`` is one line fit for a log and an error body.
    """


class PlainTransport:
    """A non-blocking socket with an optional prefix of already-received bytes.

    :param sock: connected, non-blocking socket (not owned: the caller closes it).
    :param early: bytes received before (returned first by ``recv``).
    """

    tls = False

    def __init__(self, sock: socket.socket, early: bytes = b"") -> None:
        self.sock = sock
        self._early = early
        self._loop = asyncio.get_running_loop()

    async def recv(self, n: int = RECV_SIZE) -> bytes:
        """Up to ``n`` bytes; ``b""`` at end of stream. Raises ``OSError``."""
        if self._early:
            data, self._early = self._early[:n], self._early[n:]
            return data
        return await self._loop.sock_recv(self.sock, n)

    async def sendall(self, data: bytes) -> None:
        """Send every byte (waits while the peer does not read). Raises ``OSError``."""
        if data:
            await self._loop.sock_sendall(self.sock, data)

    async def shutdown_write(self) -> None:
        """Half-close: the peer sees end of stream; reading continues."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)


class TlsTransport:
    """TLS over a non-blocking socket (``ssl.SSLObject`` + memory BIOs).

    Create with :meth:`server` or :meth:`client`, which complete the handshake.
    ``recv`` and ``sendall`` may run concurrently in different tasks (a relay in
    both directions): bytes leave the socket in the order TLS produced them.
    """

    tls = True

    def __init__(self, sock: socket.socket, obj: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
        self.sock = sock
        self._obj = obj
        self._in = incoming
        self._out = outgoing
        self._loop = asyncio.get_running_loop()
        self._send_lock = asyncio.Lock()
        self._eof = False

    @property
    def alpn(self) -> str | None:
        """The negotiated ALPN protocol, if any."""
        return self._obj.selected_alpn_protocol()

    @classmethod
    async def server(
        cls,
        sock: socket.socket,
        ctx: ssl.SSLContext,
        early: bytes = b"",
        timeout: float = HANDSHAKE_TIMEOUT,  # noqa: ASYNC109 - whole-handshake deadline
    ) -> TlsTransport:
        """Accept TLS from the client on ``sock`` (server side).

        :param ctx: server context (the sandbox CA's leaf for the target host).
        :param early: handshake bytes the client already sent.
        :param timeout: seconds for the whole handshake.
        :raises TransportError: handshake failed or timed out.
        """
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        if early:
            incoming.write(early)
        self = cls(sock, ctx.wrap_bio(incoming, outgoing, server_side=True), incoming, outgoing)
        await self._handshake(timeout)
        return self

    @classmethod
    async def client(
        cls,
        sock: socket.socket,
        ctx: ssl.SSLContext,
        server_hostname: str,
        timeout: float = HANDSHAKE_TIMEOUT,  # noqa: ASYNC109 - whole-handshake deadline
    ) -> TlsTransport:
        """Start TLS to an upstream on ``sock`` with ``ctx``'s verification rules.

        :param server_hostname: SNI and the name the certificate must carry.
        :raises TransportError: handshake failed (including certificate
            verification), or timed out after ``timeout`` seconds.
        """
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self = cls(sock, ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname), incoming, outgoing)
        await self._handshake(timeout)
        return self

    async def _handshake(self, timeout: float) -> None:  # noqa: ASYNC109 - whole-handshake deadline
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        self._obj.do_handshake()
                        await self._flush()
                        return
                    except ssl.SSLWantReadError:
                        await self._flush()
                        if not await self._fill():
                            raise TransportError("peer closed the connection during the TLS handshake") from None
        except TimeoutError:
            raise TransportError(f"TLS handshake not completed within {timeout:g}s") from None
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(f"certificate verification failed: {exc.verify_message or exc.reason}") from None
        except ssl.SSLError as exc:
            raise TransportError(f"TLS handshake failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise TransportError(f"TLS handshake failed: {exc.strerror or exc}") from None

    async def _fill(self) -> bool:
        """Move one socket read into the incoming BIO; False at end of stream."""
        data = await self._loop.sock_recv(self.sock, RECV_SIZE)
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    async def _flush(self) -> None:
        if not self._out.pending and not self._send_lock.locked():
            return  # nothing encrypted waits (after most reads): no lock round trip
        async with self._send_lock:  # BIO read and send under one lock keep the order
            data = self._out.read()
            if data:
                await self._loop.sock_sendall(self.sock, data)

    async def recv(self, n: int = RECV_SIZE) -> bytes:
        """Up to ``n`` plaintext bytes; ``b""`` at end of stream (close_notify or a
        TCP close without one: HTTP framing detects truncation where it matters).

        :raises TransportError: a TLS protocol error.
        :raises OSError: socket failure.
        """
        if self._eof:
            return b""
        while True:
            try:
                data = self._obj.read(n)
            except ssl.SSLWantReadError:
                await self._flush()  # e.g. TLS 1.3 session tickets or key updates
                if not await self._fill():
                    continue  # the next read reports EOF
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._eof = True
                return b""
            except ssl.SSLError as exc:
                raise TransportError(f"TLS error: {exc.reason or exc}") from None
            else:
                if not data:
                    self._eof = True
                await self._flush()
                return data

    async def sendall(self, data: bytes) -> None:
        """Encrypt and send every byte; waits for the socket (backpressure).

        :raises TransportError: the TLS session is unusable.
        :raises OSError: socket failure.
        """
        view = memoryview(data)
        for start in range(0, len(view), WRITE_CHUNK):
            try:
                self._obj.write(view[start : start + WRITE_CHUNK])
            except ssl.SSLError as exc:
                raise TransportError(f"TLS error: {exc.reason or exc}") from None
            await self._flush()

    async def shutdown_write(self) -> None:
        """Send close_notify and half-close the socket (best effort)."""
        with contextlib.suppress(ssl.SSLError, OSError):
            try:
                self._obj.unwrap()
            except ssl.SSLWantReadError:
                pass  # our close_notify is queued; the peer's answer is not awaited
            await self._flush()
            self.sock.shutdown(socket.SHUT_WR)


Transport = PlainTransport | TlsTransport


class BodySink(Protocol):
    """Where ``message.copy_body`` sends a body: a :data:`Transport`, or a consumer
    inside the supervisor (a collector, a queue, the response scrubber)."""

    async def sendall(self, data: bytes) -> None: ...


def upstream_context(extra_ca: str | None = None) -> ssl.SSLContext:
    """Client context for upstream TLS: normal verification, never disabled.

    Trust: the system roots plus, when given, the PEM file ``extra_ca`` (the
    supervisor passes ``$OPENSHELL_EXTRA_CA``: tests trust their test CA this way).
    Hostname checking on, TLS ≥ 1.2, ALPN ``http/1.1`` (the inspector speaks HTTP/1.1).

    :raises OSError / ssl.SSLError: ``extra_ca`` cannot be read or parsed (fail closed).
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if extra_ca:
        ctx.load_verify_locations(cafile=extra_ca)
    ctx.set_alpn_protocols(["http/1.1"])
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    return ctx
