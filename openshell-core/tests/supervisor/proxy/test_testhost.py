"""``openshell.testhost.TestHost``: namespaces, addresses, the echo server, cleanup."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import random
import subprocess
import urllib.request
import uuid

import pytest
from openshell.supervisor import nsutil
from openshell.testhost import TestHost, TestHostError

pytestmark = pytest.mark.timeout(120)


def _links() -> str:
    return subprocess.run(["ip", "-br", "link"], check=True, capture_output=True, text=True).stdout


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_two_hosts_in_one_slash24_coexist_and_outlive_each_other(test_host_factory):
    a = test_host_factory("tha")
    b = TestHost(f"thb{uuid.uuid4().hex[:6]}", a.ip.rsplit(".", 1)[0] + ".3")
    with b:
        a.serve_http(8080)
        b.serve_http(8080, body="bee")
        assert _get(f"http://{a.ip}:8080/")["host"] == a.name
        doc = _get(f"http://{b.ip}:8080/x")
        assert doc["host"] == b.name and doc["body"] == "bee" and doc["path"] == "/x"
    # b's teardown must not take the shared .1 address (and a's route) with it.
    assert _get(f"http://{a.ip}:8080/")["host"] == a.name


def test_echo_reports_method_path_headers_and_body(test_host_factory):
    host = test_host_factory("the")
    url = host.serve_http(9000)
    req = urllib.request.Request(url + "/p?q=1", data=b"hello", method="PUT", headers={"X-Probe": "1"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["X-Test-Host"] == host.name
        doc = json.loads(resp.read())
    assert doc["method"] == "PUT" and doc["path"] == "/p?q=1" and doc["request_body"] == "hello"
    assert ["X-Probe", "1"] in doc["headers"]
    with urllib.request.urlopen(url + "/bytes/300000", timeout=10) as resp:
        assert len(resp.read()) == 300000


def test_everything_removed_on_exit_even_after_an_error(proxy_root):
    name = f"thx{uuid.uuid4().hex[:6]}"
    host = TestHost(name, f"10.199.{random.randint(100, 250)}.2")
    with pytest.raises(RuntimeError), host:
        host.serve_http(8080)
        servers = list(host._servers)
        raise RuntimeError("test body failed")
    assert not os.path.exists(nsutil.netns_path(host.netns))
    assert host._veth_root not in _links()
    assert all(p.poll() is not None for p in servers)


def test_stale_namespace_from_a_crashed_run_is_replaced(proxy_root):
    name = f"ths{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", f"osth-{name}"], check=True)
    with TestHost(name, f"10.199.{random.randint(100, 250)}.2") as host:
        host.serve_http(8080)
        assert _get(f"http://{host.ip}:8080/")["host"] == name
    assert not os.path.exists(nsutil.netns_path(f"osth-{name}"))


def test_address_left_by_a_killed_run_of_another_name_is_freed(proxy_root):
    # Runs name their hosts after their pid: a run killed with SIGKILL leaves a
    # namespace no later name matches, but its address and route stay in the way.
    ip = f"10.199.{random.randint(100, 250)}.2"
    crashed = TestHost(f"thk{uuid.uuid4().hex[:6]}", ip)
    crashed.start()
    crashed._up = False  # as if its process died: close() will not clean it
    try:
        with TestHost(f"thn{uuid.uuid4().hex[:6]}", ip) as host:
            host.serve_http(8080)
            assert _get(f"http://{ip}:8080/")["host"] == host.name
        assert not os.path.exists(nsutil.netns_path(crashed.netns))
    finally:
        crashed._up = True
        crashed.close()


def test_address_of_a_live_host_is_not_taken(proxy_root):
    ip = f"10.199.{random.randint(100, 250)}.2"
    with TestHost(f"thl{uuid.uuid4().hex[:6]}", ip) as live:
        live.serve_http(8080)
        with pytest.raises(TestHostError, match=live.netns):
            TestHost(f"thm{uuid.uuid4().hex[:6]}", ip).start()
        assert _get(f"http://{ip}:8080/")["host"] == live.name


@pytest.mark.parametrize("ip", ["10.200.0.2", "127.0.0.1", "10.199.0.1", "10.199.0.255"])
def test_addresses_outside_the_test_range_are_refused(ip):
    with pytest.raises(TestHostError):
        TestHost("bad", ip)


def test_https_with_the_given_certificate(test_host_factory, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    host = test_host_factory("tht")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test host")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host.ip))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "k.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    url = host.serve_http(8443, tls_cert=str(cert_file), tls_key=str(key_file))
    assert url == f"https://{host.ip}:8443"
    res = subprocess.run(["curl", "-sS", "--cacert", str(cert_file), url + "/tls"], check=False, capture_output=True, timeout=20)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["path"] == "/tls"
