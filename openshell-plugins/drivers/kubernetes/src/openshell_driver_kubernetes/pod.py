"""What a sandbox pod is made of: its template and the Secret that carries its supervisor's config.

One job, no I/O: :func:`pod_template` and :func:`config_secret` take plain
values and return the objects the API takes (dicts).

A sandbox pod runs the supervisor as its process 1, as the docker driver's
containers do, so the same isolation applies inside it (network namespace and
proxy, Landlock, seccomp, PID/IPC/UTS/mount namespaces):

- an init container of the **runtime image** (the gateway's image, which holds
  OpenShell in ``/opt/openshell/site``) copies that site into an ``emptyDir`` at
  ``/.openshell``, the site-packages of a virtual environment over the sandbox
  image's ``python3`` (Debian bookworm's 3.11, as the default image has), so the
  supervisor's ``python -I`` children find it; every sandbox process has
  ``/.openshell`` unmounted (the launcher's supervisor-only mounts);
- the container runs ``python3 -m openshell.supervisor`` as root with every
  capability dropped but the supervisor's own (:data:`CAPABILITIES`) and the
  runtime's seccomp profile off (the supervisor installs a stricter one on each
  sandbox process); no service-account token, no service links;
- the Secret ``openshell-<id>`` (owned by the ``Sandbox`` object, so it goes
  with it) holds ``supervisor.json``, the CA, the supervisor's client
  certificate and key, mounted 0400 root-only at :data:`CONFIG_DIR`;
- the supervisor's SSH server listens on the pod's own IP (``OPENSHELL_POD_IP``
  from the downward API), port :data:`SSH_PORT`, where the gateway dials it;
- the gateway's Service name resolves through ``hostAliases`` to its cluster IP
  when the chart gives one (clusters without DNS, like the test cluster).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: TCP port of the supervisor's SSH server in a sandbox pod
SSH_PORT = 2222
#: where the Secret with the supervisor's config is mounted (0400, root)
CONFIG_DIR = "/var/lib/openshell/config"
#: the supervisor's state directory (its workdir shows as /sandbox): the sandbox's
#: workdir claim (:func:`workdir_claim_template`), else an emptyDir
STATE_DIR = "/var/lib/openshell/state"
#: where the runtime image's OpenShell site is copied (an emptyDir; every sandbox process
#: has it unmounted, as the docker driver's runtime)
RUNTIME_DIR = "/.openshell"
#: the site inside the runtime image
RUNTIME_SITE = "/opt/openshell/site"
#: the same capabilities as the docker driver's containers (see its CAPABILITIES)
CAPABILITIES = ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SETUID", "SETGID", "SETPCAP", "CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL"]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: the runtime's site-packages inside RUNTIME_DIR: a virtual environment over the image's
#: python3, so the supervisor's children that run ``python -I`` (launcher, init) find it
RUNTIME_SITE_PACKAGES = f"{RUNTIME_DIR}/lib/python3.11/site-packages"
#: the container's command (``$0``: the config file). The sandbox image must have Debian
#: bookworm's python3 (3.11: the runtime's compiled wheels are for it); the virtual
#: environment's interpreter is a symlink to it, made on the container's first start.
SUPERVISOR_START = (
    'P=$(command -v python3) && "$P" -c "import sys; sys.exit(sys.version_info[:2] != (3, 11))" '
    '|| { echo "openshell: the sandbox image needs python3 3.11 (Debian bookworm) to run the supervisor" >&2; exit 127; }; '
    f'R={RUNTIME_DIR}; [ -e "$R/bin/python3" ] || {{ mkdir -p "$R/bin" && ln -sf "$P" "$R/bin/python3" '
    '&& printf "home = %s\ninclude-system-site-packages = true\n" "${P%/*}" > "$R/pyvenv.cfg"; } || exit 1; '
    'exec "$R/bin/python3" -m openshell.supervisor --config "$0"'
)


#: the volume of STATE_DIR; with a claim template of this name the agent-sandbox controller
#: makes a claim ``openshell-state-<object name>`` per sandbox and mounts it here
STATE_VOLUME = "openshell-state"


def workdir_claim_template(size: str, storage_class: str = "") -> dict[str, Any]:
    """The ``volumeClaimTemplates`` entry that keeps a sandbox's state (``/sandbox``) on a
    claim of its own: it outlives stop/start and pod restarts, and goes with the sandbox.

    :param size: a quantity, e.g. ``1Gi``; :param storage_class: "" for the cluster's default.
    """
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": STATE_VOLUME}, "spec": spec}


def secret_name(object_name: str) -> str:
    """The config Secret of Sandbox ``object_name`` (the same name: one Secret per sandbox)."""
    return object_name


def supervisor_config(sandbox: Mapping[str, Any], gateway_endpoint: str, plugins: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``supervisor.json`` for a sandbox record (``SandboxRecord.driver_view``).

    :param gateway_endpoint: ``https://HOST:PORT`` the supervisor dials (the gateway's Service).
    """
    secret = sandbox["secret"]
    if isinstance(secret, bytes):
        secret = secret.hex()
    return {
        "sandbox_id": str(sandbox["id"]),
        "name": str(sandbox.get("name", "")),
        "gateway_endpoint": gateway_endpoint,
        "ca_cert": f"{CONFIG_DIR}/ca.pem",
        "client_cert": f"{CONFIG_DIR}/client.pem",
        "client_key": f"{CONFIG_DIR}/client.key",
        "secret": secret,
        "netns_index": int(sandbox.get("netns_index") or 1),
        "state_dir": STATE_DIR,
        # no host: the pod's own IP (OPENSHELL_POD_IP), never the sandbox link's side
        "ssh_socket": f"tcp://:{SSH_PORT}",
        "resources": dict((sandbox.get("spec") or {}).get("resources") or {}),
        "container": True,
        "plugins": dict(plugins or {}),
    }


def config_secret(
    name: str,
    namespace: str,
    config: Mapping[str, Any],
    files: Mapping[str, bytes],
    owner: Mapping[str, str],
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """The Secret holding ``supervisor.json`` and ``files`` (``ca.pem``, ``client.pem``, ``client.key``, ...).

    :param owner: ``{"apiVersion", "kind", "name", "uid"}`` of the Sandbox object: the
        Secret is garbage-collected with it.
    """
    import base64

    data = {"supervisor.json": json.dumps(config).encode(), **files}
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [{**owner, "controller": False, "blockOwnerDeletion": False}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": meta,
        "data": {k: base64.b64encode(v).decode() for k, v in sorted(data.items())},
    }


def pod_template(
    *,
    image: str,
    runtime_image: str,
    pull_policy: str,
    secret: str,
    labels: Mapping[str, str],
    resources: Mapping[str, Any],
    service_account: str = "",
    gateway_host: str = "",
    gateway_ip: str = "",
    extra_env: Mapping[str, str] | None = None,
    workdir_claim: bool = False,
) -> dict[str, Any]:
    """The ``podTemplate`` of a sandbox's ``Sandbox`` object (see the module docstring).

    :param gateway_host: the gateway's Service name supervisors dial; with ``gateway_ip``
        it is pinned in the pod's ``/etc/hosts`` (``hostAliases``).
    :param workdir_claim: the state volume comes from the Sandbox's claim template
        (:func:`workdir_claim_template`; the controller adds it to the pod), not an emptyDir.
    """
    env = [
        {"name": "PATH", "value": PATH},
        # shared libraries the site's extension modules need and sandbox images may lack
        # (deploy/docker/build_images.py bundles them); sandbox processes get an environment
        # of their own (sandbox_env), never this one
        {"name": "LD_LIBRARY_PATH", "value": f"{RUNTIME_SITE_PACKAGES}/openshell.libs"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        # gRPC's own resolver (c-ares) may skip /etc/hosts, where hostAliases are
        {"name": "GRPC_DNS_RESOLVER", "value": "native"},
        {"name": "OPENSHELL_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        *({"name": k, "value": v} for k, v in sorted((extra_env or {}).items())),
    ]
    container: dict[str, Any] = {
        "name": "sandbox",
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": ["/bin/sh", "-c", SUPERVISOR_START, f"{CONFIG_DIR}/supervisor.json"],
        "workingDir": "/",
        "env": env,
        "resources": dict(resources),
        "ports": [{"name": "ssh", "containerPort": SSH_PORT, "protocol": "TCP"}],
        # the supervisor's last lines when it exits: what `sandbox get` shows as the reason
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsUser": 0,
            "runAsGroup": 0,
            # CAP_SYS_ADMIN is refused with allowPrivilegeEscalation: false; the supervisor
            # sets no_new_privs on every sandbox process itself (seccomp, Landlock)
            "allowPrivilegeEscalation": True,
            "capabilities": {"drop": ["ALL"], "add": list(CAPABILITIES)},
            "seccompProfile": {"type": "Unconfined"},
        },
        "volumeMounts": [
            {"name": "openshell-config", "mountPath": CONFIG_DIR, "readOnly": True},
            # writable for the supervisor's first start (the venv's interpreter link); hidden
            # from every sandbox process with the rest of /.openshell (launcher)
            {"name": "openshell-runtime", "mountPath": RUNTIME_DIR},
            {"name": STATE_VOLUME, "mountPath": STATE_DIR},
        ],
    }
    init: dict[str, Any] = {
        "name": "openshell-runtime",
        "image": runtime_image,
        "imagePullPolicy": pull_policy,
        # an init container runs again when the pod restarts; the emptyDir stays
        "command": [
            "/bin/sh",
            "-ec",
            f"S={RUNTIME_SITE_PACKAGES}; [ -d $S ] || {{ rm -rf $S.tmp; mkdir -p ${{S%/*}}; cp -a {RUNTIME_SITE} $S.tmp; mv $S.tmp $S; }}",
        ],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "openshell-runtime", "mountPath": RUNTIME_DIR}],
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "initContainers": [init],
        "containers": [container],
        "volumes": [
            {"name": "openshell-config", "secret": {"secretName": secret, "defaultMode": 0o400}},
            {"name": "openshell-runtime", "emptyDir": {}},
            *([] if workdir_claim else [{"name": STATE_VOLUME, "emptyDir": {}}]),
        ],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    if gateway_host and gateway_ip:
        pod_spec["hostAliases"] = [{"ip": gateway_ip, "hostnames": [gateway_host]}]
    return {"metadata": {"labels": dict(labels)}, "spec": pod_spec}
