"""Keep substituted secrets out of responses (a server that echoes a request must not leak them).

The proxy puts real credential values into requests (``supervisor/credentials.py``,
``inference.local``); an upstream that echoes request headers or bodies — a debug
endpoint, an error page quoting the ``Authorization`` header, a proxy that
reflects the request — would hand the value back to the sandbox. Every response
on a connection where a secret was substituted therefore goes through a
:class:`SecretSet`: each *form* of each secret (see :func:`secret_forms`) is
replaced by the matching form of its placeholder, in the head and in the body.

Streaming, bounded memory: :class:`StreamScrubber` holds back only a tail that
is still a proper prefix of some secret form — at most ``max_len - 1`` bytes per
stream, never a whole body — so server-sent events stay live (an event's final
``\\n\\n`` is no secret's prefix and goes out at once). Its output equals
scrubbing the whole body in one piece, however the body was split into reads.

Compressed bodies cannot be searched: :class:`BodyDecoder` undoes ``gzip`` and
``deflate`` content codings in bounded steps (the proxy also asks for
``identity`` whenever it scrubs); any other coding is refused (fail closed,
:class:`ScrubError`).

Known limits (documented in docs/providers-and-inference.md): forms other than the literal,
percent-encoded, JSON-escaped and Basic-token ones (e.g. the value re-encoded
in base64 by the server, or split over several responses or WebSocket
messages) are not recognised. WebSocket frames after an upgrade are scrubbed by
``websocket.FrameScrubber`` with the same :class:`SecretSet`.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:  # pragma: no cover
    from openshell.supervisor.proxy.l7.transport import BodySink

DECODE_STEP = 64 * 1024  # bytes of decompressed output produced per step (bounds memory)


class ScrubError(Exception):
    """A response that cannot be scrubbed (unknown content coding, corrupt compressed data).

    ``str()`` is one line for a log and a 502 body; it never contains a secret.
    """


def secret_forms(value: str, replacement: str) -> dict[bytes, bytes]:
    """The byte strings under which ``value`` may come back, each mapped to the same form of ``replacement``.

    Forms: the literal (UTF-8, and Latin-1 as header bytes are), percent-encoded
    (``quote(value, safe="")``, what query strings carry), and JSON-escaped
    (``json.dumps`` without the quotes, what echo servers answer). Empty values give nothing.

    :param value: the secret as it was put into the request.
    :param replacement: what the sandbox may see instead (its placeholder).
    :returns: ``{secret_form: replacement_form}``.
    """
    if not value:
        return {}
    forms: dict[bytes, bytes] = {}
    for enc in ("utf-8", "latin-1"):
        try:
            forms.setdefault(value.encode(enc), replacement.encode(enc, "replace"))
        except UnicodeEncodeError:
            continue
    forms.setdefault(quote(value, safe="").encode(), quote(replacement, safe="").encode())
    forms.setdefault(json.dumps(value)[1:-1].encode(), json.dumps(replacement)[1:-1].encode())
    forms.setdefault(json.dumps(value, ensure_ascii=False)[1:-1].encode(), json.dumps(replacement, ensure_ascii=False)[1:-1].encode())
    return forms


class SecretSet:
    """An immutable set of secret forms to replace; cheap to share between streams.

    :param pairs: ``{secret_bytes: replacement_bytes}`` (empty keys are ignored).

    :ivar max_len: length of the longest secret form (0 when empty).
    """

    def __init__(self, pairs: Mapping[bytes, bytes] = {}) -> None:  # noqa: B006 - never mutated
        self.pairs = {k: v for k, v in pairs.items() if k}
        # Longest first: at one position the longest form wins (Python's alternation is leftmost-first).
        keys = sorted(self.pairs, key=len, reverse=True)
        self._rx = re.compile(b"|".join(re.escape(k) for k in keys)) if keys else None
        self.max_len = len(keys[0]) if keys else 0
        self._firsts = frozenset(k[0] for k in keys)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def union(self, pairs: Mapping[bytes, bytes]) -> SecretSet:
        """This set plus ``pairs`` (``self`` when nothing is new: no recompilation)."""
        if all(k in self.pairs for k in pairs if k):
            return self
        return SecretSet({**self.pairs, **pairs})

    def replace_all(self, data: bytes) -> bytes:
        """``data`` with every secret form replaced (for bounded pieces: heads, trailers)."""
        if self._rx is None:
            return data
        return self._rx.sub(lambda m: self.pairs[m.group()], data)

    def contains(self, data: bytes) -> bool:
        """True when ``data`` holds a secret form."""
        return self._rx is not None and self._rx.search(data) is not None

    def stream(self) -> StreamScrubber:
        """A scrubber for one byte stream (a body)."""
        return StreamScrubber(self)

    def _tail_start(self, buf: bytes) -> int:
        """Index of the earliest suffix of ``buf`` that is a proper prefix of some form
        (``len(buf)`` when none): those bytes must wait for more input."""
        n = len(buf)
        for i in range(max(0, n - self.max_len + 1), n):
            if buf[i] in self._firsts:
                rest = buf[i:]
                if any(len(k) > len(rest) and k.startswith(rest) for k in self.pairs):
                    return i
        return n

    def _scrub(self, buf: bytes, final: bool) -> tuple[bytes, bytes]:
        """(output, held back) for ``buf``; with ``final`` nothing is held."""
        assert self._rx is not None
        tail = len(buf) if final else self._tail_start(buf)
        out: list[bytes] = []
        pos = 0
        for m in self._rx.finditer(buf):
            if m.start() >= tail:
                break
            out.append(buf[pos : m.start()])
            out.append(self.pairs[m.group()])
            pos = m.end()
        cut = max(pos, tail)
        out.append(buf[pos:cut])
        return b"".join(out), buf[cut:]


class StreamScrubber:
    """Replaces secret forms in one stream fed in arbitrary pieces.

    ``feed`` returns what may be sent now; ``flush`` (at the end of the stream)
    the rest. At most ``secrets.max_len - 1`` bytes are held between calls.
    """

    def __init__(self, secrets: SecretSet) -> None:
        self.secrets = secrets
        self.held = b""

    def feed(self, data: bytes) -> bytes:
        """Scrub the next piece of the stream; returns the bytes safe to send now."""
        if not self.secrets:
            return data
        out, self.held = self.secrets._scrub(self.held + data, final=False)
        return out

    def flush(self) -> bytes:
        """The end of the stream: everything still held, scrubbed."""
        if not self.held:
            return b""
        out, self.held = self.secrets._scrub(self.held, final=True)
        return out


class BodyDecoder:
    """Undo one content coding in bounded steps.

    :param coding: the ``Content-Encoding`` value (``gzip``, ``x-gzip``, ``deflate``;
        ``""``/``identity`` pass through).
    :raises ScrubError: any other coding, or several.
    """

    def __init__(self, coding: str) -> None:
        coding = coding.strip().lower()
        self.coding = coding
        if coding in ("", "identity"):
            self._d = None
        elif coding in ("gzip", "x-gzip"):
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._d = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise ScrubError(f"the upstream answered with content coding {coding!r}, which the proxy cannot inspect for echoed credentials")
        self._raw_tried = False

    @property
    def identity(self) -> bool:
        """True when nothing is decoded."""
        return self._d is None

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decoded pieces of ``data`` (each at most ``DECODE_STEP`` bytes).

        :raises ScrubError: corrupt compressed data.
        """
        if self._d is None:
            if data:
                yield data
            return
        while True:
            if self._d.eof:
                # gzip allows several members one after another; anything after a deflate stream is ignored.
                data = self._d.unused_data + data
                if not data or self.coding == "deflate":
                    return
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out = self._d.decompress(data or self._d.unconsumed_tail, DECODE_STEP)
            except zlib.error:
                if self.coding == "deflate" and not self._raw_tried:
                    # Some servers send raw deflate without the zlib wrapper.
                    self._raw_tried = True
                    self._d = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise ScrubError("the upstream sent corrupt compressed data") from None
            self._raw_tried = True
            data = b""
            if out:
                yield out
            # A full step may leave output inside zlib even with no input left: ask again.
            if len(out) < DECODE_STEP and not self._d.unconsumed_tail and not self._d.eof:
                return

    def finish(self) -> None:
        """The body ended.

        :raises ScrubError: a compressed body that stopped before its end.
        """
        if self._d is not None and not self._d.eof:
            raise ScrubError("the upstream's compressed body ended early")


class ScrubbingSink:
    """A body destination for ``message.copy_body(..., decode=True)`` that decodes,
    scrubs and re-frames what it is given before sending it to ``dst``.

    :param dst: where the scrubbed body goes (anything with ``async sendall(bytes)``).
    :param secrets: the forms to replace.
    :param decoder: undoes the response's content coding (identity passes through).
    :param chunked: frame the output as HTTP/1.1 chunks (the length changes, so a
        ``Content-Length`` cannot be kept); False sends it bare (close-delimited).
    """

    def __init__(self, dst: BodySink, secrets: SecretSet, decoder: BodyDecoder, *, chunked: bool) -> None:
        self.dst = dst
        self.scrubber = secrets.stream()
        self.decoder = decoder
        self.chunked = chunked

    async def _emit(self, data: bytes) -> None:
        if not data:
            return  # an empty chunk would end the body
        if self.chunked:
            await self.dst.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
        else:
            await self.dst.sendall(data)

    async def sendall(self, data: bytes) -> None:
        """Decode, scrub and send the next piece of the body.

        :raises ScrubError: corrupt compressed data.
        """
        for piece in self.decoder.feed(data):
            await self._emit(self.scrubber.feed(piece))

    async def finish(self) -> None:
        """The body ended: send what was held back and, when chunked, the last chunk.

        :raises ScrubError: a compressed body that ended early (nothing more is sent).
        """
        self.decoder.finish()
        await self._emit(self.scrubber.flush())
        if self.chunked:
            await self.dst.sendall(b"0\r\n\r\n")
