"""Server → client WebSocket frames lose every substituted secret, stay valid frames,
and the scrubber holds only bounded state (see ``l7/websocket.py``)."""

from __future__ import annotations

import struct

import pytest
from openshell.supervisor.proxy.l7.scrub import SecretSet, secret_forms
from openshell.supervisor.proxy.l7.websocket import FrameScrubber, WebSocketScrubError, encode_frame

SECRET = "sk-ws-Zq81vXa3b7LmN0pQ"
PLACEHOLDER = "openshell:resolve:env:WS_TOKEN"
SECRETS = SecretSet(secret_forms(SECRET, PLACEHOLDER))


def parse(data: bytes) -> list[tuple[bool, int, bytes]]:
    """Client-side parse of unmasked frames; the whole input must be frames."""
    frames, i = [], 0
    while i < len(data):
        b0, b1 = data[i], data[i + 1]
        assert not b1 & 0x80 and not b0 & 0x70
        n, i = b1 & 0x7F, i + 2
        if n == 126:
            n, i = struct.unpack_from("!H", data, i)[0], i + 2
        elif n == 127:
            n, i = struct.unpack_from("!Q", data, i)[0], i + 8
        frames.append((bool(b0 & 0x80), b0 & 0x0F, data[i : i + n]))
        i += n
    assert i == len(data)
    return frames


def messages(frames):
    """[(opcode, payload)] of whole messages and control frames, as a client sees them."""
    out, current = [], None
    for fin, op, payload in frames:
        if op >= 8:
            out.append((op, payload))
            continue
        if op:
            assert current is None
            current = [op, b""]
        assert current is not None
        current[1] += payload
        if fin:
            out.append(tuple(current))
            current = None
    assert current is None
    return out


def run(data: bytes, step: int | None = None) -> bytes:
    fs = FrameScrubber(SECRETS)
    if step is None:
        return fs.feed(data)
    return b"".join(fs.feed(data[i : i + step]) for i in range(0, len(data), step))


def test_a_text_frame_echoing_the_secret_shows_the_placeholder():
    out = run(encode_frame(1, f'{{"auth": "Bearer {SECRET}"}}'.encode()))
    assert messages(parse(out)) == [(1, f'{{"auth": "Bearer {PLACEHOLDER}"}}'.encode())]


@pytest.mark.parametrize("step", [None, 1, 3, 7, 100])
def test_any_split_of_the_input_gives_the_same_messages(step):
    stream = (
        encode_frame(1, b"hello " + SECRET[:5].encode(), fin=False)
        + encode_frame(9, b"ping " + SECRET.encode())  # control frames may come between fragments
        + encode_frame(0, SECRET[5:].encode() + b" world", fin=False)
        + encode_frame(0, b"!", fin=True)
        + encode_frame(2, b"\x00" * 300 + SECRET.encode() + b"\xff" * 70000)
        + encode_frame(1, b"")
        + encode_frame(8, struct.pack("!H", 1000) + b"bye")
    )
    out = run(stream, step)
    assert SECRET.encode() not in out
    assert messages(parse(out)) == [
        (9, b"ping " + PLACEHOLDER.encode()),
        (1, f"hello {PLACEHOLDER} world!".encode()),
        (2, b"\x00" * 300 + PLACEHOLDER.encode() + b"\xff" * 70000),
        (1, b""),
        (8, struct.pack("!H", 1000) + b"bye"),
    ]


def test_no_output_prefix_rebuilds_the_secret_and_state_stays_bounded():
    fs = FrameScrubber(SECRETS)
    payload = (b"x" * 4093 + SECRET.encode()) * 256  # ~1 MiB in one frame
    data = encode_frame(2, payload)
    sent = b""
    for i in range(0, len(data), 4096):
        sent += fs.feed(data[i : i + 4096])
        assert fs._scrubber is None or len(fs._scrubber.held) < SECRETS.max_len
        assert len(fs._buf) <= 14
    assert SECRET.encode() not in b"".join(p for _, _, p in parse(sent))
    assert messages(parse(sent)) == [(2, payload.replace(SECRET.encode(), PLACEHOLDER.encode()))]


def test_a_control_frame_stays_within_125_bytes():
    reason = struct.pack("!H", 4000) + b"r" * 100 + SECRET.encode()  # 124 bytes; 132 scrubbed
    (frame,) = parse(run(encode_frame(8, reason)))
    assert frame == (True, 8, struct.pack("!H", 4000))  # the reason would not fit: the code stays
    (frame,) = parse(run(encode_frame(10, b"p" * 100 + SECRET.encode())))
    assert len(frame[2]) == 125 and SECRET.encode()[:5] not in frame[2]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x81\x85" + b"\x00" * 4 + b"hello", "masked"),
        (b"\xc1\x05hello", "reserved"),  # RSV1: permessage-deflate
        (b"\x83\x00", "unknown WebSocket opcode"),
        (b"\x80\x01x", "continuation without a message"),
        (b"\x01\x01a\x81\x01b", "inside another"),
        (b"\x09\x00", "fragmented or oversized"),
        (b"\x89\x7e\x00\x80" + b"p" * 128, "fragmented or oversized"),
    ],
)
def test_frames_that_cannot_be_scrubbed_safely_end_the_relay(data, match):
    with pytest.raises(WebSocketScrubError, match=match):
        run(data)
