"""The benchmark upstream: a small HTTP/1.1 server inside a test host's namespace.

Why not ``TestHost.serve_http``: its handler writes the head and the body in
two sends without ``TCP_NODELAY``, so on a kept-alive connection every answer
waits for the client's delayed ACK (~40 ms) — fine for tests, useless for
requests per second. This server answers each request with one ``sendall``,
sets ``TCP_NODELAY``, keeps connections alive, and streams ``GET /bytes/N``
from a 1 MiB buffer. Every other path answers a 2-byte body ``ok``.

It runs as a child process inside the namespace (``ip netns exec``) on a
socket bound there by the harness, like ``TestHost.serve_http``, and dies with
the harness (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from openshell.supervisor import nsutil

SERVER_CODE = r"""
import ctypes, os, signal, socket, ssl, sys, threading
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(os.environ["UP_PARENT"]):
    sys.exit(0)
CHUNK = b"\0" * (1 << 20)
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
ctx = None
if os.environ.get("UP_CERT"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.environ["UP_CERT"], os.environ["UP_KEY"])

def serve(conn):
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx is not None:
            conn = ctx.wrap_socket(conn, server_side=True)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                if len(buf) > 65536:
                    return
            head, _, buf = buf.partition(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].split()
            close = b"connection: close" in head.lower()
            if len(line) >= 2 and line[1].startswith(b"/bytes/"):
                n = int(line[1][7:])
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % n)
                while n > 0:
                    k = min(n, len(CHUNK))
                    conn.sendall(CHUNK[:k])
                    n -= k
            else:
                conn.sendall(OK)
            if close:
                return
    except (OSError, ValueError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass

sock = socket.socket(fileno=int(os.environ["UP_FD"]))
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
while True:
    conn, _ = sock.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


class Upstream:
    """The server above on ``host.ip:port`` inside test host ``host``.

    :param host: a started ``TestHost``.
    :param tls: ``(cert_path, key_path)`` to serve HTTPS.
    :raises RuntimeError: not answering within 10 s.
    """

    def __init__(self, host, port: int, tls: tuple[str, str] | None = None) -> None:
        sock = nsutil.socket_in_netns(host.netns)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.ip, port))
            sock.listen(1024)
            env = dict(os.environ, UP_PARENT=str(os.getpid()), UP_FD=str(sock.fileno()), UP_CERT=tls[0] if tls else "", UP_KEY=tls[1] if tls else "")
            self.proc = subprocess.Popen(
                host.exec_argv([sys.executable, "-c", SERVER_CODE]), env=env, pass_fds=[sock.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
            )
        finally:
            sock.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((host.ip, port), timeout=1):
                    return
            except OSError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"bench upstream on {host.ip}:{port} not answering: {exc}") from None
                time.sleep(0.05)

    def close(self) -> None:
        """Stop the server. Idempotent."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
