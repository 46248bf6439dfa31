"""``serve_local``: requests answered inside the supervisor (the inference.local seam).

Real TLS with a sandbox-CA leaf, real sockets, the same strict framing as
inspected connections.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from http.client import HTTPResponse

import pytest
from openshell.supervisor.proxy.l7 import LocalRequest, LocalResponse, serve_local
from openshell.supervisor.sandbox_ca import SandboxCA

pytestmark = pytest.mark.timeout(60)

NAME = "inference.local"


async def handler(req: LocalRequest, resp: LocalResponse) -> None:
    if req.path == "/boom":
        raise RuntimeError("backend down")
    if req.path == "/sse":
        await resp.start(200, [("Content-Type", "text/event-stream")])
        for i in range(3):
            await resp.write(f"data: {i}\n\n".encode())
            await asyncio.sleep(0.2)
        await resp.end()
        return
    if req.path == "/pieces":
        sizes = [len(piece) async for piece in req.chunks()]
        await resp.send(200, [("Content-Type", "application/json")], json.dumps({"total": sum(sizes)}).encode())
        return
    body = await req.read(limit=1000)
    doc = {"method": req.method, "path": req.path, "query": req.query, "body": body.decode(), "auth": req.header("authorization")}
    await resp.send(200, [("Content-Type", "application/json")], json.dumps(doc).encode())


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


@pytest.fixture
def connect(loop):
    ca = SandboxCA.generate("local")
    futures = []

    def make(tls: bool = True) -> socket.socket:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)

        async def run() -> None:
            try:
                await serve_local(ca, ours, b"", NAME, handler, keepalive_idle=5)
            finally:
                ours.close()

        futures.append(asyncio.run_coroutine_threadsafe(run(), loop))
        theirs.settimeout(10)
        if not tls:
            return theirs
        ctx = ssl.create_default_context(cadata=ca.cert_pem().decode())
        return ctx.wrap_socket(theirs, server_hostname=NAME)

    yield make
    for fut in futures:
        try:
            fut.result(10)
        except Exception:  # noqa: BLE001 - clients may vanish mid-way
            pass


def ask(sock, data: bytes, method: str = "GET") -> HTTPResponse:
    sock.sendall(data)
    resp = HTTPResponse(sock, method=method)
    resp.begin()
    return resp


def test_requests_over_tls_with_keepalive(connect):
    sock = connect()
    for i in range(2):
        resp = ask(sock, b"GET /v1/models?x=%d HTTP/1.1\r\nHost: inference.local\r\nAuthorization: Bearer k\r\n\r\n" % i)
        doc = json.loads(resp.read())
        assert (resp.status, doc["path"], doc["query"], doc["auth"]) == (200, "/v1/models", [["x", str(i)]], "Bearer k")


def test_chunked_body_is_read_and_streamed_answer_arrives_piecewise(connect):
    sock = connect()
    resp = ask(sock, b"POST /v1/chat HTTP/1.1\r\nHost: inference.local\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "POST")
    assert json.loads(resp.read())["body"] == "abc"
    resp = ask(sock, b"GET /sse HTTP/1.1\r\nHost: inference.local\r\n\r\n")
    times = []
    while line := resp.readline():
        if line.startswith(b"data:"):
            times.append(time.monotonic())
    assert len(times) == 3 and times[2] - times[0] > 0.3


def test_body_chunks_iterate(connect):
    sock = connect(tls=False)  # plain HTTP works too
    resp = ask(sock, b"POST /pieces HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 300000\r\n\r\n" + b"x" * 300000, "POST")
    assert json.loads(resp.read())["total"] == 300000


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n", 403),
        (b"POST / HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET /a/../../b HTTP/1.1\r\nHost: inference.local\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000, 413),
        (b"GET /boom HTTP/1.1\r\nHost: inference.local\r\n\r\n", 502),
    ],
)
def test_bad_requests_and_failures_get_an_answer_and_close(connect, data, status):
    sock = connect()
    resp = ask(sock, data)
    assert resp.status == status
    assert resp.getheader("Connection") == "close"
