"""The host's own addresses are not reachable from a sandbox unless named exactly.

A server that root runs on the host bound to 0.0.0.0 answers on every address
of the host, e.g. the host side of a test host's veth (10.199.N.1). Destination
safety refuses those addresses like loopback, unless the endpoint's
``allowed_ips`` lists exactly that address (bare IP or /32); a broader range
or an exact host name alone does not open it.

All traffic here goes to 10.199.N.1, an address of this machine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time

import pytest
from conftest import free_port, require_root, write_policy  # noqa: E402 - tests/ is on sys.path (conftest)
from openshell.policy import parse_policy
from openshell.policy.destination import CHECK_HOST_ADDRESS, check_destination
from openshell.policy.hostaddrs import LocalAddresses, read_interface_addresses

pytestmark = pytest.mark.timeout(300)

# 10.199.130-139.x: outside the other suites' ranges; from the pid so two runs rarely meet.
_NET = 130 + os.getpid() % 10
HOST_IP = f"10.199.{_NET}.2"
SELF_IP = f"10.199.{_NET}.1"  # the root-namespace end of the test host's veth
LOCAL = frozenset({ipaddress.ip_address(SELF_IP), ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("fd00::7")})


def endpoint(host: str, allowed_ips: list[str] | None = None, port: int = 8080):
    ep: dict = {"host": host, "port": port}
    if allowed_ips is not None:
        ep["allowed_ips"] = allowed_ips
    doc = {"version": 1, "network_policies": {"r": {"endpoints": [ep], "binaries": [{"path": "/usr/bin/curl"}]}}}
    return parse_policy(doc).network[0].endpoints[0]


# ---------------------------------------------------------------- decision unit tests


@pytest.mark.parametrize(
    ("rule_host", "host", "allowed", "resolved"),
    [
        ("self.test", "self.test", None, [SELF_IP]),  # exact name, no allowed_ips
        ("self.test", "self.test", ["10.199.0.0/16"], [SELF_IP]),  # broad range
        ("self.test", "self.test", ["10.0.0.0/8"], [SELF_IP]),
        ("self.test", "self.test", [f"10.199.{_NET}.0/24"], [SELF_IP]),
        ("self.test", "self.test", [f"10.199.{_NET}.0/31"], [SELF_IP]),  # narrow but not exact
        ("self.test", "self.test", ["10.199.0.0/16"], [HOST_IP, SELF_IP]),  # every address is checked
        ("*.self.test", "a.self.test", ["10.199.0.0/16"], [SELF_IP]),  # wildcard host
        (SELF_IP, SELF_IP, None, []),  # IP literal
        ("self.test", "self.test", ["192.0.2.0/24"], ["192.0.2.7"]),
        ("self.test", "self.test", ["fd00::/64"], ["fd00::7"]),
        ("self.test", "self.test", None, [f"::ffff:{SELF_IP}"]),  # IPv4-mapped
    ],
)
def test_host_address_refused(rule_host, host, allowed, resolved):
    r = check_destination(host, endpoint(rule_host, allowed), resolved, local=LOCAL)
    assert not r.ok and r.check == CHECK_HOST_ADDRESS
    assert "address of the host" in r.reason and "allowed_ips" in r.reason


@pytest.mark.parametrize("allowed", [[SELF_IP], [f"{SELF_IP}/32"], ["10.199.0.0/16", SELF_IP]])
def test_host_address_allowed_when_named_exactly(allowed):
    r = check_destination("self.test", endpoint("self.test", allowed), [SELF_IP], local=LOCAL)
    assert r.ok and r.addresses == (SELF_IP,)
    r = check_destination(SELF_IP, endpoint(SELF_IP, allowed), [], local=LOCAL)
    assert r.ok


def test_other_addresses_unaffected():
    r = check_destination("up.test", endpoint("up.test", ["10.199.0.0/16"]), [HOST_IP], local=LOCAL)
    assert r.ok
    r = check_destination("up.test", endpoint("up.test"), [HOST_IP], local=LOCAL)
    assert r.ok


def test_exact_address_does_not_reopen_loopback():
    r = check_destination("self.test", endpoint("self.test", ["10.199.0.2"]), ["127.0.0.1"], local=frozenset({ipaddress.ip_address("127.0.0.1")}))
    assert not r.ok and r.check == "always-blocked"


def test_unreadable_host_addresses_fail_closed():
    r = check_destination("up.test", endpoint("up.test", ["10.199.0.0/16"]), [HOST_IP], local=None)
    assert not r.ok and r.check == CHECK_HOST_ADDRESS


# ---------------------------------------------------------------- the host's address set


def test_interface_addresses_follow_a_new_address():
    require_root()
    from openshell.testhost import TestHost

    cache = LocalAddresses(refresh=0.2)
    assert ipaddress.ip_address("127.0.0.1") in read_interface_addresses()
    ip = f"10.199.{_NET}.3"
    gw = ipaddress.ip_address(ip.rsplit(".", 1)[0] + ".1")
    with TestHost(f"secha{_NET}b", ip):
        deadline = time.monotonic() + 10
        while gw not in (cache.get() or ()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gw in cache.get()


# ---------------------------------------------------------------- end to end

SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"host-root-server\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H)
print("ready", flush=True)
srv.serve_forever()
"""


@pytest.fixture(scope="module")
def self_host():
    """A test host (so 10.199.N.1 exists in the root namespace) and a root server on 0.0.0.0."""
    require_root()
    from openshell.testhost import TestHost

    port = free_port()
    with TestHost(f"secha{_NET}", HOST_IP) as host:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE)
        try:
            assert proc.stdout.readline().strip() == b"ready"
            yield host, port
        finally:
            proc.terminate()
            proc.wait(10)


def curl(gateway, sandbox: str, url: str) -> tuple[str, str]:
    p = gateway.sx(sandbox, "curl", "-sS", "-w", "\n%{http_code}", url)
    body, _, code = p.stdout.decode().rpartition("\n")
    return code, body


def test_sandbox_cannot_reach_a_host_server_unless_named_exactly(any_gateway, self_host, tmp_path):
    # docker: the container shares the host's network namespace, so the supervisor in
    # it sees (and must refuse) the same host addresses.
    gateway = any_gateway
    host, port = self_host
    assert host.gateway_ip == SELF_IP
    bin_ = '[{path: "/usr/bin/curl"}]'
    policy = f"""\
version: 1
network_policies:
  broad: {{endpoints: [{{host: broad.test, port: {port}, allowed_ips: [10.199.0.0/16]}}], binaries: {bin_}}}
  none: {{endpoints: [{{host: none.test, port: {port}}}], binaries: {bin_}}}
  exact: {{endpoints: [{{host: exact.test, port: {port}, allowed_ips: [{SELF_IP}]}}], binaries: {bin_}}}
  subnet: {{endpoints: [{{host: subnet.test, port: {port}, allowed_ips: [10.199.{_NET}.0/24]}}], binaries: {bin_}}}
"""
    name = "sec-ha-self"
    gateway.cli("sandbox", "delete", name)
    adds = [a for n in ("broad", "none", "exact", "subnet") for a in ("--add-host", f"{n}.test:{SELF_IP}")]
    gateway.cli("sandbox", "create", "--name", name, "--policy", write_policy(tmp_path / "p.yaml", policy), *adds, "--detach", check=True, timeout=300)
    try:
        for n in ("broad", "none", "subnet"):
            code, body = curl(gateway, name, f"http://{n}.test:{port}/")
            assert code == "403", (n, code, body)
            reason = json.loads(body)
            assert reason["error"] == "ssrf_denied" and CHECK_HOST_ADDRESS in reason["reason"], reason
            assert SELF_IP in reason["reason"]
        code, body = curl(gateway, name, f"http://exact.test:{port}/")
        assert code == "200" and "host-root-server" in body, (code, body)
    finally:
        gateway.cli("sandbox", "delete", name, timeout=180)
