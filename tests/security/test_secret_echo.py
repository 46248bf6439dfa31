"""An allowed upstream that echoes the request must not hand a provider secret to the sandbox.

The proxy substitutes the real credential value for its placeholder on inspected
TLS requests; a server that reflects request headers (debug endpoints, error
pages, reflecting proxies) would send the value straight back. The proxy
replaces every echoed form of the value by its placeholder in response heads
and bodies — chunked, streamed (SSE), split across chunk boundaries, or gzip
compressed — and refuses bodies it cannot inspect. After a WebSocket upgrade the
server's frames are scrubbed too (fragmented messages, control frames, 64-bit
lengths), the upgrade goes without ``permessage-deflate``, and a server that
switches an extension on anyway is cut off.

Own gateway (``sec-echo``) started with ``OPENSHELL_EXTRA_CA``, once per compute
driver (``local``; ``docker``, whose driver copies that CA into the container);
one test host ``echo.sececho.test`` at 10.199.146.2 running the echo server below
(HTTPS on 443); a sandbox with a ``generic`` provider whose credential goes to that host.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import Gateway, free_port, require_root, write_policy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

pytestmark = pytest.mark.timeout(300)

SECRET = "sk-echo-Zq81vXa3b7LmN0pQ-4c2e"
PLACEHOLDER = "openshell:resolve:env:ECHO_TOKEN"
HOST, IP = "echo.sececho.test", "10.199.146.2"
SANDBOX = "sec-echo"
POLICY = f"""\
version: 1
network_policies:
  echo:
    endpoints:
      - {{host: {HOST}, port: 443, protocol: rest, access: full, allowed_ips: [10.199.146.0/24]}}
    binaries: [{{path: /usr/bin/curl}}, {{path: /usr/bin/python3*}}]
"""

# The echo upstream: reflects the Authorization header it received in several ways.
_ECHO_SERVER = r"""
import base64, gzip, hashlib, json, socket, ssl, struct, sys, threading, time
ip, port, cert, key, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5].encode()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = socket.create_server((ip, port))

def chunk(data):
    return b"%x\r\n" % len(data) + data + b"\r\n"

def frame(op, payload, fin=True):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    head += bytes([n]) if n < 126 else (b"\x7e" + struct.pack("!H", n) if n < 65536 else b"\x7f" + struct.pack("!Q", n))
    return head + payload

def websocket(conn, path, low, auth):
    accept = base64.b64encode(hashlib.sha1(low["sec-websocket-key"].encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    extra = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if path == "/ws-deflate" else b""
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Echo-Auth: " + auth
                 + b"\r\nSec-WebSocket-Accept: " + accept + b"\r\n" + extra + b"\r\n")
    offered = low.get("sec-websocket-extensions", "")
    conn.sendall(frame(1, json.dumps({"extensions_offered": offered, "auth": auth.decode("latin-1")}).encode()))
    cut = len(auth) - 9
    conn.sendall(frame(1, b"split: " + auth[:cut], fin=False))
    time.sleep(0.3)  # the value straddles two fragments and two reads at the proxy
    conn.sendall(frame(0, auth[cut:] + b" :end", fin=True))
    conn.sendall(frame(9, b"ping " + auth))
    conn.sendall(frame(2, b"\x00" * 30000 + auth + b"\xff" * 40000))
    conn.sendall(frame(8, struct.pack("!H", 1000) + b"bye " + auth))
    time.sleep(0.5)

def serve(raw):
    try:
        conn = ctx.wrap_socket(raw, server_side=True)
        f = conn.makefile("rb")
        while True:
            lines = []
            while (line := f.readline(65536)) not in (b"\r\n", b""):
                lines.append(line.decode("latin-1").rstrip("\r\n"))
            if not lines:
                return
            path = lines[0].split(" ")[1]
            fields = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
            low = {k.lower(): v for k, v in fields}
            body = f.read(int(low.get("content-length", "0")))
            auth = low.get("authorization", "").encode("latin-1")
            if path in ("/ws", "/ws-deflate"):
                websocket(conn, path, low, auth)
                return
            if path == "/check":  # did the real value arrive? (answers without echoing it)
                doc = b"substituted" if auth == b"Bearer " + secret else b"not substituted"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(doc) + doc)
            elif path == "/headers":
                doc = json.dumps({"headers": fields, "body": body.decode("latin-1")}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Echo-Auth: " + auth
                             + b"\r\nContent-Length: %d\r\n\r\n" % len(doc) + doc)
            elif path == "/split":
                # The value straddles two chunks, written 0.3 s apart (two reads at the proxy).
                cut = len(auth) - 9
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
                conn.sendall(chunk(b"first part: " + auth[:cut]))
                time.sleep(0.3)
                conn.sendall(chunk(auth[cut:] + b" :second part\n"))
                conn.sendall(b"0\r\n\r\n")
            elif path == "/sse":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                for i in range(3):
                    conn.sendall(chunk(b"data: " + json.dumps({"i": i, "auth": auth.decode("latin-1")}).encode() + b"\n\n"))
                    time.sleep(0.2)
                conn.sendall(b"0\r\n\r\n")
            elif path == "/gzip":
                # Compressed whatever the request asked for; also report what it asked for.
                doc = gzip.compress(json.dumps({"auth": auth.decode("latin-1"), "accept_encoding": low.get("accept-encoding", "")}).encode())
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(doc) + doc)
            elif path == "/opaque":
                # A coding the proxy cannot decode (the bytes are in fact the plain value).
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: %d\r\n\r\n" % len(auth) + auth)
            else:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    except (OSError, ValueError):
        pass
    finally:
        raw.close()

print("ready", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@pytest.fixture(scope="module", params=["local", "docker"])
def echo_world(request, tmp_path_factory):
    """A gateway, the echo test host and a sandbox holding only the placeholder; all removed afterwards."""
    require_root()
    driver = request.param
    from openshell.supervisor.sandbox_ca import SandboxCA
    from openshell.testhost import TestHost

    base = tmp_path_factory.mktemp("sec-echo")
    test_ca = SandboxCA.generate("sec-echo test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    (base / "ca.pem").write_bytes(test_ca.cert_pem())
    (base / "up.crt").write_bytes(test_ca.issue_leaf(HOST, key.public_key()).public_bytes(serialization.Encoding.PEM))
    (base / "up.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(base / "up.key", 0o600)
    env = dict(os.environ)
    name = "sec-echo" if driver == "local" else "sec-echo-docker"
    env.update(XDG_CONFIG_HOME=str(base / "config"), XDG_STATE_HOME=str(base / "state"), OPENSHELL_GATEWAY=name, OPENSHELL_EXTRA_CA=str(base / "ca.pem"))
    env.pop("OPENSHELL_STATE_DIR", None)
    gw = Gateway(name=name, port=free_port(), env=env, base=base, driver=driver)
    if driver == "docker":
        # The docker_gateway fixture's engine and image (started/built when missing).
        request.getfixturevalue("docker_gateway")
    with TestHost("sececho", IP) as host:
        host.start()
        server = subprocess.Popen(
            host.exec_argv([sys.executable, "-c", _ECHO_SERVER, IP, "443", str(base / "up.crt"), str(base / "up.key"), SECRET]),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        try:
            assert server.stdout is not None and server.stdout.readline() == b"ready\n"
            _wait_listening(IP, 443)
            gw.cli("gateway", "start", "--name", gw.name, "--port", str(gw.port), "--driver", driver, check=True, timeout=60)
            try:
                gw.cli(
                    "provider",
                    "create",
                    "--name",
                    "sec-echo-tok",
                    "--type",
                    "generic",
                    "--credential",
                    f"ECHO_TOKEN={SECRET}",
                    "--config",
                    f"hosts={HOST}",
                    check=True,
                )
                policy = write_policy(base / "policy.yaml", POLICY)
                gw.cli(
                    "sandbox",
                    "create",
                    "--name",
                    SANDBOX,
                    "--provider",
                    "sec-echo-tok",
                    "--policy",
                    policy,
                    "--add-host",
                    f"{HOST}:{IP}",
                    "-d",
                    check=True,
                    timeout=300,
                )
                yield gw
            finally:
                gw.cli("sandbox", "delete", "--all", timeout=180)
                gw.cli("gateway", "stop", "--name", gw.name, timeout=60)
        finally:
            server.kill()
            server.wait(10)


def _wait_listening(ip: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((ip, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise


def curl(gw, path: str, *extra: str) -> bytes:
    """Output of ``curl -i`` (head and body) from inside the sandbox, with the placeholder as bearer token."""
    args = " ".join(extra)
    proc = gw.sx(SANDBOX, "sh", "-c", f'curl -sS -i --max-time 20 {args} -H "Authorization: Bearer $ECHO_TOKEN" https://{HOST}{path}', timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.removeprefix(b"HTTP/1.1 200 Connection Established\r\n\r\n")


def test_the_upstream_receives_the_real_value(echo_world):
    assert curl(echo_world, "/check").endswith(b"\r\n\r\nsubstituted")


def test_echoed_header_and_json_body_show_the_placeholder(echo_world):
    out = curl(echo_world, "/headers")
    assert SECRET.encode() not in out
    head, _, body = out.partition(b"\r\n\r\n")
    assert f"X-Echo-Auth: Bearer {PLACEHOLDER}".encode() in head
    assert f'["Authorization", "Bearer {PLACEHOLDER}"]'.encode() in body
    # The length changed: the body arrives re-framed, never cut or padded.
    assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head


def test_secret_straddling_a_chunk_boundary_is_replaced(echo_world):
    out = curl(echo_world, "/split")
    assert SECRET.encode() not in out
    assert f"first part: Bearer {PLACEHOLDER} :second part\n".encode() in out


def test_raw_chunked_stream_never_holds_the_value(echo_world):
    """What curl received on the wire (chunk framing kept) carries no part that rebuilds the value."""
    out = curl(echo_world, "/split", "--raw")
    assert SECRET.encode() not in out.replace(b"\r\n", b"")
    assert PLACEHOLDER.encode() in out


def test_server_sent_events_are_scrubbed(echo_world):
    out = curl(echo_world, "/sse", "-N")
    assert SECRET.encode() not in out
    assert out.count(PLACEHOLDER.encode()) == 3


def test_compressed_echo_is_decoded_and_scrubbed(echo_world):
    out = curl(echo_world, "/gzip", "--compressed")
    assert SECRET.encode() not in out
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Content-Encoding" not in head
    assert PLACEHOLDER.encode() in body
    assert b'"accept_encoding": "identity"' in body  # the proxy asked the upstream not to compress


def test_body_in_an_undecodable_coding_is_refused(echo_world):
    out = curl(echo_world, "/opaque")
    assert SECRET.encode() not in out
    assert out.startswith(b"HTTP/1.1 502 ")


# --------------------------------------------------------------------------- WebSocket

# A WebSocket client in the sandbox: CONNECT through the proxy, TLS with the sandbox
# CA, the upgrade (offering permessage-deflate) with the placeholder as bearer token;
# prints the answer head and the raw frame bytes (base64) it received until EOF.
_WS_CLIENT = r"""
import base64, json, os, socket, ssl, sys
from urllib.parse import urlsplit
host, path = sys.argv[1], sys.argv[2]
proxy = urlsplit(os.environ["HTTPS_PROXY"])
s = socket.create_connection((proxy.hostname, proxy.port), timeout=20)
s.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
t = ssl.create_default_context().wrap_socket(s, server_hostname=host)
t.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
           f"Authorization: Bearer {os.environ['ECHO_TOKEN']}\r\n\r\n").encode())
data = b""
while True:
    try:
        chunk = t.recv(65536)
    except (OSError, ssl.SSLError):
        break
    if not chunk:
        break
    data += chunk
head, _, frames = data.partition(b"\r\n\r\n")
print(json.dumps({"head": head.decode("latin-1"), "frames": base64.b64encode(frames).decode()}))
"""


def _ws(gw, path: str) -> tuple[str, bytes]:
    import base64
    import json

    proc = gw.sx(SANDBOX, "python3", "-c", _WS_CLIENT, HOST, path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    return out["head"], base64.b64decode(out["frames"])


def _messages(data: bytes) -> list[tuple[int, bytes]]:
    """Whole messages and control frames of an unmasked frame stream (a strict client parse)."""
    import struct

    out, current, i = [], None, 0
    while i < len(data):
        b0, b1 = data[i], data[i + 1]
        assert not b1 & 0x80 and not b0 & 0x70, "masked frame or reserved bit"
        n, i = b1 & 0x7F, i + 2
        if n == 126:
            n, i = struct.unpack_from("!H", data, i)[0], i + 2
        elif n == 127:
            n, i = struct.unpack_from("!Q", data, i)[0], i + 8
        fin, op, payload = bool(b0 & 0x80), b0 & 0x0F, data[i : i + n]
        assert len(payload) == n, "truncated frame"
        i += n
        if op >= 8:
            out.append((op, payload))
        else:
            current = [op, b""] if op else current
            current[1] += payload
            if fin:
                out.append((current[0], current[1]))
                current = None
    return out


def test_websocket_frames_echoing_the_secret_show_the_placeholder(echo_world):
    import json
    import struct

    head, frames = _ws(echo_world, "/ws")
    assert head.startswith("HTTP/1.1 101 ")
    assert SECRET.encode() not in head.encode() and SECRET.encode() not in frames
    assert f"X-Echo-Auth: Bearer {PLACEHOLDER}" in head
    msgs = _messages(frames)
    first = json.loads(msgs[0][1])
    assert first == {"extensions_offered": "", "auth": f"Bearer {PLACEHOLDER}"}  # permessage-deflate was not offered
    assert msgs[1:] == [
        (1, f"split: Bearer {PLACEHOLDER} :end".encode()),
        (9, f"ping Bearer {PLACEHOLDER}".encode()),
        (2, b"\x00" * 30000 + f"Bearer {PLACEHOLDER}".encode() + b"\xff" * 40000),
        (8, struct.pack("!H", 1000) + f"bye Bearer {PLACEHOLDER}".encode()),
    ]


def test_websocket_extension_the_proxy_did_not_offer_cuts_the_connection(echo_world):
    head, body = _ws(echo_world, "/ws-deflate")
    assert head.startswith("HTTP/1.1 502 ")  # never the 101: the client never speaks WebSocket to it
    assert b"WebSocket extension the proxy did not offer" in body
    assert SECRET.encode() not in head.encode() + body
