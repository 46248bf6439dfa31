"""Strict, bounded parsing of an HTTP/1.x request head (POLICY.md §2.6).

Only what the proxy needs: the request line, the header fields, and the target
in the two forms a proxy accepts — authority-form for ``CONNECT host:port`` and
absolute-form for forward requests (``GET http://host[:port]/path``). Anything
else is a ``HeadError`` with the status the client gets: 400 for malformed
input, 431 for a head over ``MAX_HEAD`` bytes. Reading has a total deadline, so
a client that trickles bytes cannot hold a connection (slowloris).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass

MAX_HEAD = 8 * 1024  # bytes, request line + headers + final CRLF (POLICY.md §2.6: 431 above)
MAX_HEADERS = 100
HEAD_TIMEOUT = 10.0  # seconds for the whole head

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_METHOD = _TOKEN
_VERSION = re.compile(rb"HTTP/1\.[01]")
# Field values: visible ASCII, obs-text, space and tab; never CR, LF or NUL.
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_TARGET = re.compile(rb"[\x21-\x7e]+")  # no spaces or control bytes
# What the first bytes of a request must look like: a method token, then a space
# (or nothing yet). A SOCKS greeting or a TLS ClientHello fails on its first byte.
_REQUEST_START = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}(?: |\Z)")
_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_\-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_\-]*[a-z0-9_])?)*")


class HeadError(Exception):
    """The request head cannot be served.

    :ivar status: HTTP status for the client (400, 408 or 431).
    :ivar message: one human line (goes into the response body and the log).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RequestHead:
    """A parsed request head.

    :ivar method: as sent (methods are case-sensitive tokens).
    :ivar target: the request-target as sent (text).
    :ivar version: ``HTTP/1.0`` or ``HTTP/1.1``.
    :ivar headers: ``(name, value)`` pairs in order, names as sent, values stripped.
    """

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        low = name.lower()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        return None


@dataclass(frozen=True)
class Authority:
    """A destination: ``host`` lower-cased, no trailing dot, IPv6 without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


async def read_head(loop: asyncio.AbstractEventLoop, sock: socket.socket, *, limit: int = MAX_HEAD, timeout: float = HEAD_TIMEOUT) -> tuple[bytes, bytes]:
    """Read from ``sock`` until the blank line ending the head.

    :returns: ``(head, rest)``: the head without its final CRLFCRLF, and any bytes
        the client already sent after it (to be forwarded, never dropped).
    :raises HeadError: 431 when no end is found within ``limit`` bytes, 408 on
        timeout (total, seconds), 400 when the client closes mid-head or its
        first bytes cannot start an HTTP request (SOCKS, TLS: answered at once).
    """
    buf = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await loop.sock_recv(sock, limit + 4 - len(buf))
                if not chunk:
                    raise HeadError(400, "connection closed before the request head ended")
                start = max(0, len(buf) - 3)
                buf += chunk
                if not _REQUEST_START.match(buf, 0, 33):
                    # Answer now rather than wait for a blank line that never comes.
                    raise HeadError(
                        400,
                        "not an HTTP request: this proxy speaks HTTP (CONNECT or forward requests), "
                        "not SOCKS or TLS; point the client at it as an http:// proxy",
                    )
                end = buf.find(b"\r\n\r\n", start)
                if end >= 0:
                    if end + 4 > limit:
                        raise HeadError(431, f"request header block exceeds {limit} bytes")
                    return bytes(buf[:end]), bytes(buf[end + 4 :])
                if len(buf) >= limit:
                    raise HeadError(431, f"request header block exceeds {limit} bytes")
    except TimeoutError:
        raise HeadError(408, f"request head not received within {timeout:g}s") from None


def parse_head(head: bytes) -> RequestHead:
    """Parse a head (without the final CRLFCRLF). Raises ``HeadError(400)`` when malformed.

    Rules: CRLF line ends only; request line ``METHOD SP target SP HTTP/1.x`` with
    single spaces; header names are tokens followed directly by ``:``; no
    obs-fold (continuation lines); no control bytes in values; at most
    ``MAX_HEADERS`` fields.
    """
    lines = head.split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise HeadError(400, "bare CR or LF in request head")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise HeadError(400, "malformed request line")
    method, target, version = parts
    if not _METHOD.fullmatch(method):
        raise HeadError(400, "malformed request method")
    if not _TARGET.fullmatch(target):
        raise HeadError(400, "malformed request target")
    if not _VERSION.fullmatch(version):
        raise HeadError(400, "unsupported HTTP version")
    if len(lines) - 1 > MAX_HEADERS:
        raise HeadError(431, f"more than {MAX_HEADERS} header fields")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise HeadError(400, "malformed header field")
        value = value.strip(b" \t")
        if not _FIELD_VALUE.fullmatch(value):
            raise HeadError(400, "control character in header value")
        headers.append((name.decode("ascii"), value.decode("latin-1")))
    return RequestHead(method.decode("ascii"), target.decode("ascii"), version.decode("ascii"), tuple(headers))


def parse_authority(text: str, default_port: int | None = None) -> Authority:
    """Parse ``host:port`` / ``[v6]:port`` (port optional when ``default_port`` given).

    The host is lower-cased, a trailing dot removed, IPv6 brackets removed and the
    address normalised. Raises ``HeadError(400)`` on anything else (userinfo,
    empty host, bad port, characters outside host syntax).
    """
    if "@" in text or not text:
        raise HeadError(400, f"malformed authority {text!r}")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise HeadError(400, f"malformed authority {text!r}")
        host, rest = text[1:close], text[close + 1 :]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise HeadError(400, f"malformed IPv6 address in {text!r}") from None
        if rest and not rest.startswith(":"):
            raise HeadError(400, f"malformed authority {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, None
        host = host.lower()
        host = host.removesuffix(".")
        if not host or not _HOSTNAME.fullmatch(host):
            raise HeadError(400, f"malformed host in {text!r}")
    if port_text is None or port_text == "":
        if default_port is None or port_text == "":
            raise HeadError(400, f"missing port in {text!r}")
        port = default_port
    else:
        if not port_text.isdigit() or len(port_text) > 5:
            raise HeadError(400, f"malformed port in {text!r}")
        port = int(port_text)
    if not 1 <= port <= 65535:
        raise HeadError(400, f"port out of range in {text!r}")
    return Authority(host, port)


def split_absolute(target: str) -> tuple[str, Authority, str]:
    """Split an absolute-form target into ``(scheme, authority, origin_form)``.

    ``http://Host:8080/a?b`` → ``("http", Authority("host", 8080), "/a?b")``; an
    empty path becomes ``/``; a fragment is dropped (never sent on the wire).
    Raises ``HeadError(400)`` when the target is not absolute-form.
    """
    scheme, sep, rest = target.partition("://")
    if not sep or not scheme.isalpha():
        raise HeadError(400, "forward requests need an absolute-form target (http://host/path)")
    scheme = scheme.lower()
    cut = len(rest)
    for ch in "/?#":
        pos = rest.find(ch)
        if 0 <= pos < cut:
            cut = pos
    authority_text, tail = rest[:cut], rest[cut:]
    tail = tail.partition("#")[0]
    if not tail.startswith("/"):
        tail = "/" + tail
    default = {"http": 80, "https": 443}.get(scheme)
    return scheme, parse_authority(authority_text, default), tail
