"""Scrub substituted secrets out of a server's WebSocket frames (RFC 6455).

After ``101 Switching Protocols`` on a connection where the proxy put a real
credential into the upgrade request, the server's frames could echo it. This
module parses the server → client byte stream frame by frame and replaces every
secret form (:class:`~openshell.supervisor.proxy.l7.scrub.SecretSet`) in the
payloads of data messages (text, binary: one stream per message, so a secret
split over fragments is found) and control frames (close reason, ping/pong).

Re-framing: a replacement changes the payload length, and a frame's length
comes before its payload, so output is re-fragmented: every piece of payload
that arrives goes out as its own fragment of the same message, and the message
ends with exactly one ``FIN`` fragment. RFC 6455 §5.4 lets an intermediary
change fragmentation when no extension was negotiated — the inspector removes
``Sec-WebSocket-Extensions`` from the upgrade request so none is, and refuses a
server that sets a reserved bit anyway (``permessage-deflate`` would hide the
secret in compressed bytes).

Bounded memory: a frame header (at most 14 bytes), a control payload (at most
125 bytes) and the scrubber's held-back tail (shorter than the longest secret
form); never a whole frame or message.

Fail closed (:class:`WebSocketScrubError`, the relay ends): a masked server
frame, a reserved bit, an unknown opcode, a fragmented or oversized control
frame, a continuation without a message or a new message inside one.
"""

from __future__ import annotations

import struct

from openshell.supervisor.proxy.l7.message import UpstreamError
from openshell.supervisor.proxy.l7.scrub import SecretSet, StreamScrubber

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA = (OP_TEXT, OP_BINARY)
_CONTROL = (OP_CLOSE, OP_PING, OP_PONG)
MAX_CONTROL = 125


class WebSocketScrubError(UpstreamError):
    """The server's frames cannot be scrubbed safely; ``str()`` is one line for the log."""


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One unmasked (server → client) frame."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 126, n)
    else:
        head = struct.pack("!BBQ", first, 127, n)
    return head + payload


def _control_payload(opcode: int, payload: bytes, secrets: SecretSet) -> bytes:
    """A control frame's scrubbed payload, kept within 125 bytes.

    A longer result (a placeholder longer than the secret) loses the close
    reason (the status code stays) or, for ping/pong, its end.
    """
    out = secrets.replace_all(payload)
    if len(out) <= MAX_CONTROL:
        return out
    if opcode == OP_CLOSE:
        return out[:2]
    return out[:MAX_CONTROL]


class FrameScrubber:
    """Server → client frame rewriting for one upgraded connection.

    ``feed(data)`` takes bytes as the server sent them and returns the frames to
    send to the client now (possibly ``b""``).

    :param secrets: the forms to replace (non-empty).
    """

    def __init__(self, secrets: SecretSet) -> None:
        self.secrets = secrets
        self._buf = bytearray()  # an incomplete header, or an incomplete control payload
        self._frame: tuple[bool, int] | None = None  # (fin, opcode) of the frame whose payload is read
        self._remaining = 0  # payload bytes of the current frame still to come
        self._message: int | None = None  # opcode of the data message in progress
        self._sent_first = False  # its first fragment went out (later ones are continuations)
        self._scrubber: StreamScrubber | None = None

    def _header(self) -> bool:
        """Parse a header from ``_buf``; False when more bytes are needed."""
        buf = self._buf
        if len(buf) < 2:
            return False
        b0, b1 = buf[0], buf[1]
        need = 2 + {126: 2, 127: 8}.get(b1 & 0x7F, 0) + (4 if b1 & 0x80 else 0)
        if len(buf) < need:
            return False
        if b1 & 0x80:
            raise WebSocketScrubError("the upstream sent a masked WebSocket frame")
        if b0 & 0x70:
            raise WebSocketScrubError("the upstream set a reserved WebSocket bit (an extension the proxy cannot inspect)")
        fin, opcode, n = bool(b0 & 0x80), b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = struct.unpack_from("!H", buf, 2)[0]
        elif n == 127:
            n = struct.unpack_from("!Q", buf, 2)[0]
            if n >> 63:
                raise WebSocketScrubError("the upstream sent a WebSocket frame length with the top bit set")
        del buf[:need]
        if opcode in _CONTROL:
            if not fin or n > MAX_CONTROL:
                raise WebSocketScrubError("the upstream sent a fragmented or oversized WebSocket control frame")
        elif opcode in _DATA:
            if self._message is not None:
                raise WebSocketScrubError("the upstream started a WebSocket message inside another")
            self._message, self._sent_first, self._scrubber = opcode, False, self.secrets.stream()
        elif opcode == OP_CONT:
            if self._message is None:
                raise WebSocketScrubError("the upstream sent a WebSocket continuation without a message")
        else:
            raise WebSocketScrubError(f"the upstream sent unknown WebSocket opcode {opcode:#x}")
        self._frame, self._remaining = (fin, opcode), n
        return True

    def _fragment(self, payload: bytes, fin: bool) -> bytes:
        """One output fragment of the message in progress (the first carries its opcode)."""
        assert self._message is not None
        opcode = OP_CONT if self._sent_first else self._message
        self._sent_first = True
        if fin:
            self._message, self._scrubber = None, None
        return encode_frame(opcode, payload, fin=fin)

    def feed(self, data: bytes) -> bytes:
        """Scrub the next bytes from the server.

        :raises WebSocketScrubError: see the module docstring.
        """
        out: list[bytes] = []
        view = memoryview(data)
        while True:
            if self._frame is None:
                take = min(len(view), 14 - len(self._buf))
                self._buf += view[:take]
                view = view[take:]
                if not self._header():
                    if view:
                        continue
                    break
                # Bytes of the next frame that ended up in the header buffer go back in front.
                if self._buf:
                    view = memoryview(bytes(self._buf) + bytes(view))
                    self._buf.clear()
            assert self._frame is not None
            fin, opcode = self._frame
            piece = bytes(view[: self._remaining])
            view = view[len(piece) :]
            self._remaining -= len(piece)
            if opcode in _CONTROL:
                self._buf += piece
                if self._remaining:
                    break
                out.append(encode_frame(opcode, _control_payload(opcode, bytes(self._buf), self.secrets)))
                self._buf.clear()
            else:
                assert self._scrubber is not None
                scrubbed = self._scrubber.feed(piece)
                if self._remaining == 0 and fin:
                    out.append(self._fragment(scrubbed + self._scrubber.flush(), True))
                elif scrubbed:
                    out.append(self._fragment(scrubbed, False))
            if self._remaining == 0:
                self._frame = None
            if not view:
                break
        return b"".join(out)
