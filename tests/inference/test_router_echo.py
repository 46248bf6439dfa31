"""inference.local: a backend that echoes the injected key never returns it to the sandbox.

A real router on a loopback listener (plain HTTP inside the tunnel: the
response path is the same as with TLS) and a loopback backend that reflects
the ``Authorization`` header in a response header, a JSON body, a server-sent
event stream split mid-key, a gzip body, and a body in an undecodable coding.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from openshell.supervisor.inference import InferenceRouter, RouteBundle
from openshell.supervisor.inference.router import REDACTED

pytestmark = pytest.mark.timeout(60)

KEY = "sk-backend-Q7w8e9r0t1y2u3"


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        _Echo.seen.append(dict(self.headers.items()))
        mode = self.path.partition("?")[2]
        if mode == "sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            event = f"data: {json.dumps({'echo': auth})}\n\n".encode()
            cut = event.index(KEY.encode()) + 5
            for part in (event[:cut], event[cut:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                time.sleep(0.2)
            self.wfile.write(b"0\r\n\r\n")
            return
        body = json.dumps({"echo": auth}).encode()
        coding = {"gzip": "gzip", "opaque": "br"}.get(mode)
        if mode == "gzip":
            body = gzip.compress(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", auth)
        if coding:
            self.send_header("Content-Encoding", coding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def echo_router():
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    bundle = RouteBundle(3, "vllm", ("openai",), f"http://127.0.0.1:{backend.server_port}/v1", "m", {"Authorization": f"Bearer {KEY}"})
    router = InferenceRouter("sb-echo", None, bundle, connect_timeout=2.0)
    loop = asyncio.new_event_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)

    async def accept() -> None:
        while True:
            sock, _ = await loop.sock_accept(listener)
            loop.create_task(router.serve_plain(sock, b""))

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    task = asyncio.run_coroutine_threadsafe(accept(), loop)
    try:
        yield listener.getsockname()[1]
    finally:
        task.cancel()
        asyncio.run_coroutine_threadsafe(router.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        listener.close()
        backend.shutdown()


def call(port: int, mode: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("POST", f"/v1/chat/completions?{mode}", body=json.dumps({"messages": []}), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


def test_echoed_key_in_header_and_body_is_redacted(echo_router):
    status, headers, body = call(echo_router, "plain")
    assert status == 200
    assert _Echo.seen[-1]["Authorization"] == f"Bearer {KEY}"  # the backend did get the key
    assert headers["X-Echo"] == f"Bearer {REDACTED}"
    assert json.loads(body) == {"echo": f"Bearer {REDACTED}"}
    assert _Echo.seen[-1]["Accept-Encoding"] == "identity"


def test_echoed_key_split_across_stream_chunks_is_redacted(echo_router):
    status, _, body = call(echo_router, "sse")
    assert status == 200 and KEY.encode() not in body
    assert body == f"data: {json.dumps({'echo': f'Bearer {REDACTED}'})}\n\n".encode()


def test_gzip_echo_is_decoded_and_redacted(echo_router):
    status, headers, body = call(echo_router, "gzip")
    assert status == 200 and "Content-Encoding" not in headers
    assert json.loads(body) == {"echo": f"Bearer {REDACTED}"}


def test_undecodable_coding_is_refused(echo_router):
    status, _, body = call(echo_router, "opaque")
    assert status == 502 and KEY.encode() not in body
    assert json.loads(body)["error"] == "inference_response_uninspectable"
