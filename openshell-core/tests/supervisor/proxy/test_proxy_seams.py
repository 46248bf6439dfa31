"""Dial ordering and the HTTP-inspection seam (POLICY.md §2.6, §3)."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from openshell.supervisor.proxy import Inspector
from openshell.supervisor.proxy.relay import relay

pytestmark = pytest.mark.timeout(120)

CURL = "/usr/bin/curl"


def _policy(ip: str, binary: str, extra: str = "") -> str:
    return f"""
version: 1
network_policies:
  direct:
    endpoints: [{{host: "{ip}", port: 8080{extra}}}]
    binaries: [{{path: "{binary}"}}]
"""


@pytest.fixture
def slow_host(test_host_factory):
    """A test host whose answers to the root side are dropped until ``release()``."""
    host = test_host_factory("pxd")
    host.serve_http(8080)
    route = ["route", "add", "blackhole", f"{host.gateway_ip}/32"]
    subprocess.run(["ip", "-n", host.netns, *route], check=True)
    host.release = lambda: subprocess.run(["ip", "-n", host.netns, "route", "del", "blackhole", f"{host.gateway_ip}/32"], check=True)
    return host


def test_200_is_sent_only_after_the_upstream_dial_succeeded(proxy_factory, slow_host, clients):
    proxy = proxy_factory(_policy(slow_host.ip, clients.python))
    # This test process is the client (its binary is the Python interpreter).
    with socket.create_connection(("127.0.0.1", proxy.server.port), timeout=10) as s:
        s.sendall(f"CONNECT {slow_host.ip}:8080 HTTP/1.1\r\n\r\n".encode())
        s.settimeout(0.6)
        with pytest.raises(TimeoutError):
            s.recv(100)  # the SYN-ACK is dropped: no answer while the dial is pending
        slow_host.release()  # the next SYN retransmission completes the handshake
        s.settimeout(10)
        assert s.recv(100) == b"HTTP/1.1 200 Connection Established\r\n\r\n"


def test_dial_timeout_gives_502(proxy_factory, slow_host, clients):
    proxy = proxy_factory(_policy(slow_host.ip, clients.python), connect_timeout=0.5)
    data = clients.raw(proxy.hostport, f"CONNECT {slow_host.ip}:8080 HTTP/1.1\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 502 ")
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"] == "upstream_unreachable"


class RecordingInspector(Inspector):
    """Records what the seam hands over, then relays raw (the real inspector is another issue)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def tunnel(self, flow, client, upstream, early):
        self.calls.append(("tunnel", flow.decision.policy, flow.address, flow.connect.binary, flow.current_policy().version))
        await relay(client, upstream, to_upstream=early)

    async def forward(self, flow, client, upstream, request, early):
        self.calls.append(("forward", request.method, request.target, flow.address))
        # nothing sent: the proxy closes both sockets when this returns


def test_rest_endpoint_without_inspector_is_denied(proxy_factory, upstream, clients):
    proxy = proxy_factory(_policy(upstream.ip, CURL, ", protocol: rest, access: full"))
    res = clients.curl_get(proxy.url, f"http://{upstream.ip}:8080/", "-p")
    assert res.returncode != 0 and b"403" in res.stderr
    assert proxy.events("inspection_unavailable")


def test_rest_endpoint_goes_through_the_inspector(proxy_factory, upstream, clients):
    inspector = RecordingInspector()
    proxy = proxy_factory(_policy(upstream.ip, CURL, ", protocol: rest, access: full"), inspector=inspector)
    res = clients.curl_get(proxy.url, f"http://{upstream.ip}:8080/via", "-p")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["path"] == "/via"
    res = clients.curl_get(proxy.url, f"http://{upstream.ip}:8080/plain")
    assert inspector.calls[0][:4] == ("tunnel", "direct", upstream.ip, CURL)
    assert inspector.calls[1] == ("forward", "GET", f"http://{upstream.ip}:8080/plain", upstream.ip)
