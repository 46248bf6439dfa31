"""Test hosts: small HTTP(S) servers in their own network namespace.

DESIGN.md §7: tests never send traffic to an address outside this machine.
Anything a sandbox must reach *through the proxy* is a "test host": a network
namespace the test creates, with an address in ``10.199.0.0/16``, named in the
sandbox spec by an ``extra_hosts``/``--add-host name:ip`` entry and allowed by
``allowed_ips`` in the policy. Loopback is no substitute, because destination
safety (POLICY.md §2.5) always blocks it.

Layout of one host (``TestHost("web", "10.199.3.2")``)::

    root namespace                          netns osth-web
    veth th<hash>  10.199.3.1/32  <------>  veth eth0  10.199.3.2/24
    route 10.199.3.2/32 dev th<hash>        default via 10.199.3.1

The root side gets the ``.1`` of the host's /24 as a /32 plus a host route to
the test host, so several hosts coexist even in the same /24 (Linux keeps the
shared ``.1`` address alive until its last interface goes away). The host is
reachable from the root namespace, where supervisors dial upstreams.

``serve_http`` binds the listening socket inside the namespace *in this
process* (``nsutil.socket_in_netns``) and hands it to a child process running
inside the namespace, so the server is listening before ``serve_http``
returns; it then checks one real request end to end. Everything is removed on
exit, also when the block raises; a namespace left over by a crashed run (no
process inside) is removed and recreated.

Example::

    with TestHost("web", "10.199.3.2") as host:
        host.serve_http(80)
        # GET http://10.199.3.2/x -> 200 {"host": "web", "method": "GET", "path": "/x", ...}
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Self

from openshell.supervisor import nsutil

TEST_NET = ipaddress.ip_network("10.199.0.0/16")
NETNS_PREFIX = "osth-"

# The server runs in a child process (own GIL, so it never competes with an
# in-process proxy). It receives the already-listening socket as fd LISTEN_FD.
_SERVER_CODE = r"""
import ctypes, hashlib, json, os, signal, socket, ssl, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Die with the test process even when it is killed hard.
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(os.environ["TH_PARENT"]):
    sys.exit(0)

NAME = os.environ["TH_NAME"]
IP = os.environ["TH_IP"]
BODY = os.environ["TH_BODY"]
CHUNK = b"\0" * (1 << 20)
MAX_ECHO = 1 << 20  # request bodies above this are read and counted, not echoed

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openshell-testhost"

    def log_message(self, *args):
        pass

    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        seen, kept = 0, bytearray()
        while seen < length:
            data = self.rfile.read(min(1 << 20, length - seen))
            if not data:
                break
            seen += len(data)
            if len(kept) < MAX_ECHO:
                kept += data[: MAX_ECHO - len(kept)]
        return seen, bytes(kept)

    def _answer(self):
        if self.path.startswith("/bytes/"):
            # Bulk download for throughput measurements: GET /bytes/<n>
            n = int(self.path[len("/bytes/"):])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                self.wfile.write(CHUNK[: min(n, len(CHUNK))])
                n -= len(CHUNK)
            return
        size, body = self._read_body()
        doc = {
            "host": NAME,
            "ip": IP,
            "body": BODY,
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            # Digests let a test check what arrived even when the proxy scrubs echoed secrets.
            "path_sha256": hashlib.sha256(self.path.encode("latin-1")).hexdigest(),
            "header_sha256": [[k, hashlib.sha256(v.encode("latin-1")).hexdigest()] for k, v in self.headers.items()],
            "request_body_size": size,
            "request_body": body.decode("utf-8", "replace"),
        }
        data = (json.dumps(doc) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Test-Host", NAME)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _answer

class Server(ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        pass  # clients that vanish mid-request are normal in proxy tests

sock = socket.socket(fileno=int(os.environ["TH_FD"]))
server = Server(sock.getsockname(), Handler, bind_and_activate=False)
server.socket.close()
if os.environ.get("TH_CERT"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.environ["TH_CERT"], os.environ["TH_KEY"])
    # Handshake per connection in the handler thread (do_handshake_on_connect).
    sock = ctx.wrap_socket(sock, server_side=True)
server.socket = sock
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
server.serve_forever()
"""


class TestHostError(RuntimeError):
    """A test host could not be set up (bad address, name clash, ``ip`` failure)."""

    __test__ = False


class AddressInUse(TestHostError):
    """Another live test host holds the address asked for."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise TestHostError(f"'ip {' '.join(args)}' failed: {proc.stderr.strip()}")
    return proc


class TestHost:
    """A network namespace ``osth-<name>`` reachable from the root namespace at ``ip``.

    :param name: short name (letters, digits, ``-``); the namespace is ``osth-<name>``
        and the HTTP answers carry it as ``"host"``.
    :param ip: IPv4 address in ``10.199.0.0/16`` whose last octet is not 0, 1 or 255;
        the root side uses ``.1`` of the same /24.
    :raises TestHostError: bad address, another live host with that name, or an ``ip``
        command failed (the message includes its stderr).

    Attributes: ``name``, ``ip``, ``netns`` (namespace name), ``gateway_ip`` (root side).
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, name: str, ip: str) -> None:
        addr = ipaddress.ip_address(ip)
        if addr not in TEST_NET:
            raise TestHostError(f"test host address {ip} is outside {TEST_NET}: test hosts live there only, so no traffic leaves this machine")
        last = int(addr) & 0xFF
        if last in (0, 1, 255):
            raise TestHostError(f"test host address {ip}: last octet must be 2-254 (.1 is the root side)")
        if not name or not all(c.isalnum() or c == "-" for c in name):
            raise TestHostError(f"test host name {name!r}: use letters, digits and '-'")
        self.name = name
        self.ip = str(addr)
        self.netns = NETNS_PREFIX + name
        self.gateway_ip = str(ipaddress.ip_address(int(addr) & ~0xFF | 1))
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        # IFNAMSIZ is 16 including NUL: keep names short and derived from the name.
        self._veth_root = f"th{digest}"
        self._veth_peer = f"tp{digest}"
        self._servers: list[subprocess.Popen] = []
        self._up = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Create the namespace, veth pair, addresses and routes. Idempotent."""
        if self._up:
            return
        self._remove_stale()
        self._remove_stale_address()
        # Without a route, an unused 10.199.x.y would follow the default route off
        # this machine; the /32 host routes below are more specific than this guard.
        _ip("route", "replace", "unreachable", "10.199.0.0/16")
        _ip("netns", "add", self.netns)
        self._up = True
        try:
            ns = self.netns
            _ip("link", "add", self._veth_root, "type", "veth", "peer", "name", self._veth_peer)
            _ip("link", "set", self._veth_peer, "netns", ns)
            _ip("-n", ns, "link", "set", self._veth_peer, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{self.ip}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", self.gateway_ip, "dev", "eth0")
            _ip("addr", "add", f"{self.gateway_ip}/32", "dev", self._veth_root)
            _ip("link", "set", self._veth_root, "up")
            _ip("route", "add", f"{self.ip}/32", "dev", self._veth_root, "src", self.gateway_ip)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop servers and delete the namespace and veth pair. Safe to call twice."""
        for proc in self._servers:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck child
                pass
        self._servers.clear()
        if self._up:
            # Deleting the root side removes the peer too; the netns removal frees the rest.
            _ip("link", "del", self._veth_root, check=False)
            _ip("netns", "del", self.netns, check=False)
            self._up = False

    def _remove_stale(self) -> None:
        if not os.path.exists(nsutil.netns_path(self.netns)):
            return
        pids = _ip("netns", "pids", self.netns, check=False).stdout.split()
        if pids:
            raise TestHostError(f"network namespace {self.netns} exists and is in use by pids {' '.join(pids)}; pick another test host name")
        _ip("link", "del", self._veth_root, check=False)
        _ip("netns", "del", self.netns, check=False)

    def _remove_stale_address(self) -> None:
        """Free ``self.ip`` from a test host of another name whose process died
        without closing it (names carry pids, so ``_remove_stale`` never sees it).

        :raises TestHostError: a live test host still uses the address.
        """
        route = _ip("route", "show", f"{self.ip}/32", check=False).stdout.split()
        if "dev" not in route:
            return
        dev = route[route.index("dev") + 1]
        if not dev.startswith("th"):
            raise TestHostError(f"test host address {self.ip} is routed to {dev}, which is not a test host's; pick another address")
        info = _ip("-o", "link", "show", "dev", dev, check=False).stdout.split()
        netns = info[info.index("link-netns") + 1] if "link-netns" in info else None
        if netns and _ip("netns", "pids", netns, check=False).stdout.split():
            raise AddressInUse(f"test host address {self.ip} is in use by the live test host in {netns}; pick another address")
        _ip("link", "del", dev, check=False)
        if netns and netns.startswith(NETNS_PREFIX):
            _ip("netns", "del", netns, check=False)

    # ------------------------------------------------------------------ helpers

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """Return ``argv`` prefixed so it runs inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def serve_http(
        self,
        port: int,
        body: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        timeout: float = 10.0,
    ) -> str:
        """Start an HTTP(S) server on ``ip:port`` inside the namespace; return its URL.

        Every method answers 200 with ``application/json``: ``{"host": name, "ip",
        "body": body, "method", "path", "version", "headers": [[name, value], ...],
        "path_sha256", "header_sha256": [[name, sha256 hex of value], ...],
        "request_body_size", "request_body"}`` (request bodies up to 1 MiB are echoed)
        and header ``X-Test-Host: name``. ``GET /bytes/<n>`` answers ``n`` zero bytes
        (for throughput tests). HTTP/1.1 with keep-alive.

        :param port: TCP port, 1-65535.
        :param body: text put in the answer's ``"body"``; default ``"hello from <name>"``.
        :param tls_cert: PEM certificate chain file; with ``tls_key`` serves HTTPS.
        :param timeout: seconds to wait for the first end-to-end request to succeed.
        :raises TestHostError: the server did not answer within ``timeout``.
        """
        if not self._up:
            self.start()
        if (tls_cert is None) != (tls_key is None):
            raise TestHostError("serve_http needs both tls_cert and tls_key, or neither")
        sock = nsutil.socket_in_netns(self.netns)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.ip, port))
            sock.listen(128)
            env = dict(os.environ)
            env.update(
                TH_PARENT=str(os.getpid()),
                TH_NAME=self.name,
                TH_IP=self.ip,
                TH_BODY=body if body is not None else f"hello from {self.name}",
                TH_FD=str(sock.fileno()),
                TH_CERT=tls_cert or "",
                TH_KEY=tls_key or "",
            )
            proc = subprocess.Popen(
                self.exec_argv([sys.executable, "-c", _SERVER_CODE]),
                env=env,
                pass_fds=[sock.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        finally:
            sock.close()  # the child holds its own copy
        self._servers.append(proc)
        scheme = "https" if tls_cert else "http"
        self._wait_ready(proc, port, tls=bool(tls_cert), timeout=timeout)
        return f"{scheme}://{self.ip}:{port}"

    def _wait_ready(self, proc: subprocess.Popen, port: int, *, tls: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise TestHostError(f"test host {self.name}: server exited with {proc.returncode}")
            try:
                if self._probe(port, tls=tls, timeout=max(0.1, deadline - time.monotonic())):
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        proc.kill()
        raise TestHostError(f"test host {self.name}: {self.ip}:{port} not answering after {timeout}s ({last})")

    def _probe(self, port: int, *, tls: bool, timeout: float) -> bool:
        """One real GET from the root namespace: proves addresses, routes and server."""
        with socket.create_connection((self.ip, port), timeout=timeout) as raw:
            conn: socket.socket = raw
            if tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE  # readiness only; tests verify for real
                conn = ctx.wrap_socket(raw)
            conn.sendall(b"GET /__ready HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        head, _, payload = data.partition(b"\r\n\r\n")
        return head.startswith(b"HTTP/1.1 200") and json.loads(payload)["host"] == self.name

    def __repr__(self) -> str:
        return f"TestHost(name={self.name!r}, ip={self.ip!r}, netns={self.netns!r})"


def main(argv: list[str] | None = None) -> None:
    """``python -m openshell.testhost NAME IP [--port P]``: serve until Ctrl-C.

    For trying policies by hand: the host answers HTTP on ``IP:P`` from its own
    network namespace; give sandboxes ``--add-host <name>:<IP>``.
    """
    parser = argparse.ArgumentParser(prog="python -m openshell.testhost", description=main.__doc__)
    parser.add_argument("name", help="short name; the namespace is osth-NAME")
    parser.add_argument("ip", help="address in 10.199.0.0/16, e.g. 10.199.1.2")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with TestHost(args.name, args.ip) as host:
        url = host.serve_http(args.port)
        print(f"test host {args.name} serving {url} (namespace {host.netns}); Ctrl-C stops it", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
