"""Hot reload end to end (POLICY.md §6): ``openshell policy set|get|list|explain`` on a running sandbox.

Real gateway, supervisor, proxy and sandboxes; upstreams are test hosts
``rl-a.test`` (10.199.N.2) and ``rl-b.test`` (10.199.N.3) in their own
network namespaces. Sandbox names start with ``rl-``.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time

import pytest
from conftest import OPENSHELL, write_policy  # noqa: E402 - tests/ is on sys.path (conftest)
from sdk_compat.harness import run_sdk, sdk_python  # noqa: F401 - sdk_python is a fixture (the 0.1.5 SDK venv)

pytestmark = pytest.mark.timeout(300)

# N in 20-29 (this suite's range) from the pid, so concurrent runs of the
# suite on one machine rarely pick the same test hosts.
_NET = 20 + os.getpid() % 10
HOST_A, IP_A = "rl-a.test", f"10.199.{_NET}.2"
HOST_B, IP_B = "rl-b.test", f"10.199.{_NET}.3"
TEST_NET = f"10.199.{_NET}.0/24"
URL_A = f"http://{HOST_A}:8080/"

STATIC = """\
version: 1
filesystem_policy: {include_workdir: true, read_only: [/usr, /lib, /etc, /proc, /dev/urandom], read_write: [/sandbox, /tmp]}
landlock: {compatibility: hard_requirement}
process: {run_as_user: sandbox, run_as_group: sandbox}
"""

# python3 may reach B in every revision (the control tunnel); curl nothing yet.
ONLY_B = (
    STATIC
    + f"""\
network_policies:
  py_b: {{endpoints: [{{host: {HOST_B}, port: 8080, allowed_ips: [{TEST_NET}]}}], binaries: [{{path: "/usr/bin/python3*"}}]}}
"""
)

# Static sections omitted: kept as they are.
CURL_AND_PY_A = f"""\
version: 1
network_policies:
  curl_a: {{endpoints: [{{host: {HOST_A}, port: 8080, allowed_ips: [{TEST_NET}]}}], binaries: [{{path: /usr/bin/curl}}]}}
  py_a: {{endpoints: [{{host: {HOST_A}, port: 8080, allowed_ips: [{TEST_NET}]}}], binaries: [{{path: "/usr/bin/python3*"}}]}}
  py_b: {{endpoints: [{{host: {HOST_B}, port: 8080, allowed_ips: [{TEST_NET}]}}], binaries: [{{path: "/usr/bin/python3*"}}]}}
"""

# Valid at the gateway, refused by the supervisor: 10.0.0.0/8 covers the
# sandbox link network (10.200.0.0/16) of this host.
LINK_NETWORK = f"""\
version: 1
network_policies:
  curl_a: {{endpoints: [{{host: {HOST_A}, port: 8080, allowed_ips: [10.0.0.0/8]}}], binaries: [{{path: /usr/bin/curl}}]}}
"""

STATIC_CHANGED = STATIC.replace("hard_requirement", "best_effort") + "network_policies: {}\n"


@pytest.fixture(scope="module")
def hosts():
    from openshell.testhost import TestHost

    with TestHost(f"rla{_NET}", IP_A) as a, TestHost(f"rlb{_NET}", IP_B) as b:
        a.serve_http(8080)
        b.serve_http(8080)
        yield a, b


@pytest.fixture
def sandbox(gateway, hosts, tmp_path, request):
    name = "rl-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    gateway.cli("sandbox", "delete", name)
    policy = write_policy(tmp_path / "initial.yaml", ONLY_B)
    gateway.cli(
        "sandbox", "create", "--name", name, "--policy", policy, "--add-host", f"{HOST_A}:{IP_A}", "--add-host", f"{HOST_B}:{IP_B}", "--detach", check=True
    )
    yield name
    gateway.cli("sandbox", "delete", name)


def curl_a(gw, name: str) -> str:
    p = gw.sx(name, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", URL_A)
    return p.stdout.decode()


def revisions(gw, name: str) -> list[dict]:
    p = gw.cli("policy", "list", name, "-o", "json", check=True)
    return json.loads(p.stdout)


def supervisor_log(gw, name: str) -> str:
    """The sandbox's supervisor log (local driver: ``sandboxes/<id>/supervisor.log``)."""
    sid = json.loads(gw.cli("sandbox", "get", name, "-o", "json", check=True).stdout)["id"]
    return (gw.state_dir / "sandboxes" / sid / "supervisor.log").read_text()


def set_policy(gw, name: str, path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    p = gw.cli("policy", "set", name, "--policy", str(path), *extra)
    return p, time.monotonic() - t0


def test_denied_then_allowed_after_policy_set_wait(gateway, sandbox, tmp_path):
    assert curl_a(gateway, sandbox) == "403"
    p, took = set_policy(gateway, sandbox, write_policy(tmp_path / "p.yaml", CURL_AND_PY_A), "--wait", "--timeout", "20")
    assert p.returncode == 0, p.stderr.decode()
    assert "revision 2 loaded" in p.stderr.decode()
    # Pickup itself (< 2 s) is measured below from the gateway's timestamps; this
    # bounds the whole command, CLI start-up included, on a loaded machine.
    assert took < 15.0, f"policy set --wait took {took:.1f}s"
    # The very next connection is decided under revision 2.
    assert curl_a(gateway, sandbox) == "200"

    rows = revisions(gateway, sandbox)
    assert [(r["revision"], r["status"], r["active"]) for r in rows] == [(2, "loaded", True), (1, "loaded", False)]
    assert rows[0]["created"] and rows[0]["reported"] and rows[0]["error"] == ""
    pickup = rows[0]["reported_at"] - rows[0]["created_at"]
    assert 0 <= pickup < 2.0, f"the supervisor reported revision 2 {pickup:.2f}s after it was stored"

    got = json.loads(gateway.cli("policy", "get", sandbox, "-o", "json", check=True).stdout)
    assert got["revision"] == 2 and got["status"] == "loaded"
    # The stored document is complete: the omitted static sections were kept.
    assert "curl_a:" in got["policy_yaml"] and "hard_requirement" in got["policy_yaml"]
    text = gateway.cli("policy", "get", sandbox, check=True)
    assert text.stdout.decode().startswith("version: 1") and "revision 2 (loaded, active)" in text.stderr.decode()

    ex = json.loads(gateway.cli("policy", "explain", sandbox, "--binary", "/usr/bin/curl", "--host", HOST_A, "--port", "8080", "-o", "json", check=True).stdout)
    assert ex["decision"] == "allow" and ex["policy"] == "curl_a" and ex["addresses"] == [IP_A]
    ex = json.loads(gateway.cli("policy", "explain", sandbox, "--binary", "/usr/bin/wget", "--host", HOST_A, "--port", "8080", "-o", "json", check=True).stdout)
    assert ex["decision"] == "deny" and ex["error"] == "policy_denied" and "/usr/bin/wget" in ex["reason"]


TUNNELS = r"""
import os, socket, sys, time
proxy = os.environ["HTTP_PROXY"].split("//")[1].rstrip("/")
ph, pp = proxy.rsplit(":", 1)

def tunnel(host):
    s = socket.create_connection((ph, int(pp)), timeout=10)
    s.sendall(f"CONNECT {host}:8080 HTTP/1.1\r\nHost: {host}:8080\r\n\r\n".encode())
    head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return s

def get(s, host):
    # Read the whole response (head and body may arrive in separate segments),
    # so nothing of it is left to be mistaken for data after a reload.
    s.sendall(f"GET / HTTP/1.1\r\nHost: {host}:8080\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return "EOF"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head.split(b" ", 2)[1].decode()

a, b = tunnel(sys.argv[1]), tunnel(sys.argv[2])
print("A", get(a, sys.argv[1]), "B", get(b, sys.argv[2]), flush=True)
a.settimeout(30)
t0 = time.monotonic()
try:
    data = a.recv(1)
    print("A", "CLOSED" if not data else "DATA", round(time.monotonic() - t0, 1), flush=True)
except (socket.timeout, OSError) as e:
    print("A", type(e).__name__, flush=True)
print("B", get(b, sys.argv[2]), flush=True)
"""


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        raise AssertionError(f"no output from the sandbox process within {timeout}s; stderr: {proc.stderr.read().decode()!r}")
    return proc.stdout.readline().decode().strip()


def test_open_tunnel_no_longer_allowed_is_closed(gateway, sandbox, tmp_path):
    p, _ = set_policy(gateway, sandbox, write_policy(tmp_path / "p.yaml", CURL_AND_PY_A), "--wait", "--timeout", "20")
    assert p.returncode == 0, p.stderr.decode()
    proc = subprocess.Popen(
        [OPENSHELL, "sandbox", "exec", sandbox, "--", "python3", "-c", TUNNELS, HOST_A, HOST_B], env=gateway.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert _readline(proc, 30) == "A 200 B 200"
        # Revision 3 drops every rule for A; B stays allowed for python3.
        p, _ = set_policy(gateway, sandbox, write_policy(tmp_path / "b.yaml", ONLY_B), "--wait", "--timeout", "20")
        assert p.returncode == 0, p.stderr.decode()
        # The proxy closes the tunnel before the supervisor reports the revision
        # loaded, so the sandbox process sees EOF at once (stream latency aside).
        t0 = time.monotonic()
        line = _readline(proc, 15)
        assert line.startswith("A CLOSED"), line
        assert time.monotonic() - t0 < 5.0
        assert _readline(proc, 15) == "B 200"  # the still-allowed tunnel kept working
        assert proc.wait(15) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = supervisor_log(gateway, sandbox)
    assert "event=tunnel_closed" in log and HOST_A in log and "policy reload" in log


def test_revision_that_fails_to_load_keeps_the_previous_one(gateway, sandbox, tmp_path):
    p, _ = set_policy(gateway, sandbox, write_policy(tmp_path / "p.yaml", CURL_AND_PY_A), "--wait", "--timeout", "20")
    assert p.returncode == 0, p.stderr.decode()
    assert curl_a(gateway, sandbox) == "200"

    p, took = set_policy(gateway, sandbox, write_policy(tmp_path / "bad.yaml", LINK_NETWORK), "--wait", "--timeout", "20")
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert "revision 3" in err and "failed to load" in err and "overlaps the sandbox link network" in err
    assert "revision 2 stays in force" in err
    assert took < 15.0

    rows = revisions(gateway, sandbox)
    assert [(r["revision"], r["status"], r["active"]) for r in rows] == [(3, "failed", False), (2, "loaded", True), (1, "loaded", False)]
    assert "network_policies.curl_a.endpoints[0].allowed_ips" in rows[0]["error"]
    table = gateway.cli("policy", "list", sandbox, check=True).stdout.decode()
    assert "failed" in table and "overlaps" in table
    # ... and in the sandbox's logs (the supervisor's file, and 'openshell sandbox logs').
    assert "event=policy_load_failed revision=3 in_force=2" in supervisor_log(gateway, sandbox)
    deadline = time.monotonic() + 10
    while True:
        p = gateway.cli("sandbox", "logs", sandbox, "--level", "warning", "-o", "json", check=True)
        if "policy_load_failed revision=3" in p.stdout.decode() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "policy_load_failed revision=3" in p.stdout.decode() and "overlaps" in p.stdout.decode()

    # Revision 2 is still in force, for the proxy and for 'policy get'.
    assert curl_a(gateway, sandbox) == "200"
    got = json.loads(gateway.cli("policy", "get", sandbox, "-o", "json", check=True).stdout)
    assert got["revision"] == 2
    # Without --wait, set returns at once with the revision pending; the failure shows up in the list.
    p, _ = set_policy(gateway, sandbox, tmp_path / "bad.yaml")
    assert p.returncode == 0 and "revision 4 stored" in p.stderr.decode()
    deadline = time.monotonic() + 5
    while revisions(gateway, sandbox)[0]["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert revisions(gateway, sandbox)[0]["status"] == "failed"


def test_static_section_change_is_rejected_naming_the_field(gateway, sandbox, tmp_path):
    p, _ = set_policy(gateway, sandbox, write_policy(tmp_path / "static.yaml", STATIC_CHANGED), "--wait")
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "static.yaml: landlock.compatibility:" in err and "recreate the sandbox" in err
    # Rejected before storing: no revision 2.
    assert [r["revision"] for r in revisions(gateway, sandbox)] == [1]


def test_policy_commands_name_the_problem(gateway, hosts, tmp_path):
    p = gateway.cli("policy", "get", "rl-nope")
    assert p.returncode == 1 and "sandbox 'rl-nope' not found" in p.stderr.decode()
    bad = write_policy(tmp_path / "bad.yaml", "version: 1\nbogus: 1\n")
    p = gateway.cli("policy", "set", "rl-nope", "--policy", bad)
    assert p.returncode == 1 and "bogus" in p.stderr.decode()


def test_sandbox_link_network_at_create_fails_the_start_and_set_wait_says_so(gateway, hosts, tmp_path):
    name = "rl-link-at-create"
    gateway.cli("sandbox", "delete", name)
    try:
        p = gateway.cli(
            "sandbox", "create", "--name", name, "--policy", write_policy(tmp_path / "l.yaml", LINK_NETWORK), "--add-host", f"{HOST_A}:{IP_A}", "--detach"
        )
        assert p.returncode == 1 and "overlaps the sandbox link network" in p.stderr.decode()
        t0 = time.monotonic()
        p = gateway.cli("policy", "set", name, "--policy", write_policy(tmp_path / "p.yaml", CURL_AND_PY_A), "--wait", "--timeout", "30")
        assert p.returncode == 1 and "the sandbox is ERROR" in p.stderr.decode()
        assert time.monotonic() - t0 < 10, "set --wait should not wait out its timeout for a sandbox that is not running"
    finally:
        gateway.cli("sandbox", "delete", name)


def test_revision_stored_after_a_gateway_restart_is_picked_up(gateway, sandbox, tmp_path):
    # The supervisor's WatchPolicy stream breaks when the gateway stops; it
    # reconnects (backoff capped at 1 s) and gets the revision stored afterwards.
    gateway.cli("gateway", "stop", "--name", gateway.name, check=True)
    gateway.cli("gateway", "start", "--name", gateway.name, "--port", str(gateway.port), check=True)
    p, _ = set_policy(gateway, sandbox, write_policy(tmp_path / "p.yaml", CURL_AND_PY_A), "--wait", "--timeout", "20")
    assert p.returncode == 0, p.stderr.decode()
    row = revisions(gateway, sandbox)[0]
    assert row["revision"] == 2 and row["status"] == "loaded"
    # Generous bound: the 2 s pickup is asserted without a restart; here the
    # supervisor's channel must first reconnect (backoff capped at 1 s).
    assert row["reported_at"] - row["created_at"] < 10.0
    assert curl_a(gateway, sandbox) == "200"


def test_published_sdk_reads_policy_revisions_and_sets_a_structured_policy(gateway, sandbox, sdk_python, tmp_path):  # noqa: F811 - pytest fixture
    # openshell==0.1.5's own generated stub and messages against our gateway (wire compatibility).
    py = sdk_python
    p, _ = set_policy(gateway, sandbox, write_policy(tmp_path / "p.yaml", CURL_AND_PY_A), "--wait", "--timeout", "20")
    assert p.returncode == 0, p.stderr.decode()
    result = run_sdk(
        py,
        f"""
        import json, time
        from openshell import SandboxClient
        from openshell._proto import datamodel_pb2, openshell_pb2, sandbox_pb2

        scope = datamodel_pb2.WorkspaceSelector(workspace="default")
        with SandboxClient.from_active_cluster() as client:
            st = client._stub.GetSandboxPolicyStatus(openshell_pb2.GetSandboxPolicyStatusRequest(sandbox="{sandbox}", workspace_scope=scope))
            lst = client._stub.ListSandboxPolicies(openshell_pb2.ListSandboxPoliciesRequest(sandbox="{sandbox}", workspace_scope=scope))
            # Only curl may reach A now; the static sections (unset) are kept.
            curl_a = sandbox_pb2.NetworkPolicyRule(
                endpoints=[sandbox_pb2.NetworkEndpoint(host="{HOST_A}", port=8080, allowed_ips=["{TEST_NET}"])],
                binaries=[sandbox_pb2.NetworkBinary(path="/usr/bin/curl")],
            )
            up = client._stub.UpdateConfig(openshell_pb2.UpdateConfigRequest(
                sandbox="{sandbox}", workspace_scope=scope, policy=sandbox_pb2.SandboxPolicy(version=1, network_policies={{"curl_a": curl_a}})))
            req = openshell_pb2.GetSandboxPolicyStatusRequest(sandbox="{sandbox}", version=up.version, workspace_scope=scope)
            deadline = time.monotonic() + 60
            while (new := client._stub.GetSandboxPolicyStatus(req)).revision.status == openshell_pb2.POLICY_STATUS_PENDING and time.monotonic() < deadline:
                time.sleep(0.2)
        print(json.dumps({{
            "active": st.active_version, "version": st.revision.version,
            "status": openshell_pb2.PolicyStatus.Name(st.revision.status),
            "list": [[r.version, openshell_pb2.PolicyStatus.Name(r.status)] for r in lst.revisions],
            "token": lst.next_page_token,
            "updated": [up.version, openshell_pb2.PolicyStatus.Name(new.revision.status), new.active_version],
            "rules": sorted(new.revision.policy.network_policies),
            "landlock": new.revision.policy.landlock.compatibility,
        }}))
        """,
        env=gateway.env,
    )
    assert result["active"] == 2 and result["version"] == 2 and result["status"] == "POLICY_STATUS_LOADED"
    assert result["list"] == [[2, "POLICY_STATUS_LOADED"], [1, "POLICY_STATUS_LOADED"]] and result["token"] == ""
    assert result["updated"] == [3, "POLICY_STATUS_LOADED", 3]
    assert result["rules"] == ["curl_a"] and result["landlock"] == "hard_requirement"
    assert curl_a(gateway, sandbox) == "200"
