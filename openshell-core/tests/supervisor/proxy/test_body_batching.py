"""``copy_body`` gathers writes while the source has data, and never holds
bytes back while it waits (``openshell.supervisor.proxy.l7.message._Batch``)."""

from __future__ import annotations

import asyncio

import pytest
from openshell.supervisor.proxy.l7.message import Framing, Reader, copy_body


class Source:
    """A transport whose reads come from a queue (``None`` = end of stream)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def recv(self, n: int = 65536) -> bytes:
        data = await self.queue.get()
        return data or b""

    async def sendall(self, data: bytes) -> None:  # unused (the reader only reads)
        raise AssertionError


class Sink:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def _run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        (Framing("length", 5), b"hello"),
        (Framing("chunked", 0), b"5\r\nhello\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"),
        (Framing("close", 0), b"hello"),
    ],
)
def test_a_body_already_here_goes_out_with_the_head_in_one_write(framing, body):
    async def go() -> list[bytes]:
        src, sink = Source(), Sink()
        reader = Reader(src, "response")
        reader.buf += body
        if framing.kind == "close":
            src.queue.put_nowait(None)
        await copy_body(reader, framing, sink, idle=None, prefix=b"HEAD\r\n\r\n")
        return sink.writes

    writes = _run(go())
    assert writes == [b"HEAD\r\n\r\n" + body]  # byte for byte, once


def test_nothing_is_held_back_while_the_source_is_silent():
    # a streamed answer (server-sent events): each chunk must reach the client
    # before the proxy waits for the next one
    async def go() -> None:
        src, sink = Source(), Sink()
        reader = Reader(src, "response")
        task = asyncio.ensure_future(copy_body(reader, Framing("chunked", 0), sink, idle=None, prefix=b"HEAD\r\n\r\n"))
        src.queue.put_nowait(b"6\r\nevent1\r\n")
        for _ in range(20):
            await asyncio.sleep(0)
        assert b"".join(sink.writes) == b"HEAD\r\n\r\n6\r\nevent1\r\n"
        src.queue.put_nowait(b"6\r\nev")  # half a chunk: what is here goes out
        for _ in range(20):
            await asyncio.sleep(0)
        assert b"".join(sink.writes).endswith(b"6\r\nev")
        src.queue.put_nowait(b"ent2\r\n0\r\n\r\n")
        assert await asyncio.wait_for(task, 5) is True
        assert b"".join(sink.writes) == b"HEAD\r\n\r\n6\r\nevent1\r\n6\r\nevent2\r\n0\r\n\r\n"

    _run(go())


def test_a_head_without_a_body_is_sent_and_a_decoded_body_carries_no_framing():
    async def go() -> tuple[list[bytes], list[bytes]]:
        sink = Sink()
        await copy_body(Reader(Source(), "response"), Framing("none", 0), sink, idle=None, prefix=b"H")
        decoded = Sink()
        reader = Reader(Source(), "response")
        reader.buf += b"3\r\nabc\r\n0\r\n\r\n"
        await copy_body(reader, Framing("chunked", 0), decoded, idle=None, decode=True)
        return sink.writes, decoded.writes

    plain, decoded = _run(go())
    assert plain == [b"H"] and decoded == [b"abc"]


@pytest.mark.parametrize(
    ("body", "sent"),
    [
        (b"5\r\nhello\r\nZZ\r\n", b"HEAD\r\n\r\n5\r\nhello\r\n"),  # malformed chunk size
        (b"5\r\nhello!!\r\n", b"HEAD\r\n\r\n5\r\nhello"),  # chunk longer than its size
    ],
)
def test_a_malformed_body_still_sends_what_came_before_the_fault(body, sent):
    # as when each piece went out on arrival: the client sees the head and the
    # good part, then the connection ends (not an empty reply)
    async def go() -> list[bytes]:
        src, sink = Source(), Sink()
        reader = Reader(src, "response")
        reader.buf += body
        with pytest.raises(Exception, match="chunk"):
            await copy_body(reader, Framing("chunked", 0), sink, idle=None, prefix=b"HEAD\r\n\r\n")
        return sink.writes

    assert b"".join(_run(go())) == sent
