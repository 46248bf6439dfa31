"""The TLS front: mTLS gate, ALPN dispatch to gRPC or HTTP, limits and timeouts.

Real servers on loopback: a grpc.aio echo server on a unix socket behind a
:class:`Front` on a free port, driven by real clients (``ssl`` sockets, grpc channels).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from openshell.gateway.front import Front, HttpResponse, PortInUseError
from openshell.gateway.tls import Pki, client_context, ensure_pki, server_context

MiB = 1 << 20
GRPC_OPTIONS = [("grpc.max_receive_message_length", 32 * MiB), ("grpc.max_send_message_length", 32 * MiB)]


class _LoopThread:
    """An asyncio loop in a daemon thread; ``run(coro)`` executes there and returns the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def _echo_handler() -> grpc.GenericRpcHandler:
    async def echo(request: bytes, context) -> bytes:
        return request

    async def chat(requests, context):
        async for msg in requests:
            yield msg

    return grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
        },
    )


class _EchoFront:
    """A Front on 127.0.0.1:<free port> in front of a gRPC echo server."""

    def __init__(self, pki: Pki, sock: str) -> None:
        self.pki = pki
        self.sock = sock
        self.lt = _LoopThread()
        self.grpc_server = None
        self.front: Front | None = None

    async def _start(self) -> None:
        self.grpc_server = grpc.aio.server(options=GRPC_OPTIONS)
        self.grpc_server.add_generic_rpc_handlers((_echo_handler(),))
        self.grpc_server.add_insecure_port(f"unix:{self.sock}")
        await self.grpc_server.start()
        self.front = Front(server_context(self.pki), self.sock, "127.0.0.1", 0)
        await self.front.start()

    async def _stop(self) -> None:
        if self.front is not None:
            await self.front.close(grace=0.5)
        if self.grpc_server is not None:
            await self.grpc_server.stop(0)

    def start(self) -> _EchoFront:
        self.lt.run(self._start())
        return self

    def stop(self) -> None:
        try:
            self.lt.run(self._stop())
        finally:
            self.lt.close()

    @property
    def port(self) -> int:
        assert self.front is not None
        return self.front.port

    def channel(self, creds: grpc.ChannelCredentials | None) -> grpc.Channel:
        target = f"127.0.0.1:{self.port}"
        if creds is None:
            return grpc.insecure_channel(target, options=GRPC_OPTIONS)
        return grpc.secure_channel(target, creds, options=GRPC_OPTIONS)


@pytest.fixture(scope="module")
def front_pki(tmp_path_factory) -> Pki:
    return ensure_pki(tmp_path_factory.mktemp("front") / "pki")


@pytest.fixture(scope="module")
def stranger_pki(tmp_path_factory) -> Pki:
    """A second, unrelated CA with its own client certificate."""
    return ensure_pki(tmp_path_factory.mktemp("stranger") / "pki")


@pytest.fixture
def echo_front(front_pki):
    # unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer
    short = tempfile.mkdtemp(prefix="osfront-", dir="/tmp")
    ef = _EchoFront(front_pki, f"{short}/grpc.sock")
    try:
        yield ef.start()
    finally:
        ef.stop()
        Path(short, "grpc.sock").unlink(missing_ok=True)
        Path(short).rmdir()


def _creds(pki: Pki, client: Pki | None = None) -> grpc.ChannelCredentials:
    client = client or pki
    return grpc.ssl_channel_credentials(pki.ca_cert.read_bytes(), client.client_key.read_bytes(), client.client_cert.read_bytes())


def _http(port: int, ctx: ssl.SSLContext, request: bytes, host: str = "127.0.0.1", timeout: float = 5.0) -> bytes:
    """Send ``request`` over TLS and return everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as conn:
            conn.sendall(request)
            data = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return data
                data += chunk


def _get(path: str, close: bool = True) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{'Connection: close' if close else ''}\r\n\r\n".encode()


def _gets_no_http_service(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        data = _http(port, ctx, _get("/healthz"))
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    return not data.startswith(b"HTTP/")


# --------------------------------------------------------------------------- HTTP side


def test_healthz_over_mtls_answers_ok_json(echo_front, front_pki):
    data = _http(echo_front.port, client_context(front_pki.ca_cert, front_pki.client_cert, front_pki.client_key), _get("/healthz"))
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Type: application/json" in head
    assert body == b'{"status": "ok"}'


def test_client_without_alpn_is_served_http(echo_front, front_pki):
    ctx = client_context(front_pki.ca_cert, front_pki.client_cert, front_pki.client_key, alpn=())
    assert _http(echo_front.port, ctx, _get("/healthz")).startswith(b"HTTP/1.1 200 ")


def test_supervisor_certificate_is_accepted_too(echo_front, front_pki):
    ctx = client_context(front_pki.ca_cert, front_pki.supervisor_cert, front_pki.supervisor_key)
    assert _http(echo_front.port, ctx, _get("/healthz")).startswith(b"HTTP/1.1 200 ")


def test_keep_alive_serves_several_requests_on_one_connection(echo_front, front_pki):
    ctx = client_context(front_pki.ca_cert, front_pki.client_cert, front_pki.client_key)
    data = _http(echo_front.port, ctx, _get("/healthz", close=False) + _get("/nope", close=False) + _get("/healthz"))
    assert data.count(b"HTTP/1.1 200 ") == 2 and data.count(b"HTTP/1.1 404 ") == 1


def test_unknown_path_is_404_and_connect_ssh_is_reserved_501(echo_front, front_pki):
    ctx = client_context(front_pki.ca_cert, front_pki.client_cert, front_pki.client_key)
    assert _http(echo_front.port, ctx, _get("/nope")).startswith(b"HTTP/1.1 404 ")
    req = b"CONNECT /connect/ssh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert _http(echo_front.port, ctx, req).startswith(b"HTTP/1.1 501 ")


def test_a_route_handler_can_take_over_the_connection(echo_front, front_pki):
    """How /connect/ssh plugs in: answer 200, then the raw stream is the handler's."""

    async def tunnel(request, conn):
        assert request.method == "CONNECT" and request.peer_cn == "openshell-user"
        assert request.query == "sandbox=demo" and request.header("x-token") == "t"
        conn.writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        line = await conn.reader.readline()
        conn.writer.write(b"echo:" + line)
        await conn.writer.drain()

    echo_front.front.add_route("/connect/ssh", tunnel)
    ctx = client_context(front_pki.ca_cert, front_pki.client_cert, front_pki.client_key)
    data = _http(echo_front.port, ctx, b"CONNECT /connect/ssh?sandbox=demo HTTP/1.1\r\nHost: x\r\nX-Token: t\r\n\r\nhello\n")
    assert data == b"HTTP/1.1 200 OK\r\n\r\necho:hello\n"


def test_handler_response_object_is_encoded(echo_front, front_pki):
    async def hello(request, conn):
        return HttpResponse(200, {"q": request.query, "body": request.body.decode()})

    echo_front.front.add_route("/hello", hello)
    ctx = client_context(front_pki.ca_cert, front_pki.client_cert, front_pki.client_key)
    data = _http(echo_front.port, ctx, b"POST /hello?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
    assert data.endswith(b'{"q": "a=1", "body": "abc"}')


def test_oversized_request_head_gets_431(echo_front, front_pki):
    ctx = client_context(front_pki.ca_cert, front_pki.client_cert, front_pki.client_key)
    req = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert _http(echo_front.port, ctx, req).startswith(b"HTTP/1.1 431 ")


def test_malformed_request_line_gets_400(echo_front, front_pki):
    ctx = client_context(front_pki.ca_cert, front_pki.client_cert, front_pki.client_key)
    assert _http(echo_front.port, ctx, b"HELLO\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_idle_http_connection_is_closed(echo_front, front_pki):
    echo_front.front.idle_timeout = 0.5
    ctx = client_context(front_pki.ca_cert, front_pki.client_cert, front_pki.client_key)
    started = time.monotonic()
    assert _http(echo_front.port, ctx, b"") == b""
    assert time.monotonic() - started < 4


def test_peer_that_never_finishes_the_handshake_is_dropped(echo_front):
    echo_front.front.handshake_timeout = 0.5
    with socket.create_connection(("127.0.0.1", echo_front.port), timeout=5) as raw:
        started = time.monotonic()
        assert raw.recv(1024) == b""
        assert time.monotonic() - started < 4


# --------------------------------------------------------------------------- who is refused


def test_http_client_without_certificate_gets_no_service(echo_front, front_pki):
    assert _gets_no_http_service(echo_front.port, client_context(front_pki.ca_cert))


def test_http_client_with_certificate_from_another_ca_gets_no_service(echo_front, front_pki, stranger_pki):
    ctx = client_context(front_pki.ca_cert, stranger_pki.client_cert, stranger_pki.client_key)
    assert _gets_no_http_service(echo_front.port, ctx)


def test_tls12_client_without_certificate_fails_in_the_handshake(echo_front, front_pki):
    # With TLS 1.2 the server's refusal lands before the client's handshake completes.
    ctx = client_context(front_pki.ca_cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", echo_front.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def test_plaintext_client_gets_no_service(echo_front):
    with socket.create_connection(("127.0.0.1", echo_front.port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while chunk := raw.recv(4096):
                data += chunk
        except ConnectionError:
            pass
    assert not data.startswith(b"HTTP/")


@pytest.mark.parametrize("who", ["no-cert", "other-ca", "plaintext"])
def test_grpc_client_without_a_trusted_certificate_is_refused(echo_front, front_pki, stranger_pki, who):
    creds = {
        "no-cert": grpc.ssl_channel_credentials(front_pki.ca_cert.read_bytes()),
        "other-ca": _creds(front_pki, stranger_pki),
        "plaintext": None,
    }[who]
    with echo_front.channel(creds) as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary("/test.Echo/Echo")(b"hi", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


# --------------------------------------------------------------------------- gRPC relay


def test_alpn_h2_reaches_the_grpc_server(echo_front, front_pki):
    with echo_front.channel(_creds(front_pki)) as channel:
        assert channel.unary_unary("/test.Echo/Echo")(b"hello", timeout=5) == b"hello"


def test_raw_h2_preface_is_answered_with_http2_settings(echo_front, front_pki):
    ctx = client_context(front_pki.ca_cert, front_pki.client_cert, front_pki.client_key, alpn=("h2",))
    with socket.create_connection(("127.0.0.1", echo_front.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            assert conn.selected_alpn_protocol() == "h2"
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            frame = conn.recv(9)
    assert len(frame) == 9 and frame[3] == 0x04  # an HTTP/2 SETTINGS frame, not an HTTP/1.1 reply


def test_relay_carries_large_messages_and_streams(echo_front, front_pki):
    payload = bytes(range(256)) * (8 * MiB // 256)
    with echo_front.channel(_creds(front_pki)) as channel:
        assert channel.unary_unary("/test.Echo/Echo")(payload, timeout=30) == payload
        messages = [bytes([i % 256]) * 65536 for i in range(200)]
        replies = list(channel.stream_stream("/test.Echo/Chat")(iter(messages), timeout=30))
    assert replies == messages


def test_relay_serves_concurrent_connections(echo_front, front_pki):
    def call(i: int) -> bytes:
        with echo_front.channel(_creds(front_pki)) as channel:
            return channel.unary_unary("/test.Echo/Echo")(str(i).encode() * 1000, timeout=10)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(32)))
    assert results == [str(i).encode() * 1000 for i in range(32)]


def test_connections_beyond_the_limit_are_closed_at_accept(echo_front, front_pki):
    echo_front.front.max_connections = 1
    with socket.create_connection(("127.0.0.1", echo_front.port), timeout=5) as first:
        time.sleep(0.2)  # let the front accept the first one (it now waits in the handshake)
        with socket.create_connection(("127.0.0.1", echo_front.port), timeout=5) as second:
            try:
                assert second.recv(1024) == b""  # closed at once, long before the handshake timeout
            except ConnectionResetError:
                pass
        first.close()
    time.sleep(0.2)
    ctx = client_context(front_pki.ca_cert, front_pki.client_cert, front_pki.client_key)
    assert _http(echo_front.port, ctx, _get("/healthz")).startswith(b"HTTP/1.1 200 ")


def test_busy_port_raises_port_in_use_naming_the_port(front_pki):
    lt = _LoopThread()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        front = Front(server_context(front_pki), "/nonexistent.sock", "127.0.0.1", port)
        with pytest.raises(PortInUseError, match=f"port {port} .*--port"):
            lt.run(front.start())
    finally:
        holder.close()
        lt.close()
