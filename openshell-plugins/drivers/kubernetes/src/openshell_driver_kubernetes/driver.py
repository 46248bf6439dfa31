"""The ``kubernetes`` compute driver: one ``Sandbox`` object (agents.x-k8s.io) per sandbox.

The agent-sandbox controller turns each object into one pod. This driver makes,
watches, suspends/resumes (stop/start) and deletes the objects; it needs only
the Role the Helm chart grants (sandboxes, sandboxes/status, pods get, events).

Configuration (environment; the chart sets it in the gateway pod):

- ``OPENSHELL_K8S_NAMESPACE``: where Sandbox objects are made (default: the
  pod's own namespace in a cluster, else ``default``);
- ``OPENSHELL_K8S_KUBECONFIG`` (or ``KUBECONFIG``): outside a cluster, the
  kubeconfig to use; inside one, the pod's service account is used;
- ``OPENSHELL_K8S_SANDBOX_IMAGE`` / ``..._IMAGE_PULL_POLICY``: the default image;
- ``OPENSHELL_K8S_RUNTIME_IMAGE``: the image whose ``/opt/openshell/site`` is
  copied into each pod to run the supervisor (the gateway's image);
- ``OPENSHELL_K8S_GATEWAY_ENDPOINT``: ``HOST:PORT`` of the gateway's Service,
  which supervisors dial (its name is in the server certificate);
  ``OPENSHELL_K8S_GATEWAY_IP``: that Service's cluster IP, pinned in each pod's
  ``/etc/hosts`` for clusters without DNS (optional);
- ``OPENSHELL_K8S_SANDBOX_SERVICE_ACCOUNT``, ``OPENSHELL_K8S_SANDBOX_LABELS``
  (JSON object), ``OPENSHELL_K8S_SANDBOX_RESOURCES`` (JSON, a container's resources).

What a pod is made of (supervisor as process 1, its config Secret, its SSH
port): :mod:`.pod`. Kubernetes events about a sandbox's object or pod
(scheduled, pulled, started, killed, back-off, ...) are reported as platform
events (source ``kubernetes``).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client import ApiException
from openshell.plugin import ComputeDriver, DriverContext, DriverUnsupported, SandboxStatus, SshEndpoint, limits_for

from openshell_driver_kubernetes.events import EventForwarder
from openshell_driver_kubernetes.phases import phase_of, pod_ip, supervisor_failure
from openshell_driver_kubernetes.pod import CONFIG_DIR, SSH_PORT, config_secret, pod_template, secret_name, supervisor_config, workdir_claim_template
from openshell_driver_kubernetes.sandbox_api import SandboxApi

DEFAULT_IMAGE = "docker.io/openshell/sandbox:0.1.0"
DEFAULT_RUNTIME_IMAGE = "docker.io/openshell/gateway:0.1.0"
ID_LABEL = "openshell.io/sandbox-id"
NAME_LABEL = "openshell.io/sandbox-name"
WORKSPACE_LABEL = "openshell.io/workspace"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: seconds stop() waits for the pod to be gone
STOP_TIMEOUT = 120.0

_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"[^A-Za-z0-9._-]")


class ConfigError(RuntimeError):
    """The driver's environment is unusable (bad JSON, no kubeconfig); the message says which variable."""


def object_name(sandbox_id: str) -> str | None:
    """``openshell-<id>`` when ``sandbox_id`` can name a Kubernetes object, else None."""
    return f"openshell-{sandbox_id}" if _ID_RE.match(sandbox_id or "") else None


def label_value(text: str) -> str:
    """``text`` made a valid label value (63 characters of ``[A-Za-z0-9._-]``, alphanumeric ends)."""
    return _LABEL_VALUE_RE.sub("-", text)[:63].strip("-._")


def _json_env(name: str, default: Any) -> Any:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} is not valid JSON: {exc}") from exc


def api_client() -> client.ApiClient:
    """A client from the pod's service account in a cluster, else from the kubeconfig."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("OPENSHELL_K8S_KUBECONFIG"):
        config.load_incluster_config()
        return client.ApiClient()
    path = os.environ.get("OPENSHELL_K8S_KUBECONFIG") or os.environ.get("KUBECONFIG") or None
    try:
        return config.new_client_from_config(config_file=path)
    except config.ConfigException as exc:
        raise ConfigError(f"no usable kubeconfig ({path or '~/.kube/config'}): {exc}; set OPENSHELL_K8S_KUBECONFIG") from exc


def _gateway_endpoint(ctx: DriverContext) -> tuple[str, str]:
    """``(host, "https://HOST:PORT")`` supervisors dial: ``$OPENSHELL_K8S_GATEWAY_ENDPOINT``
    (the chart: the gateway Service's name and port), else the gateway's own endpoint.

    :raises ConfigError: the variable is not ``HOST:PORT``.
    """
    raw = os.environ.get("OPENSHELL_K8S_GATEWAY_ENDPOINT", "")
    if not raw:
        from urllib.parse import urlsplit

        return urlsplit(ctx.gateway_endpoint).hostname or "", ctx.gateway_endpoint
    host, _, port = raw.removeprefix("https://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"OPENSHELL_K8S_GATEWAY_ENDPOINT must be HOST:PORT (the gateway Service's name and port), got {raw!r}")
    return host, f"https://{host}:{port}"


def _gateway_ip() -> str:
    """``$OPENSHELL_K8S_GATEWAY_IP`` when it is an IP address, else "" (no ``hostAliases``;
    the chart sets it from the Service's link variable, which a pod made before the
    Service lacks)."""
    import ipaddress

    raw = os.environ.get("OPENSHELL_K8S_GATEWAY_IP", "")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return ""


def default_namespace() -> str:
    ns = os.environ.get("OPENSHELL_K8S_NAMESPACE", "")
    if ns:
        return ns
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


class KubernetesDriver(ComputeDriver):
    """Sandboxes as agent-sandbox ``Sandbox`` objects in one namespace."""

    name = "kubernetes"
    summary = "One agent-sandbox Sandbox pod per sandbox on Kubernetes; the supervisor runs in the pod"
    supports_images = True

    def __init__(self, ctx: DriverContext, api: client.ApiClient | None = None, namespace: str | None = None) -> None:
        super().__init__(ctx)
        self.namespace = namespace or default_namespace()
        self.image = os.environ.get("OPENSHELL_K8S_SANDBOX_IMAGE") or DEFAULT_IMAGE
        self.pull_policy = os.environ.get("OPENSHELL_K8S_SANDBOX_IMAGE_PULL_POLICY") or "IfNotPresent"
        self.runtime_image = os.environ.get("OPENSHELL_K8S_RUNTIME_IMAGE") or DEFAULT_RUNTIME_IMAGE
        self.gateway_host, self.gateway_endpoint = _gateway_endpoint(ctx)
        self.gateway_ip = _gateway_ip()
        self.workdir_size = os.environ.get("OPENSHELL_K8S_WORKDIR_SIZE", "")
        self.workdir_class = os.environ.get("OPENSHELL_K8S_WORKDIR_STORAGE_CLASS", "")
        if self.workdir_size:
            try:
                limits_for({"limits": {"disk": self.workdir_size}})  # the same size syntax as --disk
            except ValueError as exc:
                raise ConfigError(f"OPENSHELL_K8S_WORKDIR_SIZE {self.workdir_size!r} is not a size like 1Gi: {exc}") from exc
        self.service_account = os.environ.get("OPENSHELL_K8S_SANDBOX_SERVICE_ACCOUNT", "")
        labels = _json_env("OPENSHELL_K8S_SANDBOX_LABELS", {})
        resources = _json_env("OPENSHELL_K8S_SANDBOX_RESOURCES", {})
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ConfigError("OPENSHELL_K8S_SANDBOX_LABELS must be a JSON object of strings")
        if not isinstance(resources, dict):
            raise ConfigError("OPENSHELL_K8S_SANDBOX_RESOURCES must be a JSON object")
        self.pod_labels: dict[str, str] = labels
        self.resources: dict[str, Any] = resources
        self.sandboxes = SandboxApi(api or api_client(), self.namespace)
        self.core = client.CoreV1Api(self.sandboxes.api)
        from openshell.plugin import supervisor_entry_points

        # Pods run the runtime image's site, the same packages as this gateway's image.
        self._plugins = supervisor_entry_points()
        self._stop = threading.Event()
        # Kubernetes events about our Sandboxes and pods reach WatchSandbox / `sandbox logs`.
        self._events = EventForwarder(self.sandboxes.api, self.namespace, self._forward_event, lambda sid: object_name(sid) is not None)
        self._events.start()

    def _forward_event(self, sandbox_id: str, reason: str, message: str, warning: bool) -> None:
        self.report_event(sandbox_id, reason, message, warning=warning, source="kubernetes")

    # ------------------------------------------------------------------ objects

    def sandbox_spec(self, sandbox: Mapping[str, Any]) -> dict[str, Any]:
        """The ``Sandbox`` spec for a sandbox record (``SandboxRecord.driver_view``)."""
        spec = sandbox.get("spec") or {}
        name = object_name(str(sandbox["id"])) or ""
        template = pod_template(
            image=str(spec.get("image") or self.image),
            runtime_image=self.runtime_image,
            pull_policy=self.pull_policy,
            secret=secret_name(name),
            labels={**self.pod_labels, ID_LABEL: str(sandbox["id"])},
            resources=self._resources(sandbox),
            service_account=self.service_account,
            gateway_host=self.gateway_host,
            gateway_ip=self.gateway_ip,
            extra_env={"OPENSHELL_EXTRA_CA": f"{CONFIG_DIR}/extra-ca.pem"} if os.environ.get("OPENSHELL_EXTRA_CA") else None,
            workdir_claim=bool(self.workdir_size),
        )
        out: dict[str, Any] = {"podTemplate": template, "operatingMode": "Running"}
        if self.workdir_size:
            out["volumeClaimTemplates"] = [workdir_claim_template(self.workdir_size, self.workdir_class)]
        return out

    def _supervisor_files(self) -> dict[str, bytes]:
        """The CA, the supervisor's certificate and key (and ``$OPENSHELL_EXTRA_CA``) for its Secret.

        :raises OSError: one of them cannot be read.
        """
        files = {
            "ca.pem": Path(self.ctx.ca_cert).read_bytes(),
            "client.pem": Path(self.ctx.client_cert).read_bytes(),
            "client.key": Path(self.ctx.client_key).read_bytes(),
        }
        extra_ca = os.environ.get("OPENSHELL_EXTRA_CA")
        if extra_ca:
            files["extra-ca.pem"] = Path(extra_ca).read_bytes()
        return files

    def _resources(self, sandbox: Mapping[str, Any]) -> dict[str, Any]:
        """The chart's default container resources; a sandbox's own ``--cpu``/``--memory``
        become its limits and requests (so the pod is scheduled for what it may use).

        :raises QuantityError: the record's resources do not parse (the gateway validated them).
        """
        res: dict[str, Any] = {k: dict(v) for k, v in self.resources.items() if isinstance(v, Mapping)}
        given = (((sandbox.get("spec") or {}).get("resources")) or {}).get("limits") or {}
        if not given:
            return res
        limits = limits_for({"limits": given})
        for key, value in (("cpu", f"{limits.cpu_milli}m" if limits.cpu_milli else None), ("memory", str(limits.memory) if limits.memory else None)):
            if value and key in given:
                res.setdefault("limits", {})[key] = value
                res.setdefault("requests", {})[key] = value
        return res

    # ------------------------------------------------------------------ ComputeDriver

    def create(self, sandbox: Mapping[str, Any]) -> None:
        """Create the ``Sandbox`` object and its config Secret; the controller makes the
        pod (non-blocking), whose supervisor reports READY to the gateway.

        :raises CrdNotServed: the cluster has no agent-sandbox CRDs.
        :raises ApiException: the API refused it (e.g. 409: it exists); nothing is left behind.
        :raises OSError: the gateway's PKI files cannot be read.
        """
        name = object_name(str(sandbox["id"]))
        if name is None:
            raise ValueError(f"sandbox id {sandbox['id']!r} cannot name a Kubernetes object")
        labels = {
            ID_LABEL: str(sandbox["id"]),
            NAME_LABEL: label_value(str(sandbox.get("name", ""))),
            WORKSPACE_LABEL: label_value(str(sandbox.get("workspace", ""))),
        }
        files = self._supervisor_files()  # read before anything is made
        obj = self.sandboxes.create(name, self.sandbox_spec(sandbox), labels)
        owner = {
            "apiVersion": str(obj.get("apiVersion", "")),
            "kind": str(obj.get("kind", "")),
            "name": name,
            "uid": str((obj.get("metadata") or {}).get("uid", "")),
        }
        config = supervisor_config(sandbox, self.gateway_endpoint, self._plugins)
        try:
            self._put_secret(config_secret(secret_name(name), self.namespace, config, files, owner, {ID_LABEL: str(sandbox["id"])}))
        except BaseException:
            self.sandboxes.delete(name)
            raise
        self.report_event(str(sandbox["id"]), "SandboxObjectCreated", f"Sandbox {self.namespace}/{name} created")

    def _put_secret(self, body: dict[str, Any]) -> None:
        """Create the config Secret; a stale one of an earlier object of that name is
        deleted first (the Role grants create and delete on Secrets, not update)."""
        raw: Any = body  # the client sends a dict as it is (its stubs name V1Secret)
        try:
            self.core.create_namespaced_secret(self.namespace, raw, _request_timeout=self.sandboxes.timeout)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self._delete_secret(body["metadata"]["name"])
            self.core.create_namespaced_secret(self.namespace, raw, _request_timeout=self.sandboxes.timeout)

    def _delete_secret(self, name: str) -> None:
        try:
            self.core.delete_namespaced_secret(name, self.namespace, _request_timeout=self.sandboxes.timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def status(self, sandbox_id: str) -> SandboxStatus:
        name = object_name(sandbox_id)
        if name is None:
            return SandboxStatus("ERROR", "not a sandbox of this driver")
        try:
            status = phase_of(self.sandboxes.get(name))
            if status.phase != "PROVISIONING":
                return status
            # The object says nothing about the supervisor: an exited one (an image
            # without python3, a start that failed) shows only in the pod.
            failure = supervisor_failure(self._pod(name))
            return SandboxStatus("ERROR", failure) if failure else status
        except Exception as exc:  # noqa: BLE001 - the API is unreachable: say so, never raise
            return SandboxStatus("ERROR", f"Kubernetes API unreachable: {type(exc).__name__}: {str(exc)[:300]}")

    def _pod(self, name: str) -> dict[str, Any] | None:
        """The pod ``name`` as a dict, or None when there is none (yet)."""
        try:
            pod = self.core.read_namespaced_pod(name, self.namespace, _request_timeout=self.sandboxes.timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        out: dict[str, Any] = self.sandboxes.api.sanitize_for_serialization(pod)
        return out

    def delete(self, sandbox_id: str, keep_workdir: bool = False) -> None:
        """Delete the object (and so its pod). ``keep_workdir`` is not supported yet: the workdir is in the pod."""
        name = object_name(sandbox_id)
        if name is None:
            return
        self.sandboxes.delete(name)
        # Owned by the object (garbage-collected with it); removed now so no copy of the
        # supervisor's key outlives the sandbox when the collector is slow.
        self._delete_secret(secret_name(name))

    def stop(self, sandbox_id: str) -> None:
        """Suspend the Sandbox (its pod ends; the object and its workdir claim stay) and wait
        until the pod is gone.

        :raises DriverUnsupported: no object, or no workdir claim (``/sandbox`` in an
            emptyDir would be lost: refused rather than losing the files ``stop`` keeps).
        """
        name = object_name(sandbox_id)
        obj = self.sandboxes.get(name) if name else None
        if name is None or obj is None:
            raise DriverUnsupported(f"no Sandbox object for {sandbox_id}")
        if not (obj.get("spec") or {}).get("volumeClaimTemplates"):
            raise DriverUnsupported(
                "this sandbox's /sandbox is in an emptyDir, which a stopped pod loses: stop is refused; "
                "install the chart with sandbox.workdir.size set (a claim per sandbox) to stop and start sandboxes"
            )
        self.sandboxes.patch_spec(name, {"operatingMode": "Suspended"})
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                self.core.read_namespaced_pod(name, self.namespace, _request_timeout=self.sandboxes.timeout)
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(0.5)
        raise TimeoutError(f"pod {self.namespace}/{name} still exists {STOP_TIMEOUT:.0f}s after the Sandbox was suspended")

    def start(self, sandbox: Mapping[str, Any]) -> None:
        """Resume a suspended Sandbox: the controller makes its pod again."""
        name = object_name(str(sandbox["id"]))
        if name is None:
            raise ValueError(f"sandbox id {sandbox['id']!r} cannot name a Kubernetes object")
        self.sandboxes.patch_spec(name, {"operatingMode": "Running"})

    def watch(self) -> Iterator[tuple[str, SandboxStatus]]:
        """``(sandbox id, status)`` for every change of this driver's Sandbox objects (until :meth:`close`)."""
        for kind, obj in self.sandboxes.watch(self._stop, label_selector=ID_LABEL):
            sid = ((obj.get("metadata") or {}).get("labels") or {}).get(ID_LABEL)
            if sid:
                yield sid, (SandboxStatus("ERROR", "its Sandbox object is gone") if kind == "DELETED" else phase_of(obj))

    def ssh_endpoint(self, sandbox_id: str) -> SshEndpoint:
        """Where the supervisor's SSH server listens: ``SSH_PORT`` on the pod's IP, or on
        the sandbox's headless Service name while the pod has no IP yet. Only the
        gateway may connect (the chart's NetworkPolicy).

        :raises ValueError: ``sandbox_id`` cannot name a Kubernetes object.
        """
        name = object_name(sandbox_id)
        if name is None:
            raise ValueError(f"sandbox id {sandbox_id!r} cannot name a Kubernetes object")
        try:
            ip = pod_ip(self.sandboxes.get(name))
        except Exception:  # noqa: BLE001 - the API is unreachable: fall back to the stable name
            ip = ""
        return SshEndpoint(host=ip or f"{name}.{self.namespace}.svc.cluster.local", port=SSH_PORT)

    def close(self) -> None:
        self._stop.set()
        self._events.stop()
