"""`helm install` of deploy/helm/openshell on the real test cluster: the PKI hook
makes the Secrets, the gateway pod becomes Ready through its mTLS /healthz probes
with its state on a PersistentVolume, the CLI reaches it with the client files
from the client Secret (NodePort on the node IP), a sandbox created through it
becomes an agent-sandbox Sandbox object with a pod that has no API token, and
the gateway's store survives a restart of its pod.

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
from k8s_env import CHART, REPO, RUN, V, cluster_up, helm, kubeconfig
from test_cluster import create_namespace, kc, kc_apply, kc_json, wait_until

pytestmark = pytest.mark.skipif(not cluster_up() or helm() is None, reason="no test cluster or helm: run scripts/k8s/start.sh (or nox -s k8s)")

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
    rel = Release(name, ns, node_port, tmp_path_factory.mktemp("openshell-config"))
    try:
        _helm(
            "install", name, str(CHART), "--namespace", ns, "--wait", "--timeout", "5m",
            "--set", f"persistence.storageClass={ns}-manual",
            "--set", "service.type=NodePort", "--set", f"service.nodePort={node_port}",
            "--set", f"gateway.extraServerNames={{{V['K8S_NODE_IP']}}}",
            "--set", f"sandbox.namespace={ns}",
        )  # fmt: skip
        yield rel
    finally:
        subprocess.run([str(helm()), "--kubeconfig", str(kubeconfig()), "uninstall", name, "-n", ns, "--wait"], capture_output=True, timeout=300)
        kc("delete", "sandboxes", "--all", "-n", ns, "--wait=true", check=False, timeout=300)
        kc("delete", "namespace", ns, "--wait=true", check=False, timeout=300)
        kc("delete", "pv", f"{ns}-state", check=False)
        shutil.rmtree(pv_dir, ignore_errors=True)


def _secret(rel: Release, secret: str) -> dict[str, bytes]:
    data = kc_json("get", "secret", secret, "-n", rel.namespace)["data"]
    return {k: base64.b64decode(v) for k, v in data.items()}


def _names(rel: Release) -> list[str]:
    """Names `sandbox list -o json` shows ([] while the gateway does not answer)."""
    out = rel.cli("sandbox", "list", "-o", "json")
    return [row["name"] for row in json.loads(out.stdout)] if out.returncode == 0 else []


def _connect(rel: Release) -> None:
    """Write the CLI's client files from the client Secret (what a user does after `helm install`)."""
    from openshell.client.config import write_gateway_config

    files = _secret(rel, f"{rel.name}-openshell-client")
    os.environ["XDG_CONFIG_HOME"] = str(rel.config_home)
    try:
        write_gateway_config(rel.name, f"https://{V['K8S_NODE_IP']}:{rel.node_port}", files["ca.crt"], files["client.crt"], files["client.key"])
    finally:
        del os.environ["XDG_CONFIG_HOME"]


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


def test_sandbox_through_the_gateway_is_a_sandbox_object_with_a_tokenless_pod(release: Release) -> None:
    _connect(release)
    name = f"k8s-{uuid.uuid4().hex[:6]}"
    # The supervisor does not run in the pod yet, so READY never comes: a short wait.
    release.cli("sandbox", "create", "--name", name, "-d", "--timeout", "5")

    def sandbox_object() -> dict | None:
        items = kc_json("get", "sandboxes", "-n", release.namespace, "-l", f"openshell.io/sandbox-name={name}")["items"]
        return items[0] if items else None

    obj = wait_until("the Sandbox object", sandbox_object)
    pod_name = obj["metadata"]["name"]

    def running_pod() -> dict | None:
        out = kc("get", "pod", pod_name, "-n", release.namespace, "-o", "json", check=False)
        pod = json.loads(out.stdout) if out.returncode == 0 else None
        return pod if pod and pod["status"].get("phase") == "Running" else None

    pod = wait_until("its pod running", running_pod)
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["serviceAccountName"] == f"{release.name}-openshell-sandbox"
    assert not [m for c in pod["spec"]["containers"] for m in c.get("volumeMounts", []) if "serviceaccount" in m["mountPath"]]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "sandbox"  # what the NetworkPolicy selects

    assert name in _names(release)

    # the gateway's store is on the volume: a new gateway pod still knows the sandbox
    kc("delete", "pod", f"{release.name}-openshell-0", "-n", release.namespace, "--wait=true", timeout=180)
    kc("wait", "--for=condition=Ready", f"pod/{release.name}-openshell-0", "-n", release.namespace, "--timeout=180s", timeout=200)
    assert name in wait_until("sandbox listed after the restart", lambda: _names(release))

    out = release.cli("sandbox", "delete", name)
    assert out.returncode == 0, out.stderr
    wait_until("the Sandbox object deleted", lambda: sandbox_object() is None)


def test_upgrade_keeps_the_pki_so_client_files_keep_working(release: Release) -> None:
    before = _secret(release, f"{release.name}-openshell-client")
    _helm("upgrade", release.name, str(CHART), "--namespace", release.namespace, "--reuse-values", "--wait", "--timeout", "5m")
    assert _secret(release, f"{release.name}-openshell-client") == before
    _connect(release)
    out = wait_until("the CLI answered after the upgrade", lambda: (o := release.cli("sandbox", "list", "-o", "json")).returncode == 0 and o)
    assert isinstance(json.loads(out.stdout), list)
