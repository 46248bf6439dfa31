"""The proxy in its production layout, with a client in a real sandbox.

The isolation layers prepare a sandbox (own network namespace, veth to a
supervisor-side namespace, Landlock, seccomp, user ``sandbox``); the proxy's
listening socket is made in the supervisor-side namespace on the proxy address
(as ``supervisor.main`` does) and the identity lookup looks in the sandbox's
namespace. The upstream is a test host named by a hosts entry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest
from openshell.policy import parse_policy
from openshell.supervisor import nsutil
from openshell.supervisor.proxy import IdentityResolver, ProxyServer
from openshell.supervisor.proxy.log import LOGGER_NAME

pytestmark = pytest.mark.timeout(180)

POLICY = """
version: 1
network_policies:
  curl_up:
    endpoints: [{host: up.example.test, port: 8080, allowed_ips: [10.199.0.0/16]}]
    binaries: [{path: /usr/bin/curl}]
"""


@pytest.fixture
def sandbox_proxy(launch_factory, upstream, loop_thread):
    from openshell_plugin_opa import OpaEngine

    box = launch_factory(extra_hosts={"up.example.test": upstream.ip})
    engine = OpaEngine()
    sock = nsutil.socket_in_netns(box.proxy_netns)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((box.proxy_ip, 0))
    sock.listen(64)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)  # decision lines are INFO; the root default would drop them
    logger.addHandler(handler)
    server = ProxyServer(
        "sbx",
        engine,
        engine.load(parse_policy(POLICY)),
        hosts={"up.example.test": [upstream.ip]},
        identity=IdentityResolver(netns=box.ctx.netns),
    )
    asyncio.run_coroutine_threadsafe(server.start(sock), loop_thread).result(10)
    try:
        yield box, f"http://{box.proxy_ip}:{server.port}", records
    finally:
        logging.getLogger(LOGGER_NAME).removeHandler(handler)
        asyncio.run_coroutine_threadsafe(server.close(), loop_thread).result(10)


def test_sandboxed_curl_reaches_the_test_host_through_the_proxy(sandbox_proxy, upstream):
    box, proxy_url, records = sandbox_proxy
    res = box.run(["/usr/bin/curl", "-sS", "--max-time", "20", "-x", proxy_url, "http://up.example.test:8080/in-sandbox"])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["path"] == "/in-sandbox"
    res = box.run(["/usr/bin/curl", "-sS", "--max-time", "20", "-p", "-x", proxy_url, "http://up.example.test:8080/tunnel"])
    assert res.returncode == 0, res.stderr
    decisions = [r for r in records if r.startswith("event=decision ")]
    assert len(decisions) == 2 and all("decision=ALLOWED" in d and "binary=/usr/bin/curl" in d for d in decisions)


def test_sandboxed_python_is_denied_by_binary(sandbox_proxy):
    box, proxy_url, _ = sandbox_proxy
    code = (
        "import socket,sys\n"
        "host, port = sys.argv[1].rsplit(':', 1)\n"
        "s = socket.create_connection((host.split('//')[1], int(port)), timeout=20)\n"
        "s.sendall(b'CONNECT up.example.test:8080 HTTP/1.1\\r\\n\\r\\n')\n"
        "data = b''\n"
        "while c := s.recv(65536): data += c\n"
        "print(data.decode())\n"
    )
    res = box.run(["/usr/bin/python3", "-c", code, proxy_url])
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("HTTP/1.1 403")
    doc = json.loads(res.stdout.split("\r\n\r\n", 1)[1])
    assert doc["error"] == "policy_denied" and "/usr/bin/python3.11" in doc["reason"]
