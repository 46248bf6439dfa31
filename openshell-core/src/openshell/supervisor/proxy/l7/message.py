"""HTTP/1.1 message framing for inspected connections (POLICY.md §3).

Every byte from the sandbox is hostile, so framing is strict and bounded:

- heads end with CRLF CRLF, a bare LF anywhere in a head, a chunk-size line or a
  trailer is refused at once (400), a head over ``MAX_HEAD`` bytes gives 431;
- request bodies are framed by exactly one ``Content-Length`` (digits only) or
  ``Transfer-Encoding: chunked`` (alone, HTTP/1.1 only); duplicate or
  conflicting ``Content-Length``, both headers, or any other transfer coding
  give 400 — the classic request-smuggling ambiguities;
- chunked bodies are re-encoded (size lines rebuilt, extensions dropped), never
  passed through as raw bytes, so what the upstream parses is what we parsed.

Bodies stream: each piece is sent on before the next is read (backpressure), and
a chunk's data is forwarded as it arrives (server-sent events stay live).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

from openshell.supervisor.proxy.http1 import HeadError, RequestHead
from openshell.supervisor.proxy.l7.transport import RECV_SIZE, BodySink, Transport

MAX_RESPONSE_HEAD = 64 * 1024  # bytes; upstream heads (large Set-Cookie/CSP headers exist)
MAX_CHUNK_LINE = 4096  # bytes of a chunk-size line (with extensions)
MAX_TRAILERS = 8 * 1024  # bytes of a trailer section

_DIGITS = re.compile(rb"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS_LINE = re.compile(rb"(HTTP/1\.[01]) ([1-9][0-9]{2})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


class UpstreamError(Exception):
    """The upstream's answer cannot be relayed (malformed, truncated); ``str()`` says why."""


class BodyError(HeadError):
    """A request body that cannot be framed (400)."""


@dataclass(frozen=True)
class Framing:
    """How a message body ends.

    :ivar kind: ``none`` (no body), ``length`` (``length`` bytes), ``chunked``,
        or ``close`` (until the sender closes; responses only).
    """

    kind: str
    length: int = 0


NO_BODY = Framing("none")


@dataclass(frozen=True)
class ResponseHead:
    """A parsed upstream response head (header names as sent, values stripped)."""

    version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive)."""
        low = name.lower()
        return [v for k, v in self.headers if k.lower() == low]


def header_values(headers: tuple[tuple[str, str], ...] | list[tuple[str, str]], name: str) -> list[str]:
    """Every value of header ``name`` (case-insensitive) in ``headers``."""
    low = name.lower()
    return [v for k, v in headers if k.lower() == low]


def connection_tokens(headers: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> set[str]:
    """Lower-cased tokens of every ``Connection`` header."""
    return {t.strip().lower() for v in header_values(headers, "connection") for t in v.split(",") if t.strip()}


class Reader:
    """Buffered reads from a transport with idle timeouts.

    :param transport: where bytes come from.
    :param what: ``request`` or ``response``; picks the error raised for bad input
        (``HeadError``/``BodyError`` for the client, ``UpstreamError`` for the upstream).
    """

    def __init__(self, transport: Transport, what: str = "request") -> None:
        self.transport = transport
        self.buf = bytearray()
        self.eof = False
        self._client = what == "request"

    def _fail(self, status: int, message: str) -> Exception:
        return BodyError(status, message) if self._client else UpstreamError(message)

    async def _more(self, timeout: float | None) -> bool:  # noqa: ASYNC109 - per-read idle timeout
        if self.eof:
            return False
        if timeout is None:  # responses and heads under an outer deadline: no timer per read
            data = await self.transport.recv(RECV_SIZE)
        else:
            try:
                async with asyncio.timeout(timeout):
                    data = await self.transport.recv(RECV_SIZE)
            except TimeoutError:
                raise self._fail(408, f"no data for {timeout:g}s") from None
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def take(self) -> bytes:
        """Remove and return everything buffered."""
        data = bytes(self.buf)
        self.buf.clear()
        return data

    async def read_head(self, *, limit: int, first_timeout: float | None, timeout: float | None) -> bytes | None:  # noqa: ASYNC109 - two deadlines (idle, then whole head)
        """The next head (without its final CRLF CRLF), or None at a clean end of
        stream (or ``first_timeout`` of silence) before its first byte.

        :param limit: maximum head size in bytes (431 / ``UpstreamError`` above).
        :param first_timeout: seconds to wait for the first byte (keep-alive idle).
        :param timeout: seconds for the rest of the head once it started.
        :raises HeadError: 400 bare LF / closed mid-head, 408 timeout, 431 too large
            (client side); ``UpstreamError`` on the upstream side.
        """
        if not self.buf:
            try:
                if not await self._more(first_timeout):
                    return None
            except HeadError as exc:  # idle between requests: close quietly
                if exc.status == 408:
                    return None
                raise
        try:
            async with asyncio.timeout(timeout):
                while True:
                    end = self.buf.find(b"\r\n\r\n")
                    stop = end if end >= 0 else len(self.buf)
                    if _bare_lf(self.buf, 0, min(stop + 4, len(self.buf))):
                        raise self._fail(400, "bare LF in message head (CRLF required)")
                    if end >= 0:
                        if end + 4 > limit:
                            raise self._fail(431, f"header block exceeds {limit} bytes")
                        head = bytes(self.buf[:end])
                        del self.buf[: end + 4]
                        return head
                    if len(self.buf) >= limit:
                        raise self._fail(431, f"header block exceeds {limit} bytes")
                    if not await self._more(None):
                        raise self._fail(400, "connection closed before the message head ended")
        except TimeoutError:
            raise self._fail(408, f"message head not received within {timeout:g}s") from None

    async def read_line(self, limit: int, idle: float | None) -> bytes:
        """One CRLF-terminated line without the CRLF. Bare LF, over ``limit`` bytes or
        end of stream raise (400 / ``UpstreamError``)."""
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                if end == 0 or self.buf[end - 1] != 0x0D or b"\r" in self.buf[: end - 1]:
                    raise self._fail(400, "bare CR or LF in chunked framing")
                if end - 1 > limit:
                    raise self._fail(400, f"chunked framing line over {limit} bytes")
                line = bytes(self.buf[: end - 1])
                del self.buf[: end + 1]
                return line
            if len(self.buf) > limit:
                raise self._fail(400, f"chunked framing line over {limit} bytes")
            if not await self._more(idle):
                raise self._fail(400, "connection closed inside a chunked body")

    async def read_exact(self, n: int, idle: float | None) -> bytes:
        """Exactly ``n`` bytes; end of stream first raises (400 / ``UpstreamError``)."""
        while len(self.buf) < n:
            if not await self._more(idle):
                raise self._fail(400, "connection closed mid-message")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def read_some(self, n: int, idle: float | None) -> bytes:
        """Up to ``n`` bytes (buffered first); ``b""`` at end of stream."""
        if not self.buf and not await self._more(idle):
            return b""
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data


def _bare_lf(buf: bytearray, start: int, stop: int) -> bool:
    pos = buf.find(b"\n", start, stop)
    while pos >= 0:
        if pos == 0 or buf[pos - 1] != 0x0D:
            return True
        pos = buf.find(b"\n", pos + 1, stop)
    return False


# --------------------------------------------------------------------------- framing rules


def request_framing(req: RequestHead) -> Framing:
    """Body framing of a client request; refuses every ambiguous form.

    :raises BodyError: (400) duplicate or non-numeric ``Content-Length``,
        ``Content-Length`` together with ``Transfer-Encoding``, a transfer coding
        other than a single ``chunked``, or ``Transfer-Encoding`` on HTTP/1.0.
    """
    lengths = header_values(req.headers, "content-length")
    codings = header_values(req.headers, "transfer-encoding")
    if len(lengths) > 1:
        raise BodyError(400, "duplicate Content-Length header")
    if lengths and codings:
        raise BodyError(400, "both Content-Length and Transfer-Encoding")
    if codings:
        if len(codings) > 1 or codings[0].strip().lower() != "chunked":
            raise BodyError(400, "unsupported Transfer-Encoding (only a single 'chunked' is accepted)")
        if req.version == "HTTP/1.0":
            raise BodyError(400, "Transfer-Encoding on an HTTP/1.0 request")
        return Framing("chunked")
    if lengths:
        if not _DIGITS.fullmatch(lengths[0].encode("latin-1")):
            raise BodyError(400, "malformed Content-Length")
        n = int(lengths[0])
        return Framing("length", n) if n else NO_BODY
    return NO_BODY


def response_framing(head: ResponseHead, request_method: str) -> Framing:
    """Body framing of an upstream response (RFC 9112 §6.3).

    :raises UpstreamError: conflicting or malformed ``Content-Length``.
    """
    if request_method == "HEAD" or head.status < 200 or head.status in (204, 304):
        return NO_BODY
    codings = [t.strip().lower() for v in head.values("transfer-encoding") for t in v.split(",") if t.strip()]
    if codings:
        return Framing("chunked") if codings[-1] == "chunked" else Framing("close")
    lengths = {v.strip() for v in head.values("content-length")}
    if len(lengths) > 1:
        raise UpstreamError("conflicting Content-Length in the upstream response")
    if lengths:
        (text,) = lengths
        if not _DIGITS.fullmatch(text.encode("latin-1")):
            raise UpstreamError("malformed Content-Length in the upstream response")
        return Framing("length", int(text))
    return Framing("close")


def parse_response_head(head: bytes) -> ResponseHead:
    """Parse an upstream status line and fields (CRLF only, no obs-fold).

    :raises UpstreamError: anything malformed.
    """
    lines = head.split(b"\r\n")
    if any(b"\r" in line or b"\n" in line for line in lines):
        raise UpstreamError("bare CR or LF in the upstream response head")
    m = _STATUS_LINE.fullmatch(lines[0])
    if not m:
        raise UpstreamError("malformed status line from upstream")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.decode("latin-1").partition(":")
        value = value.strip(" \t")
        if not sep or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise UpstreamError("malformed header field from upstream")
        headers.append((name, value))
    return ResponseHead(m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1"), tuple(headers))


def serialize_head(first_line: str, headers: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> bytes:
    """``first_line CRLF (name: value CRLF)* CRLF`` as latin-1 bytes.

    :raises ValueError: a name that is not a token or a value with CR, LF or NUL
        (a hook must not be able to inject header lines).
    """
    out = [first_line]
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise ValueError(f"invalid header field {name!r}")
        out.append(f"{name}: {value}")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


# --------------------------------------------------------------------------- bodies


class _Batch:
    """What ``copy_body`` sends, gathered into one ``dst.sendall`` until the reader
    would have to wait for the network.

    A small answer's head and body, or a chunk's size line, data and CRLF, then
    cost one TLS record and one system call instead of one each (the inspected
    keep-alive request rate is bound by such per-write costs), and no byte is
    held back while the source is silent: before any read that could wait, what
    is gathered goes out (long polls and server-sent events stream as before).
    At most ``RECV_SIZE`` bytes plus one read are held.
    """

    __slots__ = ("dst", "out", "reader")

    def __init__(self, dst: BodySink, reader: Reader, prefix: bytes) -> None:
        self.dst = dst
        self.reader = reader
        self.out = bytearray(prefix)

    async def add(self, data: bytes) -> None:
        self.out += data
        if len(self.out) >= RECV_SIZE:
            await self.flush()

    async def flush(self) -> None:
        if self.out:
            data = bytes(self.out)
            self.out.clear()
            await self.dst.sendall(data)

    async def before_read(self, n: int = 1) -> None:
        """Flush unless ``n`` bytes are already buffered (the read will not wait)."""
        if self.out and len(self.reader.buf) < n:
            await self.flush()

    async def before_line(self) -> None:
        """Flush unless a whole line is already buffered."""
        if self.out and b"\n" not in self.reader.buf:
            await self.flush()


async def copy_body(reader: Reader, framing: Framing, dst: BodySink, *, idle: float | None, decode: bool = False, prefix: bytes = b"") -> bool:
    """Forward one body from ``reader`` to ``dst`` as it arrives.

    :param framing: from ``request_framing``/``response_framing``.
    :param idle: seconds without input before giving up (None = wait forever:
        responses, so long polls and server-sent events are never cut).
    :param decode: send only the payload of a chunked body (no chunk framing,
        trailers dropped) — for consumers inside the supervisor.
    :param prefix: bytes to send first, in the same write as the body's first
        bytes when they are already here (the message head; see ``_Batch``).
    :returns: True when the body ended by its framing; False for ``close``
        framing (the sender closed: the connection cannot be reused).
    :raises BodyError / UpstreamError: truncated or malformed body (the
        connection must be closed); ``OSError``/``TransportError`` from ``dst``.
    """
    out = _Batch(dst, reader, prefix)
    try:
        return await _copy_body(reader, framing, out, idle, decode)
    except Exception:
        # A malformed or failed body: what arrived before the fault (and the head)
        # still goes out, as if each piece had been sent on arrival; then the error.
        with contextlib.suppress(Exception):
            await out.flush()
        raise


async def _copy_body(reader: Reader, framing: Framing, out: _Batch, idle: float | None, decode: bool) -> bool:
    if framing.kind == "none":
        await out.flush()
        return True
    if framing.kind == "length":
        remaining = framing.length
        while remaining:
            await out.before_read()
            data = await reader.read_some(min(remaining, RECV_SIZE), idle)
            if not data:
                raise reader._fail(400, f"body ended {remaining} bytes early")
            await out.add(data)
            remaining -= len(data)
        await out.flush()
        return True
    if framing.kind == "chunked":
        await _copy_chunked(reader, out, idle, framed=not decode)
        await out.flush()
        return True
    while True:  # close-delimited
        await out.before_read()
        data = await reader.read_some(RECV_SIZE, idle)
        if not data:
            break
        await out.add(data)
    await out.flush()
    return False


async def _copy_chunked(reader: Reader, out: _Batch, idle: float | None, *, framed: bool = True) -> None:
    while True:
        await out.before_line()
        line = await reader.read_line(MAX_CHUNK_LINE, idle)
        size_text = line.split(b";", 1)[0].rstrip(b" \t")
        if not _HEX.fullmatch(size_text):
            raise reader._fail(400, "malformed chunk size")
        size = int(size_text, 16)
        if size == 0:
            trailers = []
            total = 0
            while True:
                await out.before_line()
                line = await reader.read_line(MAX_CHUNK_LINE, idle)
                if not line:
                    break
                total += len(line) + 2
                if total > MAX_TRAILERS:
                    raise reader._fail(431, "trailer section too large")
                name, sep, value = line.decode("latin-1").partition(":")
                value = value.strip(" \t")
                if not sep or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
                    raise reader._fail(400, "malformed trailer field")
                trailers.append(f"{name}: {value}\r\n")
            if framed:
                await out.add(b"0\r\n" + "".join(trailers).encode("latin-1") + b"\r\n")
            return
        if framed:
            await out.add(b"%x\r\n" % size)
        remaining = size
        while remaining:
            await out.before_read()
            data = await reader.read_some(min(remaining, RECV_SIZE), idle)
            if not data:
                raise reader._fail(400, "connection closed inside a chunk")
            await out.add(data)
            remaining -= len(data)
        await out.before_read(2)
        if await reader.read_exact(2, idle) != b"\r\n":
            raise reader._fail(400, "chunk data longer than its size")
        if framed:
            await out.add(b"\r\n")
