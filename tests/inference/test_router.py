"""The inference router against the fake model server: real TLS with the sandbox CA,
real sockets, real streaming."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import ssl
import threading
import time

import pytest
from fakes.model_server import ModelServer
from openshell.supervisor.inference import INFERENCE_HOST, InferenceRouter, RouteBundle
from openshell.supervisor.sandbox_ca import SandboxCA

pytestmark = pytest.mark.timeout(60)


class RouterHarness:
    """An InferenceRouter behind a loopback listener (TLS like a CONNECT tunnel, or plain)."""

    def __init__(self, bundle: RouteBundle, *, tls: bool, idle_timeout: float = 30.0, first_request_timeout: float = 10.0) -> None:
        self.ca = SandboxCA.generate("test")
        self.router = InferenceRouter("sb-test", self.ca, bundle, idle_timeout=idle_timeout, connect_timeout=2.0, first_request_timeout=first_request_timeout)
        self.tls = tls
        self.loop = asyncio.new_event_loop()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.accept_task = self.loop.create_task(self._accept())
        self.loop.run_forever()

    async def _accept(self) -> None:
        while True:
            sock, _ = await self.loop.sock_accept(self.listener)
            if self.tls:
                self.loop.create_task(self.router.serve_tls(sock))
            else:
                self.loop.create_task(self.router.serve_plain(sock, b""))

    def conn(self) -> http.client.HTTPConnection:
        if not self.tls:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        ctx = ssl.create_default_context(cadata=self.ca.cert_pem().decode())
        conn = http.client.HTTPSConnection(INFERENCE_HOST, self.port, timeout=20, context=ctx)
        conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.port)), server_hostname=INFERENCE_HOST)
        return conn

    def set_bundle(self, bundle: RouteBundle) -> None:
        self.loop.call_soon_threadsafe(self.router.set_bundle, bundle)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.accept_task.cancel)
        asyncio.run_coroutine_threadsafe(self.router.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.listener.close()


def bundle_for(srv: ModelServer, protocols=("openai",), backend="vllm", model="served-model") -> RouteBundle:
    return RouteBundle(7, backend, tuple(protocols), srv.base_url, model, {"Authorization": "Bearer backend-key"})


@pytest.fixture
def model_server():
    with ModelServer() as srv:
        yield srv


@pytest.fixture
def tls_router(model_server):
    h = RouterHarness(bundle_for(model_server, protocols=("openai", "anthropic")), tls=True)
    try:
        yield h
    finally:
        h.close()


def post(conn, path, body, headers=None):
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **(headers or {})})
    return conn.getresponse()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
def test_chat_completion_is_rewritten_and_authenticated_over_tls(tls_router, model_server, path):
    conn = tls_router.conn()
    resp = post(
        conn,
        path + "?trace=1",
        {"model": "whatever", "messages": [{"role": "user", "content": "hi"}]},
        {"Authorization": "Bearer caller-secret", "x-api-key": "caller-key", "Cookie": "a=b"},
    )
    data = json.loads(resp.read())
    assert resp.status == 200 and data["choices"][0]["message"]["content"] == model_server.reply
    seen = model_server.requests[-1]
    assert seen.path == "/v1/chat/completions" and seen.query == "trace=1"
    assert seen.body["model"] == "served-model"
    assert seen.headers["Authorization"] == "Bearer backend-key"
    assert "x-api-key" not in {k.lower() for k in seen.headers} and "Cookie" not in seen.headers


def test_keep_alive_serves_several_calls_on_one_tls_connection(tls_router, model_server):
    conn = tls_router.conn()
    for path, body in [
        ("/v1/embeddings", {"input": ["a", "b"]}),
        ("/v1/completions", {"prompt": "x"}),
        ("/v1/messages/count_tokens", {"messages": [{"role": "user", "content": "hi"}]}),
    ]:
        resp = post(conn, path, body, {"anthropic-version": "2023-06-01"})
        assert resp.status == 200, resp.read()
        resp.read()
    conn.request("GET", "/v1/models")
    resp = conn.getresponse()
    assert resp.status == 200 and "fake-model-1" in resp.read().decode()


def test_sse_streams_chunk_by_chunk_and_ends_with_done(tls_router, model_server):
    model_server.chunk_delay = 0.25
    model_server.reply = "one two three four"
    conn = tls_router.conn()
    resp = post(conn, "/v1/chat/completions", {"stream": True, "messages": []})
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    arrivals, buf = [], b""
    while chunk := resp.read1(65536):
        arrivals.append(time.monotonic())
        buf += chunk
    events = [e for e in buf.decode().split("\n\n") if e.strip()]
    assert events[-1] == "data: [DONE]"
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "one two three four"
    assert arrivals[-1] - arrivals[0] > 0.5, "events arrived at once: the router buffered the stream"


def test_anthropic_messages_stream_keeps_event_types(tls_router, model_server):
    conn = tls_router.conn()
    resp = post(
        conn,
        "/v1/messages?beta=true",
        {"model": "claude-x", "stream": True, "max_tokens": 10, "messages": []},
        {"anthropic-version": "2023-06-01", "x-api-key": "caller"},
    )
    body = resp.read().decode()
    kinds = [line[7:] for line in body.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "content_block_delta" in kinds
    assert model_server.requests[-1].query == "beta=true" and model_server.requests[-1].body["model"] == "served-model"


def test_head_root_answers_and_unknown_paths_get_403_json(tls_router):
    conn = tls_router.conn()
    conn.request("HEAD", "/")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200
    for method, path in [("GET", "/admin"), ("POST", "/v1/files"), ("GET", "/v1/../v1/models"), ("DELETE", "/v1/models")]:
        conn = tls_router.conn()
        conn.request(method, path)
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 403 and body["error"] == "inference_path_denied" and body["path"] == path


def test_protocol_mismatch_and_no_route(model_server):
    h = RouterHarness(bundle_for(model_server, protocols=("openai",)), tls=False)
    try:
        resp = post(h.conn(), "/v1/messages", {"messages": []})
        assert resp.status == 400 and json.loads(resp.read())["error"] == "inference_protocol_mismatch"
        h.set_bundle(RouteBundle())
        time.sleep(0.1)
        resp = post(h.conn(), "/v1/chat/completions", {"messages": []})
        body = json.loads(resp.read())
        assert resp.status == 503 and "openshell inference set" in body["detail"]
    finally:
        h.close()


def test_backend_down_is_a_fast_502_json():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    h = RouterHarness(RouteBundle(1, "vllm", ("openai",), f"http://127.0.0.1:{dead}/v1", "m", {}), tls=False)
    try:
        started = time.monotonic()
        resp = post(h.conn(), "/v1/chat/completions", {"messages": []})
        body = json.loads(resp.read())
        assert resp.status == 502 and body["error"] == "inference_backend_unavailable" and body["backend"] == "vllm"
        assert time.monotonic() - started < 5
    finally:
        h.close()


def test_route_change_applies_to_the_next_request(model_server):
    h = RouterHarness(bundle_for(model_server, model="first"), tls=False)
    try:
        post(h.conn(), "/v1/chat/completions", {"messages": []}).read()
        h.set_bundle(bundle_for(model_server, model="second"))
        time.sleep(0.1)
        post(h.conn(), "/v1/chat/completions", {"messages": []}).read()
        assert [r.body["model"] for r in model_server.requests[-2:]] == ["first", "second"]
    finally:
        h.close()


def test_non_json_body_is_refused(model_server):
    h = RouterHarness(bundle_for(model_server), tls=False)
    try:
        conn = h.conn()
        conn.request("POST", "/v1/chat/completions", body=b"not json", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 400 and json.loads(resp.read())["error"] == "invalid_json"
        conn = h.conn()
        conn.request("POST", "/v1/chat/completions", body=b"[" * 100_000, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 400 and json.loads(resp.read())["error"] == "invalid_json"
    finally:
        h.close()


def test_gzip_request_body_is_decoded_rewritten_and_sent_plain(model_server):
    import gzip

    h = RouterHarness(bundle_for(model_server), tls=False)
    try:
        conn = h.conn()
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=gzip.compress(json.dumps({"messages": []}).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        seen = model_server.requests[-1]
        assert seen.body["model"] == "served-model" and "Content-Encoding" not in seen.headers
    finally:
        h.close()


def test_a_client_that_never_sends_a_request_is_closed(model_server):
    h = RouterHarness(bundle_for(model_server), tls=False, first_request_timeout=0.5)
    try:
        with socket.create_connection(("127.0.0.1", h.port), timeout=5) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: inference.local\r\n")  # never finishes the head
            started = time.monotonic()
            assert s.recv(100) == b""  # closed by the router
            assert time.monotonic() - started < 4
        resp = post(h.conn(), "/v1/chat/completions", {"messages": []})  # a normal client is unaffected
        assert resp.status == 200
        resp.read()
    finally:
        h.close()


def test_plain_http_inside_a_connect_tunnel_is_served(model_server):
    h = RouterHarness(bundle_for(model_server), tls=True)  # serve_tls, but the client speaks plain HTTP
    try:
        conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=20)
        resp = post(conn, "/v1/chat/completions", {"messages": []})
        assert resp.status == 200 and json.loads(resp.read())["object"] == "chat.completion"
    finally:
        h.close()


def test_large_body_is_rewritten_and_oversized_body_refused(model_server):
    h = RouterHarness(bundle_for(model_server), tls=False)
    try:
        big = {"messages": [{"role": "user", "content": "x" * (2 << 20)}]}
        resp = post(h.conn(), "/v1/chat/completions", big)
        assert resp.status == 200
        resp.read()
        assert model_server.requests[-1].body["model"] == "served-model"
        conn = h.conn()
        conn.putrequest("POST", "/v1/chat/completions")
        conn.putheader("Content-Length", str(40 << 20))
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 413 and json.loads(resp.read())["error"] == "request_too_large"
    finally:
        h.close()
