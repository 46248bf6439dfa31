"""Fixtures for the proxy tests: real test hosts, a real proxy, real clients.

- ``upstream``: a ``TestHost`` in its own network namespace (10.199.x.2) serving
  HTTP on port 8080 (DESIGN.md §7: nothing leaves this machine).
- ``proxy_factory``: starts ``ProxyServer`` on an event loop in a background
  thread, listening on a loopback socket of the root namespace (host-mode
  identity) unless told otherwise; every proxy made is closed after the test.
- ``run_client``: runs a client subprocess (``curl`` or the raw Python client)
  with a timeout.

Policies go through the real ``parse_policy``, the real ``opa`` engine and the
real ``decide`` (engine, then destination safety).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from openshell.plugin.kinds import PolicyEngine
from openshell.policy import parse_policy
from openshell.supervisor.proxy.identity import IdentityResolver
from openshell.supervisor.proxy.log import LOGGER_NAME
from openshell.supervisor.proxy.server import ProxyServer
from openshell.testhost import TestHost, TestHostError

UPSTREAM_PORT = 8080
CURL = "/usr/bin/curl"
PYTHON = os.path.realpath(sys.executable)  # what the kernel reports for the Python client

# A raw HTTP client: sends argv[2] (with \r\n escapes) to the proxy at argv[1],
# optionally argv[3] after reading the response head; prints everything received.
RAW_CLIENT = r"""
import socket, sys
host, _, port = sys.argv[1].rpartition(":")
s = socket.create_connection((host, int(port)), timeout=20)
s.sendall(sys.argv[2].encode("latin-1").decode("unicode_escape").encode("latin-1"))
data = b""
if len(sys.argv) > 3:
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.sendall(sys.argv[3].encode("latin-1").decode("unicode_escape").encode("latin-1"))
try:
    while chunk := s.recv(65536):
        data += chunk
except (ConnectionResetError, TimeoutError):
    pass
sys.stdout.buffer.write(data)
"""


def make_engine() -> PolicyEngine:
    """The real ``opa`` engine (an isolation plugin; installed with everything in CI)."""
    opa = pytest.importorskip("openshell_plugin_opa", reason="the opa policy engine plugin is not installed")
    return opa.OpaEngine()


def parse_logfmt(line: str) -> dict[str, str]:
    """Inverse of ``openshell.supervisor.proxy.log.logfmt`` for assertions."""
    return dict(tok.split("=", 1) for tok in shlex.split(line))


@pytest.fixture(scope="session")
def proxy_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("proxy tests need root (network namespaces, /proc of other processes)")
    for tool in ("ip", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    if not os.path.exists("/proc/thread-self/net/tcp"):
        pytest.skip("no /proc/thread-self/net/tcp")


def make_test_host(prefix: str) -> TestHost:
    """A started ``TestHost`` with a unique name and a random free /24 (parallel runs)."""
    last: Exception | None = None
    for _ in range(20):
        host = TestHost(f"{prefix}{uuid.uuid4().hex[:6]}", f"10.199.{random.randint(100, 250)}.2")
        try:
            host.start()
            return host
        except TestHostError as exc:  # the /24 is taken by another run: try another
            last = exc
    raise AssertionError(f"no free test host address: {last}")


@pytest.fixture
def test_host_factory(proxy_root: None) -> Iterator[Callable[[str], TestHost]]:
    """``make(prefix) -> TestHost`` (started, unique name and /24); all closed after the test."""
    made: list[TestHost] = []

    def make(prefix: str) -> TestHost:
        host = make_test_host(prefix)
        made.append(host)
        return host

    yield make
    for host in made:
        host.close()


@pytest.fixture(scope="module")
def upstream(proxy_root: None) -> Iterator[TestHost]:
    """A test host serving HTTP on port 8080 (and nothing on 8081)."""
    host = make_test_host("pxu")
    try:
        host.serve_http(UPSTREAM_PORT)
        yield host
    finally:
        host.close()


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a daemon thread for the whole module."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="proxy-test-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.warnings: list[str] = []  # lines logged at WARNING or above (``sandbox logs --level warning``)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if record.levelno >= logging.WARNING:
            self.warnings.append(record.getMessage())


@dataclass
class RunningProxy:
    """A started proxy plus helpers. ``url`` is what clients pass to ``-x``."""

    server: ProxyServer
    loop: asyncio.AbstractEventLoop
    engine: PolicyEngine
    addr: str
    identity: IdentityResolver
    logs: _Collect = field(default_factory=_Collect)

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.server.port}"

    @property
    def hostport(self) -> str:
        return f"{self.addr}:{self.server.port}"

    def set_policy(self, yaml_text: str) -> None:
        self.server.set_policy(self.engine.load(parse_policy(yaml_text)))

    def decisions(self) -> list[dict[str, str]]:
        return [parse_logfmt(line) for line in self.logs.lines if line.startswith("event=decision ")]

    def events(self, event: str) -> list[dict[str, str]]:
        return [parse_logfmt(line) for line in self.logs.lines if line.startswith(f"event={event} ")]


@pytest.fixture
def proxy_factory(loop_thread: asyncio.AbstractEventLoop, proxy_root: None) -> Iterator[Callable[..., RunningProxy]]:
    """``make(policy_yaml, hosts={}, netns=None, listen_ip="127.0.0.1", **kw) -> RunningProxy``."""
    made: list[RunningProxy] = []
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)

    def make(policy_yaml: str, hosts: dict[str, list[str]] | None = None, netns: str | None = None, listen_ip: str = "127.0.0.1", **kw: Any) -> RunningProxy:
        engine = make_engine()
        compiled = engine.load(parse_policy(policy_yaml))
        identity = IdentityResolver(netns=netns)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listen_ip, 0))
        sock.listen(128)
        server = ProxyServer(f"test-{uuid.uuid4().hex[:6]}", engine, compiled, hosts=hosts or {}, identity=identity, **kw)
        asyncio.run_coroutine_threadsafe(server.start(sock), loop_thread).result(10)
        running = RunningProxy(server, loop_thread, engine, listen_ip, identity)
        logger.addHandler(running.logs)
        made.append(running)
        return running

    yield make
    for running in made:
        logger.removeHandler(running.logs)
        asyncio.run_coroutine_threadsafe(running.server.close(), running.loop).result(10)


class Clients:
    """Real client processes. ``prefix`` runs them elsewhere (``ip netns exec NS``)."""

    curl = CURL
    python = PYTHON

    @staticmethod
    def run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a client; return the completed process (bytes output)."""
        return subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)

    def raw(self, proxy: str, request: str, after_head: str | None = None, prefix: tuple[str, ...] = ()) -> bytes:
        """Send ``request`` (``\\r\\n`` escapes allowed) to ``host:port`` from a Python
        process; optionally ``after_head`` once a response head arrived. Returns all bytes received."""
        argv = [*prefix, sys.executable, "-c", RAW_CLIENT, proxy, request]
        if after_head is not None:
            argv.append(after_head)
        return self.run(argv).stdout

    def curl_get(self, proxy_url: str, url: str, *extra: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """``curl -sS -x proxy_url [extra] url`` (add ``-p`` to tunnel http:// through CONNECT)."""
        return self.run([*prefix, CURL, "-sS", "--max-time", "20", "-x", proxy_url, *extra, url])


@pytest.fixture
def clients() -> Clients:
    return Clients()
