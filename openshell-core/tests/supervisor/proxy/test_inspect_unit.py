"""HTTP inspection (POLICY.md §3) driven through ``HttpInspector`` directly.

Real parts: the sandbox CA and its leaves, TLS on both sides (``ssl``), the
real ``opa`` engine deciding every request, and a real HTTP/1.1 upstream in a
thread of this process that presents a certificate from a test CA. The
inspector gets the two sockets the proxy would give it (the client end of a
socket pair, and a TCP connection to the upstream), so every §3 rule and every
smuggling case is tested byte-exactly without network namespaces; the proxy
path (CONNECT, identity, test hosts) is covered by ``test_inspect_proxy.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPResponse

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from openshell.policy import decide, parse_policy
from openshell.policy.decision import ConnectInput
from openshell.supervisor.proxy.inspect import Flow
from openshell.supervisor.proxy.l7 import HookRefused, HttpInspector, L7Request, RequestHook
from openshell.supervisor.proxy.log import DecisionLog
from openshell.supervisor.sandbox_ca import LeafCache, SandboxCA

pytestmark = pytest.mark.timeout(60)

HOST = "api.l7.test"
ADDR = "10.199.10.2"  # what the connection decision validated (never dialled here)
BINARY = "/usr/bin/curl"


def policy_yaml(endpoint: str = "access: read-only", extra: str = "") -> str:
    return f"""
version: 1
network_policies:
  api:
    endpoints:
      - {{host: {HOST}, port: 443, protocol: rest, allowed_ips: [10.199.10.0/24], {endpoint}}}
    binaries: [{{path: {BINARY}}}]
{extra}"""


# --------------------------------------------------------------------------- upstream


class Upstream:
    """A small HTTP/1.1 server (TLS or plain) on loopback, one thread per connection.

    ``GET/POST /anything``: 200 JSON echo of what arrived (``head`` = the raw
    request head text, ``body``); ``/sse``: a chunked ``text/event-stream`` of 3
    events 0.3 s apart; ``/ws``: ``101`` then echo every byte; ``/close``: a body
    ended by closing; ``/bytes/N``: N bytes; ``/early``: ``413`` before reading
    the body, then close. ``requests`` records ``(head, body)`` per request.
    """

    def __init__(self, ctx: ssl.SSLContext | None) -> None:
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[tuple[str, bytes]] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True) if self.ctx else raw
            f = conn.makefile("rb")
            while True:
                lines = []
                while (line := f.readline(65536)) not in (b"\r\n", b""):
                    lines.append(line)
                if not lines:
                    return
                head = b"".join(lines).decode("latin-1")
                fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in head.split("\r\n")[1:] if ln)}
                path = head.split(" ")[1]
                if path == "/early":
                    conn.sendall(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    conn.shutdown(socket.SHUT_WR)  # lingering close, as real servers do
                    time.sleep(0.5)
                    return
                body, size = b"", None
                if fields.get("expect", "").lower() == "100-continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if fields.get("transfer-encoding") == "chunked":
                    while size := int(f.readline().split(b";")[0], 16):
                        body += f.read(size)
                        f.readline()
                    while f.readline() not in (b"\r\n", b""):
                        pass
                elif "content-length" in fields:
                    n = size = int(fields["content-length"])
                    while n > 0:  # large bodies are counted, not kept
                        chunk = f.read(min(n, 1 << 20))
                        if len(body) < 1 << 20:
                            body += chunk
                        n -= len(chunk)
                self.requests.append((head, body))
                if path == "/sse":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for i in range(3):
                        event = f"data: event {i} at {time.monotonic():.3f}\n\n".encode()
                        conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
                        time.sleep(0.3)
                    conn.sendall(b"0\r\n\r\n")
                    continue
                if path == "/ws":
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    while data := conn.recv(65536):
                        conn.sendall(data)
                    return
                if path == "/then-close":  # keep-alive answer, then the server drops the idle connection
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    time.sleep(0.2)
                    return
                if path == "/close":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
                    conn.close()
                    return
                if path.startswith("/bytes/"):
                    n = int(path[7:])
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                    while n > 0:
                        conn.sendall(b"\0" * min(n, 1 << 20))
                        n -= 1 << 20
                    continue
                doc = json.dumps({"head": head, "body": body[:4096].decode("latin-1"), "body_size": len(body) if size is None else size}).encode()
                payload = b"" if head.startswith("HEAD ") else doc
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(doc), payload))
        except (OSError, ValueError):
            pass
        finally:
            raw.close()


def _write_leaf(ca: SandboxCA, host: str, d) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue_leaf(host, key.public_key())
    cert_path, key_path = d / f"{host}.crt", d / f"{host}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory):
    """A test CA (made here) and the upstream's certificate for HOST, as files."""
    d = tmp_path_factory.mktemp("l7ca")
    ca = SandboxCA.generate("l7-test-upstream")
    (d / "ca.pem").write_bytes(ca.cert_pem())
    cert, key = _write_leaf(ca, HOST, d)
    wrong_cert, wrong_key = _write_leaf(ca, "other.l7.test", d)
    return {"ca": str(d / "ca.pem"), "cert": cert, "key": key, "wrong_cert": wrong_cert, "wrong_key": wrong_key}


def _server_ctx(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Harness:
    """One inspected connection: ``client`` is what the sandbox process holds."""

    loop: asyncio.AbstractEventLoop
    engine: object
    sandbox_ca: SandboxCA
    test_ca: dict
    upstream: Upstream
    compiled: object = None
    lines: list[str] = field(default_factory=list)
    task: object = None

    def set_policy(self, text: str) -> None:
        self.compiled = self.engine.load(parse_policy(text), (self.compiled.version + 1) if self.compiled else 1)

    def open(self, *, tls: bool = True, hooks=(), forward_request=None, early: bytes = b"", **kw) -> socket.socket:
        """Start the inspector on a new connection; return the client socket (TLS-wrapped when ``tls``)."""
        inp = ConnectInput(HOST, 443, BINARY)
        decision = decide(self.engine, self.compiled, inp, [ADDR])
        assert decision.allowed, decision.reason
        logger = logging.getLogger(f"l7test.{id(self)}")
        logger.setLevel(logging.DEBUG)
        handler = _Lines()
        handler.lines = self.lines
        logger.addHandler(handler)
        flow = Flow("l7test", inp, decision, ADDR, self.engine, lambda: self.compiled, DecisionLog("l7test", logger))
        inspector = HttpInspector(self.sandbox_ca, extra_ca=self.test_ca["ca"], hooks=hooks, **{"body_idle": 2.0, **kw})
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        up = socket.create_connection(("127.0.0.1", self.upstream.port))
        up.setblocking(False)

        async def run() -> None:
            try:
                if forward_request is not None:
                    await inspector.forward(flow, ours, up, forward_request, early)
                else:
                    await inspector.tunnel(flow, ours, up, early)
            finally:
                ours.close()
                up.close()

        self.task = asyncio.run_coroutine_threadsafe(run(), self.loop)
        theirs.settimeout(10)
        if not tls:
            return theirs
        ctx = ssl.create_default_context(cafile=None)
        ctx.load_verify_locations(cadata=self.sandbox_ca.cert_pem().decode())
        return ctx.wrap_socket(theirs, server_hostname=HOST)

    def decisions(self) -> list[dict[str, str]]:
        import shlex

        return [dict(t.split("=", 1) for t in shlex.split(line)) for line in self.lines if line.startswith("event=decision ")]


@pytest.fixture
def harness(loop, test_ca) -> Iterator[Harness]:
    from openshell_plugin_opa import OpaEngine

    up = Upstream(_server_ctx(test_ca["cert"], test_ca["key"]))
    h = Harness(loop, OpaEngine(), SandboxCA.generate("l7-unit"), test_ca, up)
    h.set_policy(policy_yaml())
    yield h
    up.close()
    if h.task is not None:
        try:
            h.task.result(10)
        except Exception:  # noqa: BLE001 - the client side may have been closed mid-way
            pass


def request(sock: socket.socket, text: str, body: bytes = b"", method: str = "GET") -> HTTPResponse:
    """Send raw ``text`` (``\\n`` becomes CRLF unless it already is) + body; return the parsed response."""
    sock.sendall(text.encode("latin-1") + body)
    resp = HTTPResponse(sock, method=method)
    resp.begin()
    return resp


def raw_exchange(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data``; return everything received until the inspector closes."""
    sock.sendall(data)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (ConnectionResetError, ssl.SSLError, TimeoutError):
        pass
    return out


def get(path: str, host: str = HOST, extra: str = "") -> str:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n"


# --------------------------------------------------------------------------- TLS and decisions


def test_get_allowed_through_terminated_tls_and_upstream_saw_it(harness):
    sock = harness.open()
    cert = sock.getpeercert()
    assert ("DNS", HOST) in cert["subjectAltName"]  # a leaf of the sandbox CA for the CONNECT host
    resp = request(sock, get("/repos/acme?per_page=10"))
    assert resp.status == 200
    doc = json.loads(resp.read())
    assert doc["head"].startswith("GET /repos/acme?per_page=10 HTTP/1.1\r\n")  # query forwarded unchanged
    d = harness.decisions()[-1]
    assert (d["decision"], d["method"], d["path"], d["policy"]) == ("ALLOWED", "GET", "/repos/acme", "api")
    assert "per_page" not in " ".join(harness.lines)  # never the query in logs


def test_post_denied_with_exact_body_and_policy_header(harness):
    sock = harness.open()
    resp = request(sock, "POST /repos/acme/issues HTTP/1.1\r\nHost: api.l7.test\r\nContent-Length: 2\r\n\r\n", b"{}", "POST")
    assert resp.status == 403
    assert resp.getheader("X-OpenShell-Policy") == "api"
    assert resp.getheader("Content-Type") == "application/json"
    assert json.loads(resp.read()) == {
        "error": "policy_denied",
        "policy": "api",
        "rule": "POST /repos/acme/issues",
        "detail": "POST /repos/acme/issues not permitted by policy",
        "layer": "l7",
        "method": "POST",
        "path": "/repos/acme/issues",
        "host": HOST,
        "port": 443,
        "binary": BINARY,
    }
    assert not harness.upstream.requests  # nothing reached the upstream
    d = harness.decisions()[-1]
    assert (d["decision"], d["method"], d["path"], d["error"]) == ("DENIED", "POST", "/repos/acme/issues", "policy_denied")


def test_each_request_on_a_keepalive_connection_is_decided(harness):
    sock = harness.open()
    for path in ("/a", "/b", "/c"):
        resp = request(sock, get(path))
        assert resp.status == 200
        resp.read()
    resp = request(sock, "DELETE /a HTTP/1.1\r\nHost: api.l7.test\r\n\r\n", method="DELETE")
    assert resp.status == 403
    assert [d["path"] for d in harness.decisions()] == ["/a", "/b", "/c", "/a"]
    assert harness.upstream.connections == 1  # one upstream connection carried all three


def test_request_after_policy_reload_uses_the_new_revision(harness):
    sock = harness.open()
    assert request(sock, "PUT /x HTTP/1.1\r\nHost: api.l7.test\r\nContent-Length: 0\r\n\r\n", method="PUT").status == 403
    harness.set_policy(policy_yaml("access: read-only"))  # same rules, new revision
    sock = harness.open()
    resp = request(sock, get("/x"))
    assert resp.status == 200
    resp.read()
    harness.set_policy(policy_yaml("access: read-write"))  # reload while the connection is open
    resp = request(sock, "PUT /x HTTP/1.1\r\nHost: api.l7.test\r\nContent-Length: 1\r\n\r\n", b"z", method="PUT")
    assert resp.status == 200, "the open connection must use the revision current at the request"
    resp.read()
    harness.set_policy(policy_yaml("access: full", extra="").replace(BINARY, "/usr/bin/wget"))
    resp = request(sock, get("/x"))
    assert resp.status == 403, "a revision that no longer allows the connection denies its next request"
    assert "no longer allowed" in harness.decisions()[-1]["reason"]


def test_rules_deny_rules_and_query_matching(harness):
    harness.set_policy(
        policy_yaml(
            'access: read-only, rules: [{allow: {method: POST, path: "/repos/*/issues"}}, '
            '{allow: {method: GET, path: "/dl", query: {tag: "v-*"}}}], deny_rules: [{method: "*", path: "/admin/**"}]'
        )
    )
    sock = harness.open()
    cases = [
        ("POST", "/repos/acme/issues", 200),
        ("POST", "/repos/acme/x/issues", 403),
        ("GET", "/admin/users", 403),
        ("HEAD", "/repos", 200),
        ("GET", "/dl?tag=v-1&tag=v-2", 200),
    ]
    for method, target, status in cases:
        resp = request(sock, f"{method} {target} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n", method=method)
        assert resp.status == status, (method, target)
        resp.read()
        if status == 403:
            sock = harness.open()


def test_audit_mode_forwards_and_logs_audit(harness):
    harness.set_policy(policy_yaml("access: read-only, enforcement: audit"))
    sock = harness.open()
    resp = request(sock, "DELETE /repos/acme HTTP/1.1\r\nHost: api.l7.test\r\n\r\n", method="DELETE")
    assert resp.status == 200
    resp.read()
    assert harness.upstream.requests[-1][0].startswith("DELETE /repos/acme ")
    d = harness.decisions()[-1]
    assert (d["decision"], d["method"], d["path"]) == ("AUDIT", "DELETE", "/repos/acme")


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("/repos/../../etc", "above the root"),
        ("/a%2Fb", "%2F"),
        ("/a%00b", "control"),
    ],
)
def test_bad_paths_get_400(harness, target, why):
    sock = harness.open()
    resp = request(sock, get(target))
    assert resp.status == 400
    assert why in json.loads(resp.read())["detail"]
    assert not harness.upstream.requests


def test_canonical_path_is_decided_and_original_forwarded(harness):
    harness.set_policy(policy_yaml('rules: [{allow: {method: GET, path: "/repos/**"}}]'))
    sock = harness.open()
    resp = request(sock, get("/x/../repos/%61cme//b;p=1"))
    assert resp.status == 200
    resp.read()
    assert harness.decisions()[-1]["path"] == "/repos/acme/b"
    assert harness.upstream.requests[-1][0].startswith("GET /x/../repos/%61cme//b;p=1 HTTP/1.1")
    resp = request(sock, get("/repos/../admin"))
    assert resp.status == 403


@pytest.mark.parametrize("host", ["evil.l7.test", "api.l7.test:8443", "api.l7.test.evil"])
def test_host_must_name_the_connect_target(harness, host):
    sock = harness.open()
    resp = request(sock, get("/", host=host))
    assert resp.status == 403
    assert json.loads(resp.read())["error"] == "request_authority_mismatch"
    assert not harness.upstream.requests


def test_host_with_explicit_matching_port_and_case_is_accepted(harness):
    sock = harness.open()
    resp = request(sock, get("/", host="API.l7.test:443"))
    assert resp.status == 200


def test_plain_http_client_in_a_tunnel_is_inspected_as_plain_http(harness, test_ca):
    plain = Upstream(None)
    harness.upstream = plain
    try:
        sock = harness.open(tls=False)
        resp = request(sock, get("/plain", host="api.l7.test:443"))
        assert resp.status == 200
        assert json.loads(resp.read())["head"].startswith("GET /plain HTTP/1.1")
        resp = request(sock, "POST /plain HTTP/1.1\r\nHost: api.l7.test:443\r\nContent-Length: 0\r\n\r\n", method="POST")
        assert resp.status == 403
    finally:
        plain.close()


def test_forward_request_is_inspected_and_closes(harness, test_ca):
    from openshell.supervisor.proxy.http1 import parse_head

    plain = Upstream(None)
    harness.upstream = plain
    try:
        first = parse_head(b"GET http://api.l7.test:443/fw?q=1 HTTP/1.1\r\nHost: nonsense\r\nProxy-Connection: keep-alive")
        sock = harness.open(tls=False, forward_request=first)
        resp = HTTPResponse(sock, method="GET")
        resp.begin()
        assert resp.status == 200
        head = json.loads(resp.read())["head"]
        assert head.startswith("GET /fw?q=1 HTTP/1.1\r\n") and "Host: api.l7.test:443" in head
        assert "Proxy-Connection" not in head
        assert resp.getheader("Connection") == "close"
        assert harness.decisions()[-1]["path"] == "/fw"
    finally:
        plain.close()


# --------------------------------------------------------------------------- upstream TLS


def test_upstream_certificate_is_verified(harness, test_ca):
    bad = Upstream(_server_ctx(test_ca["wrong_cert"], test_ca["wrong_key"]))
    harness.upstream = bad
    try:
        sock = harness.open()
        resp = request(sock, get("/"))
        assert resp.status == 502
        assert json.loads(resp.read())["error"] == "upstream_tls_failed"
        assert not bad.requests
    finally:
        bad.close()


def test_upstream_not_trusted_without_the_extra_ca(harness, test_ca):
    harness.test_ca = dict(test_ca, ca=None)
    sock = harness.open()
    resp = request(sock, get("/"))
    assert resp.status == 502
    assert "certificate verification failed" in json.loads(resp.read())["detail"]


def test_bad_extra_ca_stops_the_start_and_upstream_trust_is_built_on_first_use(tmp_path, test_ca):
    ca = SandboxCA.generate("lazy")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        HttpInspector(ca, extra_ca=str(bad))
    with pytest.raises(OSError):
        HttpInspector(ca, extra_ca=str(tmp_path / "missing.pem"))
    inspector = HttpInspector(ca, extra_ca=test_ca["ca"])
    assert inspector._upstream_ctx is None  # no system roots loaded at start
    ctx = inspector.upstream_ctx
    assert ctx is inspector.upstream_ctx and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_leaf_cache_is_bounded_lru():
    ca = SandboxCA.generate("lru")
    cache = LeafCache(ca, size=2)
    a = cache.get("a.test")
    cache.get("b.test")
    assert cache.get("a.test") is a  # hit, and now most recent
    cache.get("c.test")  # evicts b
    assert len(cache) == 2 and cache.get("a.test") is a


# --------------------------------------------------------------------------- bodies and streaming


def test_chunked_request_body_is_reencoded(harness):
    harness.set_policy(policy_yaml("access: read-write"))
    sock = harness.open()
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    resp = request(sock, "POST /c HTTP/1.1\r\nHost: api.l7.test\r\nTransfer-Encoding: chunked\r\n\r\n", body, "POST")
    assert resp.status == 200
    doc = json.loads(resp.read())
    assert doc["body"] == "hello world"
    resp = request(sock, get("/after"))  # framing intact: the connection goes on
    assert resp.status == 200


def test_large_body_streams_both_ways(harness):
    harness.set_policy(policy_yaml("access: read-write"))
    sock = harness.open()
    size = 20 << 20
    sock.sendall(b"POST /big HTTP/1.1\r\nHost: api.l7.test\r\nContent-Length: %d\r\n\r\n" % size)
    block = b"x" * (1 << 20)
    for _ in range(20):
        sock.sendall(block)
    resp = HTTPResponse(sock, method="POST")
    resp.begin()
    assert json.loads(resp.read())["body_size"] == size
    resp = request(sock, get("/bytes/%d" % size))
    got = 0
    while chunk := resp.read(1 << 20):
        got += len(chunk)
    assert got == size


def test_expect_100_continue_is_relayed_before_the_body(harness):
    harness.set_policy(policy_yaml("access: read-write"))
    sock = harness.open()
    sock.sendall(b"PUT /up HTTP/1.1\r\nHost: api.l7.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    interim = b""
    while b"\r\n\r\n" not in interim:
        interim += sock.recv(4096)
    assert interim.startswith(b"HTTP/1.1 100 ")  # the client may now send its body
    sock.sendall(b"hello")
    resp = HTTPResponse(sock, method="PUT")
    resp.begin()
    assert resp.status == 200 and json.loads(resp.read())["body"] == "hello"


def test_server_sent_events_stream_as_they_arrive(harness):
    sock = harness.open()
    resp = request(sock, get("/sse"))
    assert resp.getheader("Content-Type") == "text/event-stream"
    arrivals = []
    while line := resp.readline():
        if line.startswith(b"data:"):
            arrivals.append(time.monotonic())
    assert len(arrivals) == 3
    assert arrivals[2] - arrivals[0] > 0.4  # delivered one by one, not buffered to the end


def test_close_delimited_response_is_relayed_then_closed(harness):
    sock = harness.open()
    resp = request(sock, get("/close"))
    assert resp.read() == b"until close"
    assert resp.getheader("Connection") == "close"


def test_upstream_closing_an_idle_connection_closes_the_client_without_forwarding(harness):
    sock = harness.open()
    resp = request(sock, get("/then-close"))
    assert resp.read() == b"ok"
    time.sleep(0.6)
    sock.sendall(get("/next").encode())
    assert sock.recv(100) == b""  # closed unanswered: clients retry on a new connection
    assert [r[0].split(" ")[1] for r in harness.upstream.requests] == ["/then-close"]


def test_upstream_answering_early_closes_the_connection(harness):
    harness.set_policy(policy_yaml("access: read-write"))
    sock = harness.open()
    resp = request(sock, "POST /early HTTP/1.1\r\nHost: api.l7.test\r\nContent-Length: 100000\r\n\r\n", b"x" * 10, "POST")
    assert resp.status == 413


def test_websocket_upgrade_on_allowed_get_becomes_a_raw_relay(harness):
    sock = harness.open()
    sock.sendall(
        get("/ws", extra="Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n").encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 101 ")
    sock.sendall(b"\x81\x05hello-not-http")
    echoed = b""
    while len(echoed) < 16:
        echoed += sock.recv(4096)
    assert echoed == b"\x81\x05hello-not-http"
    assert "Upgrade: websocket" in harness.upstream.requests[-1][0]


def test_websocket_relay_is_closed_when_a_reload_denies_it(harness, monkeypatch):
    from openshell.supervisor.proxy.l7 import upgrade

    monkeypatch.setattr(upgrade, "RELOAD_POLL", 0.1)
    sock = harness.open()
    sock.sendall(get("/ws", extra="Upgrade: websocket\r\nConnection: Upgrade\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 101 ")
    harness.set_policy(policy_yaml('access: read-only, deny_rules: [{method: GET, path: "/ws"}]'))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"":
                break
        except (ssl.SSLError, ConnectionResetError):
            break
    else:
        pytest.fail("the WebSocket relay stayed open after a reload that denies it")
    assert any("event=tunnel_closed" in line and "path=/ws" in line for line in harness.lines)


def test_idle_keepalive_connection_closes_quietly(harness):
    sock = harness.open(keepalive_idle=0.3)
    resp = request(sock, get("/"))
    resp.read()
    time.sleep(0.6)
    assert sock.recv(100) == b""  # closed without an error answer


def test_websocket_upgrade_on_denied_path_is_403(harness):
    harness.set_policy(policy_yaml('access: read-only, deny_rules: [{method: GET, path: "/ws"}]'))
    sock = harness.open()
    resp = request(sock, get("/ws", extra="Upgrade: websocket\r\nConnection: Upgrade\r\n"))
    assert resp.status == 403


def test_non_websocket_upgrade_is_stripped(harness):
    sock = harness.open()
    resp = request(sock, get("/", extra="Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAA\r\n"))
    head = json.loads(resp.read())["head"].lower()
    assert "upgrade" not in head and "http2-settings" not in head


# --------------------------------------------------------------------------- smuggling defences


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("duplicate-cl", b"POST / HTTP/1.1\r\nHost: api.l7.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
        ("conflicting-cl", b"POST / HTTP/1.1\r\nHost: api.l7.test\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc", 400),
        ("cl-list", b"POST / HTTP/1.1\r\nHost: api.l7.test\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
        ("cl-and-te", b"POST / HTTP/1.1\r\nHost: api.l7.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("te-not-chunked", b"POST / HTTP/1.1\r\nHost: api.l7.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
        ("te-obfuscated", b"POST / HTTP/1.1\r\nHost: api.l7.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
        ("bare-lf", b"GET / HTTP/1.1\nHost: api.l7.test\n\n", 400),
        ("bare-lf-one-line", b"GET / HTTP/1.1\r\nHost: api.l7.test\nX: y\r\n\r\n", 400),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: api.l7.test\r\n X: y\r\n\r\n", 400),
        ("space-before-colon", b"GET / HTTP/1.1\r\nHost : api.l7.test\r\n\r\n", 400),
        ("two-hosts", b"GET / HTTP/1.1\r\nHost: api.l7.test\r\nHost: evil.test\r\n\r\n", 400),
        ("no-host", b"GET / HTTP/1.1\r\n\r\n", 400),
        ("huge-head", b"GET / HTTP/1.1\r\nHost: api.l7.test\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        ("absolute-form-in-tunnel", b"GET http://evil.test/ HTTP/1.1\r\nHost: api.l7.test\r\n\r\n", 400),
    ],
)
def test_smuggling_forms_are_refused_and_closed(harness, name, data, status):
    harness.set_policy(policy_yaml("access: full"))
    sock = harness.open()
    out = raw_exchange(sock, data)
    assert out.startswith(b"HTTP/1.1 %d " % status), (name, out[:200])
    assert b"Connection: close" in out
    assert not harness.upstream.requests, "nothing may reach the upstream"


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("bad-chunk-size", b"zz\r\nhello\r\n0\r\n\r\n"),
        ("chunk-bare-lf", b"5\nhello\r\n0\r\n\r\n"),
        ("chunk-too-long", b"2\r\nhello\r\n0\r\n\r\n"),
    ],
)
def test_malformed_chunked_bodies_close_the_connection(harness, name, body):
    harness.set_policy(policy_yaml("access: full"))
    sock = harness.open()
    out = raw_exchange(sock, b"POST / HTTP/1.1\r\nHost: api.l7.test\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    # Either refused before any answer (400) or the connection ends after it; never a second request.
    assert out == b"" or out.startswith(b"HTTP/1.1 400 ") or out.count(b"HTTP/1.1 ") == 1, (name, out[:200])
    assert len(harness.upstream.requests) <= 1


def test_pipelined_smuggled_request_is_decided_on_its_own(harness):
    sock = harness.open()
    # A body-less GET followed by a smuggled DELETE in the same packet: the
    # DELETE is a request of its own, decided (and denied) like any other.
    out = raw_exchange(sock, get("/ok").encode() + b"DELETE /repos HTTP/1.1\r\nHost: api.l7.test\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 403 " in out
    assert [r[0].split(" ")[0] for r in harness.upstream.requests] == ["GET"]


# --------------------------------------------------------------------------- hooks


class _Inject(RequestHook):
    def rewrite(self, request: L7Request) -> None:
        value = request.header("Authorization")
        if value == "Bearer openshell:resolve:env:TOKEN":
            request.set_header("Authorization", "Bearer s3cret")
        if "refuse" in request.target:
            raise HookRefused(403, "credential_unavailable", "no credential for this host")
        if "move" in request.target:
            request.target = "/elsewhere"


def test_request_hook_rewrites_headers_after_the_decision(harness):
    sock = harness.open(hooks=[_Inject()])
    resp = request(sock, get("/h", extra="Authorization: Bearer openshell:resolve:env:TOKEN\r\n"))
    assert "Authorization: Bearer s3cret" in json.loads(resp.read())["head"]
    assert "s3cret" not in " ".join(harness.lines)
    resp = request(sock, get("/refuse"))
    assert resp.status == 403 and json.loads(resp.read())["error"] == "credential_unavailable"


def test_request_hook_cannot_change_the_decided_path(harness):
    sock = harness.open(hooks=[_Inject()])
    resp = request(sock, get("/move"))
    assert resp.status == 502 and json.loads(resp.read())["error"] == "hook_failed"
    assert not harness.upstream.requests


# --------------------------------------------------------------------------- echoed secrets


class _InjectAndRedact(RequestHook):
    """Substitutes like the credential hook and registers the value for scrubbing."""

    def rewrite(self, request: L7Request) -> None:
        if request.header("Authorization") == "Bearer openshell:resolve:env:TOKEN":
            request.set_header("Authorization", "Bearer s3cret-value-42")
            request.redact("s3cret-value-42", "openshell:resolve:env:TOKEN")


def test_echoed_secret_is_scrubbed_on_every_later_response_of_the_connection(harness):
    sock = harness.open(hooks=[_InjectAndRedact()])
    resp = request(sock, get("/a", extra="Authorization: Bearer openshell:resolve:env:TOKEN\r\n"))
    assert resp.getheader("Transfer-Encoding") == "chunked" and resp.getheader("Content-Length") is None
    assert "Authorization: Bearer openshell:resolve:env:TOKEN" in json.loads(resp.read())["head"]
    assert "Authorization: Bearer s3cret-value-42" in harness.upstream.requests[-1][0]  # the upstream got the value
    assert "Accept-Encoding: identity" in harness.upstream.requests[-1][0]
    # Kept alive; a later request without a placeholder still has its answer scrubbed.
    resp = request(sock, get("/b", extra="X-Echo: s3cret-value-42\r\n"))
    assert "X-Echo: openshell:resolve:env:TOKEN" in json.loads(resp.read())["head"]
    assert harness.upstream.connections == 1


def test_connection_without_a_substitution_is_relayed_unchanged(harness):
    sock = harness.open(hooks=[_InjectAndRedact()])
    resp = request(sock, get("/a", extra="X-Echo: s3cret-value-42\r\n"))
    assert resp.getheader("Content-Length") is not None
    assert "X-Echo: s3cret-value-42" in json.loads(resp.read())["head"]


def test_http10_client_gets_a_scrubbed_close_delimited_body(harness):
    sock = harness.open(hooks=[_InjectAndRedact()])
    out = raw_exchange(sock, b"GET /a HTTP/1.0\r\nHost: api.l7.test\r\nAuthorization: Bearer openshell:resolve:env:TOKEN\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"Content-Length" not in head and b"Transfer-Encoding" not in head
    assert b"s3cret-value-42" not in out and b"Bearer openshell:resolve:env:TOKEN" in body


def test_scrubbed_server_sent_events_stay_live(harness):
    sock = harness.open(hooks=[_InjectAndRedact()])
    resp = request(sock, get("/sse", extra="Authorization: Bearer openshell:resolve:env:TOKEN\r\n"))
    arrivals, body = [], b""
    while chunk := resp.read1(65536):
        arrivals.append(time.monotonic())
        body += chunk
    assert body.count(b"data: event") == 3
    assert len(arrivals) >= 3 and arrivals[-1] - arrivals[0] > 0.4
