"""HTTP inspection through the real proxy (POLICY.md §3): CONNECT, kernel identity,
destination checks, a TLS test host in its own network namespace, real curl.

The test host presents a certificate from a test CA made here; the inspector
trusts it only as an extra root (as ``$OPENSHELL_EXTRA_CA`` does in the
supervisor). Test hosts use this suite's own names (``l7…``) and addresses
(10.199.11.0/24) so concurrent runs of other suites never collide.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from http.client import HTTPResponse

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from openshell.supervisor.proxy.l7 import HttpInspector
from openshell.supervisor.sandbox_ca import SandboxCA
from openshell.testhost import TestHost

pytestmark = pytest.mark.timeout(120)

HOST = "api.l7px.test"
IP = "10.199.11.2"
CURL = "/usr/bin/curl"


@pytest.fixture(scope="module")
def tls_host(proxy_root, tmp_path_factory):
    """``api.l7px.test`` at 10.199.11.2: HTTPS on 8443 (test-CA certificate), HTTP on 8080."""
    d = tmp_path_factory.mktemp("l7px")
    test_ca = SandboxCA.generate("l7px test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    (d / "ca.pem").write_bytes(test_ca.cert_pem())
    (d / "up.crt").write_bytes(test_ca.issue_leaf(HOST, key.public_key()).public_bytes(serialization.Encoding.PEM))
    (d / "up.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with TestHost("l7px", IP) as host:
        host.serve_http(8443, tls_cert=str(d / "up.crt"), tls_key=str(d / "up.key"))
        host.serve_http(8080)
        host.test_ca = str(d / "ca.pem")
        host.dir = d
        yield host


def _policy(binaries: str, extra: str = "access: read-only") -> str:
    return f"""
version: 1
network_policies:
  api:
    endpoints:
      - {{host: {HOST}, ports: [8443, 8080], protocol: rest, allowed_ips: [10.199.11.0/24], {extra}}}
    binaries: [{binaries}]
"""


@pytest.fixture
def inspected(proxy_factory, tls_host, clients):
    """A proxy with the HTTP inspector; ``.ca_file`` is the sandbox CA clients must trust."""

    def make(extra: str = "access: read-only"):
        ca = SandboxCA.generate("l7px")
        inspector = HttpInspector(ca, extra_ca=tls_host.test_ca)
        proxy = proxy_factory(_policy(f"{{path: {CURL}}}, {{path: {clients.python}}}", extra), hosts={HOST: [IP]}, inspector=inspector)
        proxy.ca_file = tls_host.dir / f"sandbox-ca-{proxy.server.sandbox_id}.pem"
        proxy.ca_file.write_bytes(ca.cert_pem())
        return proxy

    return make


def _curl(clients, proxy, *args: str):
    return clients.run([CURL, "-sS", "--max-time", "20", "-x", proxy.url, "--cacert", str(proxy.ca_file), *args])


def test_curl_get_allowed_and_post_denied_through_connect(inspected, clients):
    proxy = inspected()
    res = _curl(clients, proxy, f"https://{HOST}:8443/repos/acme?x=1")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["host"], doc["method"], doc["path"]) == ("l7px", "GET", "/repos/acme?x=1")
    res = _curl(clients, proxy, "-i", "-X", "POST", "-d", "{}", f"https://{HOST}:8443/repos/acme/issues")
    out = res.stdout.removeprefix(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ") and b"X-OpenShell-Policy: api" in head
    assert json.loads(body) == {
        "error": "policy_denied",
        "policy": "api",
        "rule": "POST /repos/acme/issues",
        "detail": "POST /repos/acme/issues not permitted by policy",
        "layer": "l7",
        "method": "POST",
        "path": "/repos/acme/issues",
        "host": HOST,
        "port": 8443,
        "binary": CURL,
    }
    l7 = [d for d in proxy.decisions() if d.get("method") in ("GET", "POST")]
    assert [(d["decision"], d["method"], d["path"]) for d in l7] == [("ALLOWED", "GET", "/repos/acme"), ("DENIED", "POST", "/repos/acme/issues")]


def test_keepalive_connection_follows_a_policy_reload(inspected, clients):
    proxy = inspected()
    with socket.create_connection(("127.0.0.1", proxy.server.port), timeout=20) as raw:
        raw.sendall(f"CONNECT {HOST}:8443 HTTP/1.1\r\nHost: {HOST}:8443\r\n\r\n".encode())
        assert raw.recv(100).startswith(b"HTTP/1.1 200 ")
        ctx = ssl.create_default_context(cafile=str(proxy.ca_file))
        with ctx.wrap_socket(raw, server_hostname=HOST) as tls:

            def get(path: str) -> int:
                tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:8443\r\n\r\n".encode())
                resp = HTTPResponse(tls, method="GET")
                resp.begin()
                resp.read()
                return resp.status

            assert get("/one") == 200
            proxy.set_policy(_policy(f"{{path: {clients.python}}}", 'access: read-only, deny_rules: [{method: GET, path: "/two"}]'))
            assert get("/two") == 403, "the request after the reload is decided under the new revision"


def test_plain_http_forward_to_rest_endpoint_is_inspected(inspected, clients):
    proxy = inspected()
    res = clients.curl_get(proxy.url, f"http://{HOST}:8080/fw")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["path"] == "/fw"
    res = clients.run([CURL, "-sS", "-i", "-x", proxy.url, "-X", "DELETE", f"http://{HOST}:8080/fw"])
    assert res.stdout.startswith(b"HTTP/1.1 403 ") and b'"layer":"l7"' in res.stdout


def test_plain_http_inside_connect_is_inspected(inspected, clients):
    proxy = inspected()
    res = clients.curl_get(proxy.url, f"http://{HOST}:8080/tunnelled", "-p")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["path"] == "/tunnelled"
    res = clients.run([CURL, "-sS", "-i", "-p", "-x", proxy.url, "-X", "PUT", f"http://{HOST}:8080/tunnelled"])
    assert b"403 Forbidden" in res.stdout and b'"policy":"api"' in res.stdout


def test_audit_endpoint_forwards_and_logs_audit(inspected, clients):
    proxy = inspected("access: read-only, enforcement: audit")
    res = _curl(clients, proxy, "-X", "DELETE", f"https://{HOST}:8443/gone")
    assert res.returncode == 0 and json.loads(res.stdout)["method"] == "DELETE"
    assert [(d["decision"], d["path"]) for d in proxy.decisions() if d.get("method") == "DELETE"] == [("AUDIT", "/gone")]


def test_client_not_trusting_the_sandbox_ca_fails_closed(inspected, clients):
    proxy = inspected()
    res = clients.run([CURL, "-sS", "--max-time", "20", "-x", proxy.url, f"https://{HOST}:8443/"])
    assert res.returncode != 0  # curl refuses our leaf without the sandbox CA; nothing is forwarded
    # Logged by the proxy's loop once it reads curl's alert, which may be after curl exited.
    deadline = time.monotonic() + 10
    while not proxy.events("tls_client_failed") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.events("tls_client_failed")
