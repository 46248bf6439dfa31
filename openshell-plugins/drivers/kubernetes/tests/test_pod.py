"""A sandbox pod runs the supervisor with only what it needs; its config travels in a Secret."""

from __future__ import annotations

import base64
import json

from openshell_driver_kubernetes.pod import CAPABILITIES, CONFIG_DIR, SSH_PORT, config_secret, pod_template, supervisor_config

RECORD = {"id": "abc", "name": "demo", "secret": b"\x01\x02", "netns_index": 3, "spec": {"resources": {"limits": {"memory": "1Gi"}}}}


def _template(**kw: object) -> dict:
    args = dict(image="img:1", runtime_image="gw:1", pull_policy="Never", secret="openshell-abc", labels={"a": "b"}, resources={})
    args.update(kw)
    return pod_template(**args)  # type: ignore[arg-type]


def test_supervisor_config_points_at_the_mounted_secret_and_listens_on_the_pod_ip() -> None:
    cfg = supervisor_config(RECORD, "https://gw.ns.svc:8080", {"policy:opa": "m"})
    assert cfg["secret"] == "0102" and cfg["netns_index"] == 3 and cfg["container"] is True
    assert cfg["gateway_endpoint"] == "https://gw.ns.svc:8080"
    assert cfg["ca_cert"].startswith(CONFIG_DIR) and cfg["client_key"].startswith(CONFIG_DIR)
    assert cfg["ssh_socket"] == f"tcp://:{SSH_PORT}"  # no host: OPENSHELL_POD_IP
    assert cfg["resources"] == {"limits": {"memory": "1Gi"}} and cfg["plugins"] == {"policy:opa": "m"}


def test_config_secret_is_owned_by_the_sandbox_and_holds_every_file() -> None:
    owner = {"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox", "name": "openshell-abc", "uid": "u1"}
    s = config_secret("openshell-abc", "ns", {"k": 1}, {"client.key": b"KEY"}, owner, {"l": "v"})
    assert s["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert json.loads(base64.b64decode(s["data"]["supervisor.json"])) == {"k": 1}
    assert base64.b64decode(s["data"]["client.key"]) == b"KEY"


def test_pod_runs_the_supervisor_as_process_1_with_the_drivers_capabilities_only() -> None:
    spec = _template()["spec"]
    (c,) = spec["containers"]
    assert c["command"][-1] == f"{CONFIG_DIR}/supervisor.json" and "-m openshell.supervisor" in c["command"][2]
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": CAPABILITIES}
    assert "privileged" not in sc and sc["runAsUser"] == 0
    # no API token and no other Service's address reaches a sandbox
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts[CONFIG_DIR]["readOnly"] and "/.openshell" in mounts
    secret_vol = next(v for v in spec["volumes"] if v["name"] == "openshell-config")
    assert secret_vol["secret"] == {"secretName": "openshell-abc", "defaultMode": 0o400}
    env = {e["name"]: e for e in c["env"]}
    assert env["OPENSHELL_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    (init,) = spec["initContainers"]
    assert init["image"] == "gw:1" and init["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_gateway_name_is_pinned_only_when_its_ip_is_known() -> None:
    assert "hostAliases" not in _template(gateway_host="gw.ns.svc")["spec"]
    spec = _template(gateway_host="gw.ns.svc", gateway_ip="10.0.0.9")["spec"]
    assert spec["hostAliases"] == [{"ip": "10.0.0.9", "hostnames": ["gw.ns.svc"]}]


def test_a_workdir_claim_replaces_the_state_emptydir() -> None:
    from openshell_driver_kubernetes.pod import STATE_VOLUME, workdir_claim_template

    vols = {v["name"]: v for v in _template()["spec"]["volumes"]}
    assert vols[STATE_VOLUME] == {"name": STATE_VOLUME, "emptyDir": {}}
    vols = {v["name"] for v in _template(workdir_claim=True)["spec"]["volumes"]}
    assert STATE_VOLUME not in vols  # the controller adds the claim's volume under this name
    tmpl = workdir_claim_template("1Gi", "fast")
    assert tmpl == {
        "metadata": {"name": STATE_VOLUME},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "fast"},
    }
    assert "storageClassName" not in workdir_claim_template("1Gi")["spec"]
