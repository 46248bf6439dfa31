"""The Helm chart (deploy/helm/openshell): `helm lint` passes and `helm template`
renders, with default and non-default values, objects with the properties the
deployment relies on (one gateway with a volume and mTLS /healthz probes, no API
token in sandbox pods, least-privilege RBAC, the PKI hook, the NetworkPolicy).

Uses the pinned helm that scripts/k8s/build.sh builds; skipped when it is absent.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from k8s_env import CHART, helm

HELM = helm()
pytestmark = pytest.mark.skipif(HELM is None, reason="helm not built: run scripts/k8s/build.sh helm (or set OPENSHELL_HELM)")

NS = "osh"
Obj = dict[str, Any]


def render(*sets: str, release: str = "t", extra: tuple[str, ...] = ()) -> list[Obj]:
    argv = [str(HELM), "template", release, str(CHART), "--namespace", NS, *extra]
    for s in sets:
        argv += ["--set", s]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(objs: list[Obj], kind: str, pred: Callable[[Obj], bool] = lambda o: True) -> Obj:
    found = [o for o in objs if o["kind"] == kind and pred(o)]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def gateway_container(objs: list[Obj]) -> Obj:
    sts = one(objs, "StatefulSet")
    return next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway")


def env_of(container: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_helm_lint_passes_strict() -> None:
    out = subprocess.run([str(HELM), "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


def test_lint_with_non_default_values() -> None:
    argv = [str(HELM), "lint", "--strict", str(CHART), "--set", "sandbox.namespace=agents,persistence.enabled=false,service.type=NodePort"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_render_has_every_object() -> None:
    kinds = sorted({o["kind"] for o in render()})
    assert kinds == sorted(["ConfigMap", "Job", "NetworkPolicy", "Role", "RoleBinding", "Service", "ServiceAccount", "StatefulSet"])


def test_gateway_statefulset_one_replica_with_volume_and_probes() -> None:
    objs = render()
    sts = one(objs, "StatefulSet")
    assert sts["spec"]["replicas"] == 1
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"]  # "" = the cluster's default class
    c = gateway_container(objs)
    assert {"name": "state", "mountPath": "/var/lib/openshell"} in c["volumeMounts"]
    assert "--state-dir=/var/lib/openshell" in c["args"] and "--driver=kubernetes" in c["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        cmd = c[probe]["exec"]["command"]
        assert cmd[0] == "openshell-healthz" and "/var/lib/openshell/pki" in cmd
    # the probe really asks /healthz with the client certificate
    probe_src = (CHART.parents[2] / "deploy" / "docker" / "gateway" / "openshell-healthz").read_text()
    assert '"/healthz"' in probe_src and "load_cert_chain" in probe_src
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_service_selects_the_gateway_pod() -> None:
    objs = render()
    sts = one(objs, "StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    svc = one(objs, "Service", lambda o: o["spec"].get("clusterIP") != "None")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0]["port"] == 8080
    assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "gateway"


def test_sandbox_pods_get_no_api_token() -> None:
    objs = render()
    sa = one(objs, "ServiceAccount", lambda o: o["metadata"]["name"] == "t-openshell-sandbox")
    assert sa["automountServiceAccountToken"] is False
    assert env_of(gateway_container(objs))["OPENSHELL_K8S_SANDBOX_SERVICE_ACCOUNT"] == "t-openshell-sandbox"


def test_driver_role_is_limited_to_what_the_driver_uses() -> None:
    objs = render()
    role = one(objs, "Role", lambda o: o["metadata"]["name"] == "t-openshell-driver")
    grants = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("agents.x-k8s.io", "sandboxes", "create") in grants
    assert ("agents.x-k8s.io", "sandboxes", "delete") in grants
    assert ("agents.x-k8s.io", "sandboxes/status", "get") in grants
    assert ("", "pods", "get") in grants and ("", "events", "watch") in grants
    resources = {r for _, r, _ in grants}
    assert resources <= {"sandboxes", "sandboxes/status", "pods", "events", "secrets"}
    assert "*" not in {v for *_, v in grants}
    # each sandbox's config Secret is written and deleted, never read back (no other Secret can be read)
    assert {v for g, r, v in grants if r == "secrets"} == {"create", "delete"}
    assert {v for g, r, v in grants if r == "pods"} == {"get"}  # no pods/exec, no create
    rb = one(objs, "RoleBinding", lambda o: o["metadata"]["name"] == "t-openshell-driver")
    assert rb["roleRef"]["name"] == "t-openshell-driver"
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "t-openshell-gateway", "namespace": NS}]
    sts = one(objs, "StatefulSet")
    assert sts["spec"]["template"]["spec"]["serviceAccountName"] == "t-openshell-gateway"


def test_pki_job_is_a_pre_install_hook_making_the_mounted_secrets() -> None:
    objs = render()
    job = one(objs, "Job")
    ann = job["metadata"]["annotations"]
    assert "pre-install" in ann["helm.sh/hook"].split(",")
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    sts = one(objs, "StatefulSet")
    secret_vol = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "pki")
    assert secret_vol["secret"]["secretName"] == env["PKI_SECRET"] == "t-openshell-pki"
    assert env["CLIENT_SECRET"] == "t-openshell-client"
    names = env["SERVER_NAMES"].split(",")
    # the Service's names, and the pod's host name and FQDN (without them the gateway re-issues the certificate)
    assert "t-openshell.osh.svc" in names and "t-openshell-0" in names
    assert "t-openshell-0.t-openshell-headless.osh.svc.cluster.local" in names
    # the Job's own RBAC: Secrets only, named ones for get/update; hooks created before the Job
    role = one(objs, "Role", lambda o: o["metadata"]["name"] == "t-openshell-pki")
    assert {r for rule in role["rules"] for r in rule["resources"]} == {"secrets"}
    named = [rule for rule in role["rules"] if "get" in rule["verbs"]]
    assert named and all(set(rule["resourceNames"]) == {"t-openshell-pki", "t-openshell-client"} for rule in named)
    for kind in ("ServiceAccount", "Role", "RoleBinding", "ConfigMap"):
        hook = one(objs, kind, lambda o: o["metadata"]["name"] == "t-openshell-pki")
        assert int(hook["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(ann["helm.sh/hook-weight"])
    cm = one(objs, "ConfigMap")
    assert "ensure_pki" in cm["data"]["make-pki.py"]


def test_network_policy_lets_only_the_gateway_reach_sandboxes() -> None:
    objs = render()
    np_ = one(objs, "NetworkPolicy")
    assert np_["spec"]["policyTypes"] == ["Ingress"]
    selected = np_["spec"]["podSelector"]["matchLabels"]
    # the driver labels sandbox pods with exactly what the policy selects
    sandbox_labels = json.loads(env_of(gateway_container(objs))["OPENSHELL_K8S_SANDBOX_LABELS"])
    assert all(sandbox_labels.get(k) == v for k, v in selected.items())
    (rule,) = np_["spec"]["ingress"]
    (peer,) = rule["from"]
    sts = one(objs, "StatefulSet")
    gw_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert all(gw_labels.get(k) == v for k, v in peer["podSelector"]["matchLabels"].items())
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NS}
    assert "ports" not in rule or rule["ports"]


def test_non_default_values() -> None:
    objs = render(
        "sandbox.namespace=agents",
        "persistence.storageClass=fast",
        "persistence.size=5Gi",
        "image.gateway.tag=9.9.9",
        "image.sandbox.repository=example/sb",
        "image.sandbox.tag=2",
        "service.type=NodePort",
        "service.nodePort=30080",
        "gateway.port=9443",
        "sandbox.podLabels.team=a",
        release="prod",
    )
    sts = one(objs, "StatefulSet")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    c = gateway_container(objs)
    assert c["image"] == "openshell/gateway:9.9.9"
    assert c["ports"][0]["containerPort"] == 9443 and "--port=9443" in c["args"]
    env = env_of(c)
    assert env["OPENSHELL_K8S_NAMESPACE"] == "agents"
    assert env["OPENSHELL_K8S_SANDBOX_IMAGE"] == "example/sb:2"
    assert json.loads(env["OPENSHELL_K8S_SANDBOX_LABELS"])["team"] == "a"
    # sandbox-side objects live in the sandbox namespace; the RoleBinding names the gateway's namespace
    for kind in ("Role", "RoleBinding", "NetworkPolicy"):
        obj = one(objs, kind, lambda o: o["metadata"]["name"].endswith(("-driver", "-sandboxes")))
        assert obj["metadata"]["namespace"] == "agents"
    sa = one(objs, "ServiceAccount", lambda o: o["metadata"]["name"] == "prod-openshell-sandbox")
    assert sa["metadata"]["namespace"] == "agents"
    rb = one(objs, "RoleBinding", lambda o: o["metadata"]["name"] == "prod-openshell-driver")
    assert rb["subjects"][0]["namespace"] == NS
    svc = one(objs, "Service", lambda o: o["spec"].get("clusterIP") != "None")
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["nodePort"] == 30080
    assert svc["spec"]["ports"][0]["port"] == 8080


def test_persistence_off_and_network_policy_off() -> None:
    objs = render("persistence.enabled=false", "networkPolicy.enabled=false")
    sts = one(objs, "StatefulSet")
    assert "volumeClaimTemplates" not in sts["spec"]
    state = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "state")
    assert state == {"name": "state", "emptyDir": {}}
    assert not [o for o in objs if o["kind"] == "NetworkPolicy"]
    objs = render("persistence.storageClass=-")
    assert one(objs, "StatefulSet")["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == ""


def test_sandbox_workdir_claims_and_the_supervisors_gateway_address() -> None:
    env = env_of(gateway_container(render()))
    assert env["OPENSHELL_K8S_WORKDIR_SIZE"] == "1Gi" and env["OPENSHELL_K8S_WORKDIR_STORAGE_CLASS"] == ""
    assert env["OPENSHELL_K8S_GATEWAY_ENDPOINT"] == f"t-openshell.{NS}.svc:8080"
    assert env["OPENSHELL_K8S_GATEWAY_IP"] == "$(T_OPENSHELL_SERVICE_HOST)"  # the Service's link variable
    assert env["OPENSHELL_K8S_RUNTIME_IMAGE"].endswith("openshell/gateway:0.1.0")
    env = env_of(gateway_container(render("sandbox.workdir.size=", "sandbox.workdir.storageClass=fast")))
    assert env["OPENSHELL_K8S_WORKDIR_SIZE"] == "" and env["OPENSHELL_K8S_WORKDIR_STORAGE_CLASS"] == "fast"
