"""`helm install` of deploy/helm/openshell on the real test cluster: the PKI hook
makes the Secrets, the gateway pod becomes Ready through its mTLS /healthz probes
with its state on a PersistentVolume, the CLI reaches it with the client files
from the client Secret (`gateway add --from-secret`, NodePort on the node IP),
and the issue's end-to-end path through it: a sandbox becomes an agent-sandbox
Sandbox object whose pod runs the supervisor (no API token), exec, policy
allow/deny through its proxy to a test host, logs, upload/download, stop/start,
the sandbox and its policy surviving a gateway pod restart, delete (object and
config Secret gone), and 10 sandboxes at once.

Skipped unless the cluster answers; builds and imports the gateway image from
this checkout (and the sandbox image when containerd lacks it) with
deploy/docker/build_images.py.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from k8s_env import CACHE, CHART, REPO, RUN, V, cluster_up, helm, kubeconfig
from test_cluster import create_namespace, delete_workdir_volumes, kc, kc_apply, kc_json, wait_until, workdir_volumes

pytestmark = [
    pytest.mark.skipif(not cluster_up() or helm() is None, reason="no test cluster or helm: run scripts/k8s/start.sh (or nox -s k8s)"),
    # the first test also builds the images (a debootstrap on a fresh machine) and installs the chart
    pytest.mark.timeout(1800),
]

TAG = "0.1.0"
OPENSHELL = str(Path(sys.executable).with_name("openshell"))


@dataclass
class Release:
    name: str
    namespace: str
    node_port: int
    config_home: Path

    def cli(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "XDG_CONFIG_HOME": str(self.config_home), "OPENSHELL_GATEWAY": self.name}
        return subprocess.run([OPENSHELL, *argv], capture_output=True, text=True, timeout=timeout, env=env)


def _ensure_images() -> None:
    """Import the sandbox image when containerd lacks it, and always the gateway image
    built from this checkout (an image left by an earlier run may hold older code)."""
    sock = RUN / "containerd" / "containerd.sock"
    have = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "images", "ls", "-q"], capture_output=True, text=True, check=True).stdout.split()
    build = [sys.executable, str(REPO / "deploy" / "docker" / "build_images.py"), "--tag", TAG, "--import-to", str(sock)]
    if f"docker.io/openshell/sandbox:{TAG}" in have:
        build += ["--only", "gateway"]
    out = subprocess.run(build, timeout=1800, capture_output=True, text=True)
    assert out.returncode == 0, f"build_images.py failed: {out.stderr[-2000:]}"


def _helm(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(helm()), "--kubeconfig", str(kubeconfig()), *argv], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    _ensure_images()
    ns = f"osh-helm-{uuid.uuid4().hex[:8]}"
    name = "gw"
    node_port = random.randint(30000, 32767)
    pv_dir = Path(V["K8S_DATA"]) / "pv" / ns
    create_namespace(ns)
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{ns}-state"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": f"{ns}-manual",
            "hostPath": {"path": str(pv_dir), "type": "DirectoryOrCreate"},
        },
    }
    kc_apply(pv)
    workdir_class = workdir_volumes(ns, 16)  # a claim per sandbox (/sandbox survives stop/start)
    rel = Release(name, ns, node_port, tmp_path_factory.mktemp("openshell-config"))
    try:
        _helm(
            "install", name, str(CHART), "--namespace", ns, "--wait", "--timeout", "5m",
            "--set", f"persistence.storageClass={ns}-manual",
            "--set", "service.type=NodePort", "--set", f"service.nodePort={node_port}",
            "--set", f"gateway.extraServerNames={{{V['K8S_NODE_IP']}}}",
            "--set", f"sandbox.namespace={ns}",
            "--set", "sandbox.workdir.size=64Mi", "--set", f"sandbox.workdir.storageClass={workdir_class}",
        )  # fmt: skip
        yield rel
    finally:
        subprocess.run([str(helm()), "--kubeconfig", str(kubeconfig()), "uninstall", name, "-n", ns, "--wait"], capture_output=True, timeout=300)
        kc("delete", "sandboxes", "--all", "-n", ns, "--wait=true", check=False, timeout=300)
        kc("delete", "namespace", ns, "--wait=true", check=False, timeout=300)
        kc("delete", "pv", f"{ns}-state", check=False)
        delete_workdir_volumes(ns)
        shutil.rmtree(pv_dir, ignore_errors=True)


def _secret(rel: Release, secret: str) -> dict[str, bytes]:
    data = kc_json("get", "secret", secret, "-n", rel.namespace)["data"]
    return {k: base64.b64decode(v) for k, v in data.items()}


def _names(rel: Release) -> list[str]:
    """Names `sandbox list -o json` shows ([] while the gateway does not answer)."""
    out = rel.cli("sandbox", "list", "-o", "json")
    return [row["name"] for row in json.loads(out.stdout)] if out.returncode == 0 else []


def _connect(rel: Release) -> None:
    """What the README tells a user after `helm install`: `gateway add --from-secret`
    with kubectl reading the chart's client Secret."""
    if (rel.config_home / "openshell" / "gateways" / rel.name).is_dir():
        return
    kubectl = str(CACHE / V["K8S_VERSION"] / "bin" / "kubectl")
    out = rel.cli(
        "gateway", "add", rel.name, "--endpoint", f"https://{V['K8S_NODE_IP']}:{rel.node_port}",
        "--from-secret", f"{rel.namespace}/{rel.name}-openshell-client", "--kubectl", kubectl, "--kubeconfig", str(kubeconfig()), "-o", "json",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["healthy"] is True


def test_pki_hook_made_the_secrets_and_the_client_secret_has_no_ca_key(release: Release) -> None:
    gateway = _secret(release, f"{release.name}-openshell-pki")
    assert set(gateway) == {f"{n}.{e}" for n in ("ca", "server", "client", "supervisor") for e in ("crt", "key")}
    client = _secret(release, f"{release.name}-openshell-client")
    assert set(client) == {"ca.crt", "client.crt", "client.key"}
    # the hook Job and its RBAC are gone after success
    assert not kc_json("get", "jobs", "-n", release.namespace)["items"]


def test_gateway_pod_is_ready_with_its_state_on_the_volume(release: Release) -> None:
    pod = kc_json("get", "pod", f"{release.name}-openshell-0", "-n", release.namespace)
    conds = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conds["Ready"] == "True"
    pvc = kc_json("get", "pvc", f"state-{release.name}-openshell-0", "-n", release.namespace)
    assert pvc["status"]["phase"] == "Bound"
    assert (Path(V["K8S_DATA"]) / "pv" / release.namespace / "gateway.db").exists()


def test_cli_reaches_the_in_cluster_gateway(release: Release) -> None:
    _connect(release)
    out = release.cli("sandbox", "list", "-o", "json")
    assert out.returncode == 0, out.stderr
    assert isinstance(json.loads(out.stdout), list)


POLICY = """
version: 1
network_policies:
  up:
    endpoints: [{host: up.example.test, port: 8080, allowed_ips: [10.199.0.0/16]}]
    binaries: [{path: /usr/bin/curl}]
"""


@dataclass
class Sandbox:
    name: str
    release: Release

    def sx(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.release.cli("sandbox", "exec", self.name, "--", *argv, timeout=timeout)

    def object(self) -> dict | None:
        items = kc_json("get", "sandboxes", "-n", self.release.namespace, "-l", f"openshell.io/sandbox-name={self.name}")["items"]
        return items[0] if items else None

    def phase(self) -> str:
        out = self.release.cli("sandbox", "get", self.name, "-o", "json")
        return json.loads(out.stdout).get("phase", "") if out.returncode == 0 else ""


@pytest.fixture(scope="module")
def sandbox(release: Release, upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox through the in-cluster gateway, allowed to reach the test host
    ``up.example.test`` (in a network namespace on the host, 10.199.80-119.2) with curl."""
    _connect(release)
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(POLICY)
    sb = Sandbox(f"k8s-{uuid.uuid4().hex[:6]}", release)
    out = release.cli(
        "sandbox", "create", "--name", sb.name, "--policy", str(policy), "--add-host", f"up.example.test:{upstream.ip}", "--detach", "--timeout", "240",
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    yield sb
    release.cli("sandbox", "delete", sb.name)


def test_sandbox_is_a_sandbox_object_whose_pod_runs_the_supervisor_without_a_token(sandbox: Sandbox) -> None:
    assert sandbox.phase() == "READY"
    obj = sandbox.object()
    assert obj is not None
    pod = kc_json("get", "pod", obj["metadata"]["name"], "-n", sandbox.release.namespace)
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["serviceAccountName"] == f"{sandbox.release.name}-openshell-sandbox"
    assert not [m for c in pod["spec"]["containers"] for m in c.get("volumeMounts", []) if "serviceaccount" in m["mountPath"]]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "sandbox"  # what the NetworkPolicy selects
    (c,) = pod["spec"]["containers"]
    assert "privileged" not in c["securityContext"] and c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_exec_runs_as_the_sandbox_user_with_the_config_secret_out_of_reach(sandbox: Sandbox) -> None:
    out = sandbox.sx("sh", "-c", "id -un; pwd; cat /var/lib/openshell/config/client.key 2>&1; echo rc=$?")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["sandbox", "/sandbox"]
    assert "PRIVATE KEY" not in out.stdout and lines[-1] != "rc=0"
    assert sandbox.sx("sh", "-c", "exit 3").returncode == 3


def test_policy_allows_curl_to_the_test_host_and_denies_the_rest(sandbox: Sandbox) -> None:
    ok = sandbox.sx("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "http://up.example.test:8080/")
    assert ok.stdout == "200", ok.stdout + ok.stderr
    other = sandbox.sx("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "http://up.example.test:8081/")
    assert other.stdout == "403", other.stdout + other.stderr
    py = sandbox.sx(
        "python3",
        "-c",
        "import urllib.request as u\ntry: u.urlopen('http://up.example.test:8080/', timeout=20); print('open')\nexcept Exception as e: print('denied', e)",
    )
    assert py.stdout.startswith("denied"), py.stdout + py.stderr  # not an allowed binary


def test_logs_show_the_proxy_decisions(sandbox: Sandbox) -> None:
    def decisions() -> dict[str, dict] | None:
        out = sandbox.release.cli("sandbox", "logs", sandbox.name, "-n", "500", "-o", "json")
        rows = [json.loads(ln) for ln in out.stdout.splitlines() if ln.strip()] if out.returncode == 0 else []
        found = {r["fields"]["decision"]: r["fields"] for r in rows if r.get("fields", {}).get("event") == "decision"}
        return found if {"ALLOWED", "DENIED"} <= set(found) else None

    found = wait_until("ALLOWED and DENIED decisions in the logs", decisions, timeout=60)
    assert found["ALLOWED"]["binary"] == "/usr/bin/curl" and found["ALLOWED"]["policy"] == "up"
    assert "not allowed" in found["DENIED"]["reason"] or found["DENIED"].get("port") == 8081


def test_upload_and_download_round_trip(sandbox: Sandbox, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    out = sandbox.release.cli("sandbox", "upload", sandbox.name, str(src), "/sandbox/src")
    assert out.returncode == 0, out.stderr
    assert sandbox.sx("cat", "/sandbox/src/a.txt").stdout == "alpha\n"
    dest = tmp_path / "back"
    out = sandbox.release.cli("sandbox", "download", sandbox.name, "/sandbox/src", str(dest))
    assert out.returncode == 0, out.stderr
    assert (dest / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()


def test_ssh_and_forward_reach_the_pod_through_the_gateway(sandbox: Sandbox, tmp_path: Path) -> None:
    """The real ``ssh`` with ``sandbox ssh-config`` (ProxyCommand through the gateway's
    /connect/ssh) and ``forward`` (SSH port forwarding) reach the supervisor in the pod."""
    import socket

    from conftest import free_port  # noqa: E402 - tests/ is on sys.path (conftest)

    rel = sandbox.release
    env = {**os.environ, "XDG_CONFIG_HOME": str(rel.config_home), "OPENSHELL_GATEWAY": rel.name}
    cfg = tmp_path / "ssh_config"
    out = rel.cli("sandbox", "ssh-config", sandbox.name)
    assert out.returncode == 0, out.stderr
    cfg.write_text(out.stdout)
    p = subprocess.run(["ssh", "-F", str(cfg), f"openshell-{sandbox.name}", "id -un"], env=env, capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, "sandbox\n"), p.stderr

    port = free_port()
    code = (
        "import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n def do_GET(self):\n"
        "  self.send_response(200); self.end_headers(); self.wfile.write(b'from-a-pod')\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()"
    )
    server = subprocess.Popen([OPENSHELL, "sandbox", "exec", sandbox.name, "--", "python3", "-c", code], env=env, stdin=subprocess.DEVNULL)
    try:
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"
        wait_until("the server in the sandbox", lambda: sandbox.sx("python3", "-c", probe).returncode == 0, timeout=60)
        out = rel.cli("forward", "start", str(port), sandbox.name)
        assert out.returncode == 0, out.stderr
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
        assert data.endswith(b"from-a-pod"), data[-200:]
    finally:
        rel.cli("forward", "stop", str(port), sandbox.name)
        server.kill()
        server.wait()


def test_stop_ends_the_pod_and_start_brings_the_sandbox_back_with_its_files(sandbox: Sandbox) -> None:
    assert sandbox.sx("sh", "-c", "echo kept > /sandbox/kept.txt").returncode == 0
    out = sandbox.release.cli("sandbox", "stop", sandbox.name, timeout=240)
    assert out.returncode == 0, out.stderr
    assert sandbox.phase() == "STOPPED"
    name = (sandbox.object() or {})["metadata"]["name"]
    assert kc("get", "pod", name, "-n", sandbox.release.namespace, check=False).returncode != 0
    out = sandbox.release.cli("sandbox", "start", sandbox.name, timeout=300)
    assert out.returncode == 0, out.stderr
    assert sandbox.sx("cat", "/sandbox/kept.txt").stdout == "kept\n"  # on the sandbox's claim, not the pod


def test_sandbox_and_policy_survive_a_gateway_pod_restart(sandbox: Sandbox) -> None:
    rel = sandbox.release
    before = rel.cli("policy", "get", sandbox.name, "-o", "json")
    assert before.returncode == 0, before.stderr
    kc("delete", "pod", f"{rel.name}-openshell-0", "-n", rel.namespace, "--wait=true", timeout=180)
    kc("wait", "--for=condition=Ready", f"pod/{rel.name}-openshell-0", "-n", rel.namespace, "--timeout=180s", timeout=200)
    assert sandbox.name in wait_until("sandbox listed after the restart", lambda: _names(rel))
    after = wait_until("policy answered after the restart", lambda: (o := rel.cli("policy", "get", sandbox.name, "-o", "json")).returncode == 0 and o)
    assert json.loads(after.stdout) == json.loads(before.stdout)
    # the supervisor reconnected: exec goes through the new gateway pod to the same sandbox
    assert wait_until("exec after the restart", lambda: (o := sandbox.sx("echo", "still")).returncode == 0 and o).stdout == "still\n"
    assert wait_until("READY after the restart", lambda: sandbox.phase() == "READY")


def test_image_and_limits_given_at_create_reach_the_pod(release: Release) -> None:
    _connect(release)
    name = f"k8s-lim-{uuid.uuid4().hex[:5]}"
    image = f"docker.io/openshell/sandbox:{TAG}"
    out = release.cli("sandbox", "create", "--name", name, "--from", image, "--cpu", "500m", "--memory", "512Mi", "--detach", "--timeout", "240", timeout=300)
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        sb = Sandbox(name, release)
        obj = sb.object()
        assert obj is not None
        (c,) = kc_json("get", "pod", obj["metadata"]["name"], "-n", release.namespace)["spec"]["containers"]
        assert c["image"] == image
        assert c["resources"]["limits"] == {"cpu": "500m", "memory": str(512 * 1024 * 1024)}
        assert sb.sx("echo", "limited").stdout == "limited\n"
    finally:
        release.cli("sandbox", "delete", name, timeout=240)


def test_ten_sandboxes_at_once(release: Release) -> None:
    _connect(release)
    names = [f"k8s-many-{uuid.uuid4().hex[:5]}-{i}" for i in range(10)]
    procs = [
        subprocess.Popen(
            [OPENSHELL, "sandbox", "create", "--name", n, "--detach", "--timeout", "300"],
            env={**os.environ, "XDG_CONFIG_HOME": str(release.config_home), "OPENSHELL_GATEWAY": release.name},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for n in names
    ]
    try:
        results = [p.communicate(timeout=400) for p in procs]
        failed = [(n, err[-300:]) for n, p, (_, err) in zip(names, procs, results, strict=True) if p.returncode != 0]
        assert not failed, failed
        for n in names:
            out = release.cli("sandbox", "exec", n, "--", "cat", "/etc/hostname")
            assert out.returncode == 0, out.stderr
    finally:
        for n in names:
            release.cli("sandbox", "delete", n, timeout=300)

    def none_left() -> bool:
        left = kc_json("get", "sandboxes", "-n", release.namespace)["items"]
        return not [o for o in left if o["metadata"]["labels"].get("openshell.io/sandbox-name", "").startswith("k8s-many")]

    wait_until("the 10 Sandbox objects deleted (foreground: after their pods)", none_left)


def test_delete_removes_the_sandbox_object_and_its_config_secret(sandbox: Sandbox) -> None:
    obj = sandbox.object()
    assert obj is not None
    name = obj["metadata"]["name"]
    assert kc("get", "secret", name, "-n", sandbox.release.namespace, check=False).returncode == 0
    out = sandbox.release.cli("sandbox", "delete", sandbox.name, timeout=240)
    assert out.returncode == 0, out.stderr
    wait_until("the Sandbox object deleted", lambda: sandbox.object() is None)
    assert kc("get", "secret", name, "-n", sandbox.release.namespace, check=False).returncode != 0


def test_upgrade_keeps_the_pki_so_client_files_keep_working(release: Release) -> None:
    before = _secret(release, f"{release.name}-openshell-client")
    _helm("upgrade", release.name, str(CHART), "--namespace", release.namespace, "--reuse-values", "--wait", "--timeout", "5m")
    assert _secret(release, f"{release.name}-openshell-client") == before
    _connect(release)
    out = wait_until("the CLI answered after the upgrade", lambda: (o := release.cli("sandbox", "list", "-o", "json")).returncode == 0 and o)
    assert isinstance(json.loads(out.stdout), list)
