"""The real single-node cluster of scripts/k8s/start.sh: the node is Ready, a pod
from a locally built and imported image runs, the agent-sandbox Sandbox resource
is served and its controller turns a Sandbox into a pod, and the kubernetes
driver creates, suspends/resumes (stop/start), watches and deletes Sandboxes.

Skipped unless the cluster answers (start it with scripts/k8s/start.sh, or
`nox -s k8s`). Each test module works in its own namespace and deletes it.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_env import REPO, RUN, V, cluster_up, kubeconfig, kubectl

pytestmark = pytest.mark.skipif(not cluster_up(), reason="no test cluster: run scripts/k8s/start.sh (or nox -s k8s)")

TEST_IMAGE = "docker.io/openshell/busybox:k8s-test"
WAIT = 180  # seconds for a pod to come up on a loaded 2-core machine


def kc(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(kubectl()), "--kubeconfig", str(kubeconfig()), *argv], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(argv)}: {out.stderr.strip()}")
    return out


def kc_apply(obj: dict[str, Any]) -> None:
    """``kubectl apply`` one object (the error names kubectl's message)."""
    out = subprocess.run(
        [str(kubectl()), "--kubeconfig", str(kubeconfig()), "apply", "-f", "-"], input=json.dumps(obj), capture_output=True, text=True, timeout=60
    )
    if out.returncode != 0:
        raise AssertionError(f"kubectl apply {obj['kind']}: {out.stderr.strip()}")


def kc_json(*argv: str) -> Any:
    return json.loads(kc(*argv, "-o", "json").stdout)


def wait_until(what: str, fn: Any, timeout: float = WAIT) -> Any:
    """Poll ``fn`` every half second until it returns something truthy (a readiness wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


@pytest.fixture(scope="module")
def test_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox image (Debian's static busybox) built here and imported into the node's containerd."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).is_file():
        pytest.skip("busybox not installed (apt-get install busybox-static)")
    root = tmp_path_factory.mktemp("busybox-root")
    (root / "bin").mkdir()
    shutil.copy2(busybox, root / "bin" / "busybox")
    for tool in ("sh", "sleep", "echo", "cat", "wait", "cp", "mv", "rm", "["):
        (root / "bin" / tool).symlink_to("busybox")
    # what a runtime image has: the kubernetes driver's init container copies it into each pod
    # (the supervisor itself cannot start from this image: its pods restart, they run)
    (root / "opt" / "openshell" / "site").mkdir(parents=True)
    tar = root.parent / "busybox.tar"
    subprocess.run(
        ["python3", str(REPO / "scripts" / "k8s" / "oci_image.py"), "--name", TEST_IMAGE, "--layer", str(root), "--entrypoint", "/bin/sh", "--out", str(tar)],
        check=True,
        capture_output=True,
    )
    sock = RUN / "containerd" / "containerd.sock"
    subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "images", "import", str(tar)], check=True, capture_output=True)
    return TEST_IMAGE


def driver_context(tmp: Path) -> Any:
    """A ``DriverContext`` with a real PKI (the driver puts the supervisor's files into a Secret)."""
    from openshell.gateway.tls import ensure_pki
    from openshell.plugin import DriverContext

    pki = ensure_pki(tmp / "pki")
    return DriverContext(
        state_dir=str(tmp / "state"),
        gateway_endpoint="https://127.0.0.1:1",
        ca_cert=str(pki.ca_cert),
        client_cert=str(pki.supervisor_cert),
        client_key=str(pki.supervisor_key),
    )


def workdir_volumes(ns: str, count: int) -> str:
    """``count`` hostPath PersistentVolumes of a StorageClass named after ``ns`` for the
    sandboxes' workdir claims (the test cluster has no provisioner); returns the class.
    :func:`delete_workdir_volumes` removes them and their directories."""
    cls = f"{ns}-workdir"
    for i in range(count):
        kc_apply(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"{cls}-{i}", "labels": {"openshell-test": ns}},
                "spec": {
                    "capacity": {"storage": "64Mi"},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": cls,
                    "hostPath": {"path": str(Path(V["K8S_DATA"]) / "pv" / cls / str(i)), "type": "DirectoryOrCreate"},
                },
            }
        )
    return cls


def delete_workdir_volumes(ns: str) -> None:
    kc("delete", "pv", "-l", f"openshell-test={ns}", "--wait=false", check=False)
    shutil.rmtree(Path(V["K8S_DATA"]) / "pv" / f"{ns}-workdir", ignore_errors=True)


def create_namespace(ns: str) -> None:
    """Create ``ns`` and wait for its ``default`` ServiceAccount (pods are refused until
    the controller-manager made it, which takes a moment on a fresh cluster)."""
    kc("create", "namespace", ns)
    wait_until(f"serviceaccount {ns}/default", lambda: kc("get", "serviceaccount", "default", "-n", ns, check=False).returncode == 0, timeout=60)


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    ns = f"osh-test-{uuid.uuid4().hex[:8]}"
    create_namespace(ns)
    workdir_volumes(ns, 6)  # the driver tests' sandboxes keep /sandbox on a claim (stop/start)
    try:
        yield ns
    finally:
        kc("delete", "namespace", ns, "--wait=true", check=False, timeout=300)
        delete_workdir_volumes(ns)


def test_node_is_ready() -> None:
    node = kc_json("get", "node", V["K8S_NODE_NAME"])
    conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conds["Ready"] == "True", node["status"]["conditions"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == V["K8S_VERSION"]
    addrs = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addrs["InternalIP"] == V["K8S_NODE_IP"]


def test_pod_from_a_locally_imported_image_runs(namespace: str, test_image: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hello", "namespace": namespace},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "c", "image": test_image, "imagePullPolicy": "Never", "command": ["/bin/sh", "-c", "echo hello-from-k8s; exec sleep 3600"]}
            ],
        },
    }
    kc_apply(pod)

    wait_until("pod hello running", lambda: kc_json("get", "pod", "hello", "-n", namespace)["status"].get("phase") == "Running")
    assert "hello-from-k8s" in wait_until("log line", lambda: kc("logs", "hello", "-n", namespace, check=False).stdout)
    ip = kc_json("get", "pod", "hello", "-n", namespace)["status"]["podIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(V["K8S_POD_CIDR"]), ip
    kc("delete", "pod", "hello", "-n", namespace, "--wait=true")


def test_sandbox_resource_is_served() -> None:
    out = kc("api-resources", "--api-group=agents.x-k8s.io", "-o", "name").stdout.split()
    assert "sandboxes.agents.x-k8s.io" in out


def test_controller_turns_a_sandbox_into_a_pod(namespace: str, test_image: str) -> None:
    sandbox = {
        "apiVersion": "agents.x-k8s.io/v1beta1",
        "kind": "Sandbox",
        "metadata": {"name": "plain", "namespace": namespace},
        "spec": {
            "podTemplate": {
                "metadata": {"labels": {"app": "plain"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "c", "image": test_image, "imagePullPolicy": "Never", "command": ["/bin/sh", "-c", "exec sleep 3600"]}],
                },
            }
        },
    }
    kc_apply(sandbox)

    def pod_running() -> bool:
        pods = kc_json("get", "pods", "-n", namespace, "-l", "app=plain")["items"]
        return any(p["status"].get("phase") == "Running" for p in pods)

    wait_until("the Sandbox's pod running", pod_running)
    kc("delete", "sandbox", "plain", "-n", namespace, "--wait=true")
    wait_until("the pod gone with its Sandbox", lambda: not kc_json("get", "pods", "-n", namespace, "-l", "app=plain")["items"])


def test_kubernetes_driver_lifecycle(namespace: str, test_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from openshell_driver_kubernetes.driver import KubernetesDriver, object_name

    monkeypatch.setenv("OPENSHELL_K8S_KUBECONFIG", str(kubeconfig()))
    monkeypatch.setenv("OPENSHELL_K8S_SANDBOX_IMAGE", test_image)
    monkeypatch.setenv("OPENSHELL_K8S_RUNTIME_IMAGE", test_image)
    monkeypatch.setenv("OPENSHELL_K8S_SANDBOX_IMAGE_PULL_POLICY", "Never")
    monkeypatch.setenv("OPENSHELL_K8S_WORKDIR_SIZE", "64Mi")
    monkeypatch.setenv("OPENSHELL_K8S_WORKDIR_STORAGE_CLASS", f"{namespace}-workdir")
    drv = KubernetesDriver(driver_context(tmp_path), namespace=namespace)
    sid = str(uuid.uuid4())
    name = object_name(sid)
    seen: list[str] = []
    events: list[tuple[str, str, str, dict[str, str]]] = []
    drv.event_sink = lambda s, kind, reason, message, meta: events.append((s, reason, message, dict(meta))) if s == sid else None
    watcher = threading.Thread(target=lambda: seen.extend(st.phase for s, st in drv.watch() if s == sid), daemon=True)
    watcher.start()
    try:
        assert drv.sandboxes.version == "v1beta1"
        record = {"id": sid, "name": "drv test", "workspace": "default", "secret": "ab" * 32, "netns_index": 7}
        drv.create({**record, "spec": {"resources": {"limits": {"cpu": "0.5", "memory": "64Mi"}}}})
        # the supervisor's config Secret, owned by the Sandbox object
        secret = kc_json("get", "secret", str(name), "-n", namespace)
        assert set(secret["data"]) == {"supervisor.json", "ca.pem", "client.pem", "client.key"}
        assert secret["metadata"]["ownerReferences"][0]["kind"] == "Sandbox"
        pod = wait_until("the driver's pod running", lambda: _running_pod(namespace, str(name)))
        labels = pod["metadata"]["labels"]
        assert labels["openshell.io/sandbox-id"] == sid
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        limits = spec["containers"][0]["resources"]["limits"]
        assert limits["cpu"] == "500m" and limits["memory"] == str(64 * 1024 * 1024)
        # busybox has no python3: the supervisor cannot start, and the status says why
        failed = wait_until("ERROR with the supervisor's reason", lambda: (st := drv.status(sid)).phase == "ERROR" and st, timeout=90)
        assert "needs python3 3.11" in failed.reason, failed.reason
        # Kubernetes events about its pod reach the gateway's event sink (WatchSandbox, `sandbox logs`)
        wait_until("a Started event", lambda: any(r == "Started" for _, r, _, _ in events), timeout=60)
        started = [(m, meta) for _, r, m, meta in events if r == "Started"]
        assert all(m.startswith("Pod: ") and meta.get("source") == "kubernetes" for m, meta in started)
        assert any(r == "SandboxObjectCreated" for _, r, _, _ in events)
        drv.stop(sid)  # blocking: the pod is gone on return
        assert drv.status(sid).phase == "STOPPED"
        assert kc("get", "pod", str(name), "-n", namespace, check=False).returncode != 0
        drv.start({"id": sid})
        wait_until("the pod back after start", lambda: _running_pod(namespace, str(name)))
        drv.delete(sid)
        drv.delete(sid)  # idempotent
        wait_until("the Sandbox gone", lambda: drv.sandboxes.get(str(name)) is None)
        assert kc("get", "secret", str(name), "-n", namespace, check=False).returncode != 0
        assert drv.status(sid).phase == "ERROR"
        wait_until("watch saw the stop", lambda: "STOPPED" in seen, timeout=30)
        assert "PROVISIONING" in seen
    finally:
        drv.close()
        drv.delete(sid)


def test_driver_fails_clearly_when_the_crd_is_not_served() -> None:
    from kubernetes import config
    from openshell_driver_kubernetes.sandbox_api import CrdNotServed, SandboxApi

    api = config.new_client_from_config(config_file=str(kubeconfig()))
    assert SandboxApi(api, "default").version == "v1beta1"
    # the same discovery, for a group this cluster does not serve
    with pytest.raises(CrdNotServed, match="install the agent-sandbox CRDs"):
        _ = SandboxApi(api, "default", group="absent.example.test").version


def _running_pod(namespace: str, name: str) -> dict[str, Any] | None:
    out = kc("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    pod = json.loads(out.stdout)
    return pod if pod["status"].get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp") else None


def test_sandbox_watch_resumes_without_losing_changes(namespace: str, test_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each server-side watch lasts one second here, so changes land across many re-opened
    watches; every one of them still arrives, in order, once."""
    import openshell_driver_kubernetes.sandbox_api as sandbox_api
    from kubernetes import config

    monkeypatch.setattr(sandbox_api, "WATCH_SECONDS", 1)
    api = sandbox_api.SandboxApi(config.new_client_from_config(config_file=str(kubeconfig())), namespace)
    stop = threading.Event()
    seen: list[tuple[str, str]] = []
    selector = "openshell.test/watch=1"

    def follow() -> None:
        for kind, obj in api.watch(stop, label_selector=selector):
            seen.append((kind, obj["metadata"]["name"]))

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    spec = {
        "podTemplate": {
            "spec": {"containers": [{"name": "c", "image": test_image, "imagePullPolicy": "Never", "command": ["/bin/sh", "-c", "exec sleep 3600"]}]}
        },
        "operatingMode": "Suspended",
    }
    names = [f"w{i}" for i in range(3)]
    try:
        for name in names:
            api.create(name, spec, {"openshell.test/watch": "1"})
            time.sleep(1.5)  # let the current watch expire and be re-opened between changes
        for name in names:
            assert api.delete(name)
            time.sleep(1.5)
        wait_until("every delete seen", lambda: sum(1 for k, _ in seen if k == "DELETED") >= len(names), timeout=60)
    finally:
        stop.set()
        for name in names:
            api.delete(name)
    added = [n for k, n in seen if k == "ADDED"]
    deleted = [n for k, n in seen if k == "DELETED"]
    assert added == names and deleted == names
