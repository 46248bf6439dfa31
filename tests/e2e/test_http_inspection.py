"""HTTP inspection inside TLS end to end (POLICY.md §3).

A real gateway started with ``OPENSHELL_EXTRA_CA`` = a test CA made here (the
local driver passes it to the supervisor, whose inspector trusts it as an
extra root for upstream TLS — verification is never disabled); a TLS test host
``api.l7e2e.test`` (10.199.12.2) presenting a certificate from that test CA;
and a sandbox whose policy gives curl, python3 and node read-only access to it
(port 443 enforced, port 8443 ``enforcement: audit``). From inside the sandbox
curl, Python ``urllib`` and Node ``fetch`` each do a GET (allowed: 200 and the
upstream saw it) and a POST (403 with the exact §3 body). Node's built-in
``fetch`` does not read proxy variables, so the Node client installs undici's
``EnvHttpProxyAgent`` as the global dispatcher, as Node agents do; its package
is fetched with ``npm pack`` on the host and copied into the sandbox workdir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Gateway, free_port, require_root  # noqa: E402 - tests/ is on sys.path
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

pytestmark = pytest.mark.timeout(600)

HOST, IP = "api.l7e2e.test", "10.199.12.2"
SANDBOX = "l7-inspect"
NODE = "/usr/bin/node"

POLICY = f"""\
version: 1
network_policies:
  api:
    endpoints:
      - {{host: {HOST}, port: 443, protocol: rest, access: read-only, allowed_ips: [10.199.12.0/24]}}
      - {{host: {HOST}, port: 8443, protocol: rest, access: read-only, enforcement: audit, allowed_ips: [10.199.12.0/24]}}
    binaries: [{{path: /usr/bin/curl}}, {{path: "/usr/bin/python3*"}}, {{path: {NODE}}}]
"""


def expected_denial(method: str, path: str, binary: str) -> dict:
    return {
        "error": "policy_denied",
        "policy": "api",
        "rule": f"{method} {path}",
        "detail": f"{method} {path} not permitted by policy",
        "layer": "l7",
        "method": method,
        "path": path,
        "host": HOST,
        "port": 443,
        "binary": binary,
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(gateway, sandbox name): own gateway with the test CA as extra trust root,
    the TLS test host, and the sandbox; all removed afterwards, also on failure."""
    require_root()
    from openshell.supervisor.sandbox_ca import SandboxCA
    from openshell.testhost import TestHost

    base = tmp_path_factory.mktemp("l7e2e")
    test_ca = SandboxCA.generate("l7e2e test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    (base / "test-ca.pem").write_bytes(test_ca.cert_pem())
    (base / "up.crt").write_bytes(test_ca.issue_leaf(HOST, key.public_key()).public_bytes(serialization.Encoding.PEM))
    (base / "up.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (base / "policy.yaml").write_text(POLICY)

    env = dict(os.environ)
    env.update(
        XDG_CONFIG_HOME=str(base / "config"), XDG_STATE_HOME=str(base / "state"), OPENSHELL_GATEWAY="l7e2e", OPENSHELL_EXTRA_CA=str(base / "test-ca.pem")
    )
    env.pop("OPENSHELL_STATE_DIR", None)
    gw = Gateway(name="l7e2e", port=free_port(), env=env, base=base)
    with TestHost("l7e2e", IP) as host:
        host.serve_http(443, tls_cert=str(base / "up.crt"), tls_key=str(base / "up.key"))
        host.serve_http(8443, tls_cert=str(base / "up.crt"), tls_key=str(base / "up.key"))
        gw.cli("gateway", "start", "--name", gw.name, "--port", str(gw.port), check=True, timeout=60)
        try:
            gw.cli("sandbox", "create", "--name", SANDBOX, "--policy", str(base / "policy.yaml"), "--add-host", f"{HOST}:{IP}", "--detach", check=True)
            yield gw, SANDBOX
        finally:
            gw.cli("sandbox", "delete", "--all", timeout=120)
            gw.cli("gateway", "stop", "--name", gw.name, timeout=60)


def supervisor_log(gw: Gateway, name: str) -> str:
    sid = json.loads(gw.cli("sandbox", "get", name, "-o", "json", check=True).stdout)["id"]
    return (gw.state_dir / "sandboxes" / sid / "supervisor.log").read_text()


def wait_for_log(gw: Gateway, name: str, needle: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = supervisor_log(gw, name)
        if needle in log or time.monotonic() > deadline:
            return log
        time.sleep(0.2)


def split_response(raw: bytes) -> tuple[int, dict, dict]:
    """``curl -i`` output (after any CONNECT answer) → (status, headers, JSON body)."""
    raw = raw.removeprefix(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


# --------------------------------------------------------------------------- curl


def test_curl_get_allowed_and_upstream_saw_it(world):
    gw, sb = world
    p = gw.sx(sb, "curl", "-sS", "-i", f"https://{HOST}/repos/acme?per_page=5")
    assert p.returncode == 0, p.stderr
    status, _, doc = split_response(p.stdout)
    assert status == 200
    assert (doc["host"], doc["method"], doc["path"]) == ("l7e2e", "GET", "/repos/acme?per_page=5")


def test_curl_post_denied_with_exact_body(world):
    gw, sb = world
    p = gw.sx(sb, "curl", "-sS", "-i", "-X", "POST", "-d", '{"title":"x"}', f"https://{HOST}/repos/acme/issues")
    status, headers, doc = split_response(p.stdout)
    assert status == 403
    assert headers["x-openshell-policy"] == "api"
    assert doc == expected_denial("POST", "/repos/acme/issues", "/usr/bin/curl")


# --------------------------------------------------------------------------- python urllib

URLLIB = """
import json, sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], method=sys.argv[2], data=b"{}" if sys.argv[2] == "POST" else None)
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        print(json.dumps({"status": r.status, "policy": r.headers.get("X-OpenShell-Policy"), "body": json.loads(r.read())}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "policy": e.headers.get("X-OpenShell-Policy"), "body": json.loads(e.read())}))
"""


def test_python_urllib_get_allowed_post_denied(world):
    gw, sb = world
    p = gw.sx(sb, "python3", "-c", URLLIB, f"https://{HOST}/py/get", "GET")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["status"] == 200 and (out["body"]["host"], out["body"]["path"]) == ("l7e2e", "/py/get")
    p = gw.sx(sb, "python3", "-c", URLLIB, f"https://{HOST}/py/post", "POST")
    out = json.loads(p.stdout)
    assert (out["status"], out["policy"]) == (403, "api")
    assert out["body"] == expected_denial("POST", "/py/post", os.path.realpath("/usr/bin/python3"))


# --------------------------------------------------------------------------- node fetch

FETCH = """
const { EnvHttpProxyAgent, setGlobalDispatcher } = require('/sandbox/node_modules/undici');
setGlobalDispatcher(new EnvHttpProxyAgent());
(async () => {
  const r = await fetch(process.argv[1], { method: process.argv[2], body: process.argv[2] === 'POST' ? '{}' : undefined });
  console.log(JSON.stringify({ status: r.status, policy: r.headers.get('x-openshell-policy'), body: await r.json() }));
})().catch((e) => { console.error(e, e.cause); process.exit(3); });
"""


@pytest.fixture(scope="module")
def undici(world, tmp_path_factory):
    """undici (npm) unpacked into the sandbox's /sandbox/node_modules/undici."""
    if not os.path.exists(NODE):
        pytest.fail(f"{NODE} is missing; scripts/setup.sh installs Debian's nodejs")
    npm = shutil.which("npm")
    assert npm, "npm is missing; scripts/setup.sh installs Debian's npm"
    d = tmp_path_factory.mktemp("undici")
    proc = subprocess.run([npm, "pack", "undici@6", "--silent", "--pack-destination", str(d)], capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, f"npm pack undici@6 failed: {proc.stderr.decode()[-500:]}"
    tgz = next(Path(d).glob("undici-*.tgz")).read_bytes()
    gw, sb = world
    p = gw.sx(sb, "sh", "-c", "mkdir -p /sandbox/node_modules/undici && tar xz -C /sandbox/node_modules/undici --strip-components=1", input=tgz)
    assert p.returncode == 0, p.stderr


def test_node_fetch_get_allowed_post_denied(world, undici):
    gw, sb = world
    p = gw.sx(sb, "node", "-e", FETCH, f"https://{HOST}/node/get", "GET")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["status"] == 200 and (out["body"]["host"], out["body"]["path"]) == ("l7e2e", "/node/get")
    p = gw.sx(sb, "node", "-e", FETCH, f"https://{HOST}/node/post", "POST")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert (out["status"], out["policy"]) == (403, "api")
    assert out["body"] == expected_denial("POST", "/node/post", NODE)


# --------------------------------------------------------------------------- audit and logs


def test_audit_endpoint_forwards_and_logs_audit(world):
    gw, sb = world
    p = gw.sx(sb, "curl", "-sS", "-X", "POST", "-d", "{}", f"https://{HOST}:8443/audited/write?token=secret-value")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert (doc["method"], doc["path"]) == ("POST", "/audited/write?token=secret-value")  # forwarded
    log = wait_for_log(gw, sb, "decision=AUDIT")
    audit = [ln for ln in log.splitlines() if "decision=AUDIT" in ln]
    assert audit and "method=POST" in audit[-1] and "path=/audited/write" in audit[-1] and "port=8443" in audit[-1]
    assert "secret-value" not in log  # the query never reaches the log


def test_every_l7_decision_is_logged_with_method_and_path(world):
    gw, sb = world
    gw.sx(sb, "curl", "-sS", "-o", "/dev/null", f"https://{HOST}/logged/get")
    log = wait_for_log(gw, sb, "path=/logged/get")
    line = next(ln for ln in log.splitlines() if "path=/logged/get" in ln)
    assert "decision=ALLOWED" in line and "method=GET" in line and "binary=/usr/bin/curl" in line and "policy=api" in line


def test_sandbox_sees_the_ca_certificate_but_no_private_key(world):
    gw, sb = world
    p = gw.sx(sb, "sh", "-c", "ls /etc/openshell-tls; cat /etc/openshell-tls/* | grep -c 'PRIVATE KEY' || true")
    names, count = p.stdout.decode().split()[:-1], p.stdout.decode().split()[-1]
    assert {"openshell-ca.pem", "ca-bundle.pem"} <= set(names)
    assert count == "0"
