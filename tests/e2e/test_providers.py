"""Providers end to end: a credential's real value never exists inside the sandbox
(environment, files, /proc) yet reaches the upstream in the request header — substituted by
the proxy on an inspected TLS connection to a host the provider declares, and refused
everywhere else.

Own gateway (``inf-prov``) started with ``OPENSHELL_EXTRA_CA`` so the proxy trusts the test
host's certificate. Test hosts ``api.inf.test`` / ``other.inf.test`` at 10.199.40.2 (HTTPS on
443 and HTTP on 8080, echoing request headers). Sandbox names start with ``inf-``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os

import pytest
from conftest import Gateway, free_port, require_root, write_policy

pytestmark = pytest.mark.timeout(300)

SECRET = "s3cr3t-VALUE-inf-7f3a9c"
IP = "10.199.40.2"
POLICY = """\
version: 1
network_policies:
  api:
    endpoints:
      - {host: api.inf.test, port: 443, protocol: rest, access: full, allowed_ips: [10.199.40.0/24]}
      - {host: other.inf.test, port: 443, protocol: rest, access: full, allowed_ips: [10.199.40.0/24]}
      - {host: api.inf.test, port: 8080, allowed_ips: [10.199.40.0/24]}
    binaries: [{path: /usr/bin/curl}]
"""


def _tls_files(tmp) -> tuple[str, str, str]:
    """A CA and a leaf for both test names; returns (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "inf test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.inf.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.inf.test"), x509.DNSName("other.inf.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (tmp / "ca.pem", tmp / "leaf.pem", tmp / "leaf.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(paths[2], 0o600)
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_root()
    from openshell.testhost import TestHost

    base = tmp_path_factory.mktemp("inf-prov")
    ca, cert, key = _tls_files(base)
    with TestHost("infapi", IP) as host:
        host.serve_http(443, tls_cert=cert, tls_key=key)
        host.serve_http(8080)
        e = dict(os.environ)
        e.update(XDG_CONFIG_HOME=str(base / "config"), XDG_STATE_HOME=str(base / "state"), OPENSHELL_GATEWAY="inf-prov", OPENSHELL_EXTRA_CA=ca)
        e.pop("OPENSHELL_STATE_DIR", None)
        gw = Gateway(name="inf-prov", port=free_port(), env=e, base=base)
        gw.cli("gateway", "start", "--name", gw.name, "--port", str(gw.port), check=True, timeout=60)
        try:
            gw.cli(
                "provider",
                "create",
                "--name",
                "inf-tok",
                "--type",
                "generic",
                "--credential",
                f"INF_TOKEN={SECRET}",
                "--config",
                "hosts=api.inf.test",
                check=True,
            )
            policy = write_policy(base / "policy.yaml", POLICY)
            gw.cli(
                "sandbox",
                "create",
                "--name",
                "inf-prov",
                "--provider",
                "inf-tok",
                "--policy",
                policy,
                "--add-host",
                f"api.inf.test:{IP}",
                "--add-host",
                f"other.inf.test:{IP}",
                "-d",
                check=True,
                timeout=120,
            )
            yield gw
        finally:
            gw.cli("sandbox", "delete", "--all", timeout=120)
            gw.cli("gateway", "stop", "--name", gw.name, timeout=60)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sh(gw, script: str, timeout: float = 60):
    return gw.sx("inf-prov", "sh", "-c", script, timeout=timeout)


def test_sandbox_env_holds_only_the_placeholder(env):
    out = sh(env, "env").stdout.decode()
    assert "INF_TOKEN=openshell:resolve:env:INF_TOKEN" in out.splitlines()
    assert SECRET not in out


def test_value_is_not_in_sandbox_files_or_proc(env):
    # Every process the sandbox can see (environ, cmdline) and every file it can write or read config from.
    # The pattern is a regex that matches the value without containing it, so our own argv does not count.
    pattern = SECRET[:-1] + f"[{SECRET[-1]}]"
    script = (
        f"cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | grep -c '{pattern}'; "
        f"grep -rls '{pattern}' /sandbox /tmp /etc /run /var 2>/dev/null | head -5; echo end"
    )
    out = sh(env, script).stdout.decode().split()
    assert out[0] == "0" and out[-1] == "end" and len(out) == 2, out


def test_value_reaches_the_declared_host_in_the_header(env):
    proc = sh(env, 'curl -sS --max-time 20 https://api.inf.test/echo -H "Authorization: Bearer $INF_TOKEN" -H "X-Key: $INF_TOKEN"')
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    digests = {k.lower(): v for k, v in doc["header_sha256"]}
    assert digests["authorization"] == sha256(f"Bearer {SECRET}") and digests["x-key"] == sha256(SECRET)
    # The echo itself shows the placeholder: the proxy scrubs values coming back.
    headers = {k.lower(): v for k, v in doc["headers"]}
    assert headers["x-key"] == "openshell:resolve:env:INF_TOKEN" and SECRET.encode() not in proc.stdout


def test_value_reaches_the_declared_host_in_the_query(env):
    proc = sh(env, 'curl -sS --max-time 20 "https://api.inf.test/q?token=$INF_TOKEN&x=1"')
    doc = json.loads(proc.stdout)
    assert doc["path_sha256"] == sha256(f"/q?token={SECRET}&x=1")
    assert doc["path"] == "/q?token=openshell:resolve:env:INF_TOKEN&x=1" and SECRET.encode() not in proc.stdout


def test_placeholder_to_an_undeclared_host_is_refused(env):
    proc = sh(env, 'curl -sS --max-time 20 -w "\\n%{http_code}" https://other.inf.test/echo -H "Authorization: Bearer $INF_TOKEN"')
    body, code = proc.stdout.rsplit(b"\n", 1)
    assert code == b"403"
    answer = json.loads(body)
    assert answer["error"] == "credential_placeholder_denied" and "api.inf.test, not other.inf.test" in answer["detail"]


def test_placeholder_on_an_uninspected_connection_is_refused(env):
    proc = sh(env, 'curl -sS --max-time 20 -w "\\n%{http_code}" http://api.inf.test:8080/echo -H "X-Key: $INF_TOKEN"')
    body, code = proc.stdout.rsplit(b"\n", 1)
    assert code == b"403" and json.loads(body)["error"] == "credential_placeholder_denied"


def test_value_never_in_gateway_state_or_logs(env):
    found = []
    for root, _dirs, files in os.walk(env.state_dir):
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as fh:
                    if SECRET.encode() in fh.read():
                        found.append(path)
            except OSError:
                continue
    assert not found, found
    assert SECRET.encode() not in env.cli("provider", "list", "-o", "json", check=True).stdout


def test_rotated_credential_is_used_without_restart(env):
    rotated = "r0tated-VALUE-inf-51d2"
    env.cli("provider", "update", "inf-tok", "--credential", f"INF_TOKEN={rotated}", check=True)
    seen = None
    for _ in range(30):  # the supervisor re-reads its providers within a moment
        proc = sh(env, 'curl -sS --max-time 20 https://api.inf.test/echo -H "X-Key: $INF_TOKEN"')
        seen = {k.lower(): v for k, v in json.loads(proc.stdout)["header_sha256"]}.get("x-key")
        if seen == sha256(rotated):
            break
    assert seen == sha256(rotated)
    assert sh(env, "echo $INF_TOKEN").stdout.strip() == b"openshell:resolve:env:INF_TOKEN"
