"""The ``Sandbox`` custom resource (group ``agents.x-k8s.io``) through the official client.

One job: create, read, patch, delete, list and watch ``Sandbox`` objects of one
namespace, at the version the API server prefers, with a timeout on every call.
Objects are plain dicts (the API's JSON). Errors:

- :class:`CrdNotServed`: the cluster does not serve the group (the CRD or the
  controller is not installed); its message says what to install.
- ``kubernetes.client.ApiException`` for any other API error (status, reason).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, cast

from kubernetes import client, watch
from kubernetes.client import ApiException

GROUP = "agents.x-k8s.io"
PLURAL = "sandboxes"
KIND = "Sandbox"
#: seconds for one API call (a watch's long poll is WATCH_SECONDS, plus this)
API_TIMEOUT = 15.0
#: seconds the server keeps one watch open before we re-open it at the last resourceVersion
WATCH_SECONDS = 60


class CrdNotServed(RuntimeError):
    """The API server does not serve ``agents.x-k8s.io`` Sandboxes."""


def served_version(api: client.ApiClient, timeout: float = API_TIMEOUT, group: str = GROUP) -> str:
    """The version of ``group`` (``agents.x-k8s.io``) the server prefers, e.g. ``"v1beta1"``.

    :raises CrdNotServed: the group is not served (CRDs not installed).
    """
    groups = client.ApisApi(api).get_api_versions(_request_timeout=timeout)
    for served in groups.groups or []:
        if served.name == group:
            if served.preferred_version is not None:
                return str(served.preferred_version.version)
            return str(served.versions[0].version)
    raise CrdNotServed(
        f"this cluster does not serve the {KIND} resource ({group}); install the agent-sandbox CRDs and controller "
        "(kubernetes-sigs/agent-sandbox; scripts/k8s/start.sh does for the test cluster)"
    )


class SandboxApi:
    """``Sandbox`` objects of one namespace.

    :param api: a configured ``kubernetes.client.ApiClient``.
    :param namespace: where the objects live.
    :param version: the API version; default: :func:`served_version` on first use.
    :param group: the API group (another only in tests).
    """

    def __init__(self, api: client.ApiClient, namespace: str, version: str | None = None, timeout: float = API_TIMEOUT, group: str = GROUP) -> None:
        self.api = api
        self.group = group
        self.namespace = namespace
        self.timeout = timeout
        self._version = version
        self._objects = client.CustomObjectsApi(api)

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = served_version(self.api, self.timeout, self.group)
        return self._version

    def _args(self) -> tuple[str, str, str, str]:
        return self.group, self.version, self.namespace, PLURAL

    def create(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Create ``Sandbox`` ``name`` with ``spec``; returns the stored object.

        :raises ApiException: 409 when it exists, 422 when the spec is invalid.
        """
        body = {
            "apiVersion": f"{self.group}/{self.version}",
            "kind": KIND,
            "metadata": {"name": name, "labels": dict(labels or {})},
            "spec": dict(spec),
        }
        out = cast(dict[str, Any], self._objects.create_namespaced_custom_object(*self._args(), body, _request_timeout=self.timeout))
        return out

    def get(self, name: str) -> dict[str, Any] | None:
        """The object, or None when there is none."""
        try:
            out = cast(dict[str, Any], self._objects.get_namespaced_custom_object(*self._args(), name, _request_timeout=self.timeout))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return out

    def patch_spec(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch ``spec`` into the object's spec (e.g. ``{"operatingMode": "Suspended"}``)."""
        out = cast(dict[str, Any], self._objects.patch_namespaced_custom_object(*self._args(), name, {"spec": dict(spec)}, _request_timeout=self.timeout))
        return out

    def delete(self, name: str) -> bool:
        """Delete the object (its pod goes with it); False when there was none."""
        try:
            self._objects.delete_namespaced_custom_object(*self._args(), name, propagation_policy="Foreground", _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list(self, label_selector: str = "") -> tuple[list[dict[str, Any]], str]:
        """``(objects, resourceVersion of the list)``."""
        out = cast(dict[str, Any], self._objects.list_namespaced_custom_object(*self._args(), label_selector=label_selector, _request_timeout=self.timeout))
        return list(out.get("items") or []), str(out["metadata"]["resourceVersion"])

    def watch(self, stop: threading.Event, label_selector: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(event type, object)`` until ``stop`` is set.

        Starts with one ``ADDED`` per existing object (from a list), then follows a
        watch from the list's resourceVersion. A watch that ends is re-opened at the
        last resourceVersion seen; one the server no longer can resume (410 Gone) is
        replaced by a fresh list whose objects are yielded as ``MODIFIED`` (and
        ``DELETED`` for those that vanished meanwhile), so no change is lost.
        """
        items, rv = self.list(label_selector)
        known: dict[str, dict[str, Any]] = {}
        for obj in items:
            known[obj["metadata"]["name"]] = obj
            yield "ADDED", obj
        while not stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(
                    self._objects.list_namespaced_custom_object,
                    *self._args(),
                    label_selector=label_selector,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_SECONDS,
                    _request_timeout=WATCH_SECONDS + self.timeout,
                ):
                    if stop.is_set():
                        return
                    kind, obj = ev["type"], ev["object"]
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise ApiException(status=410, reason="Gone")
                        raise ApiException(status=obj.get("code", 500), reason=str(obj.get("message", "watch error")))
                    rv = obj["metadata"]["resourceVersion"]
                    if kind == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    if kind == "DELETED":
                        known.pop(name, None)
                    else:
                        known[name] = obj
                    yield kind, obj
            except ApiException as exc:
                if exc.status != 410:
                    raise
                items, rv = self.list(label_selector)
                fresh = {o["metadata"]["name"]: o for o in items}
                for name, obj in list(known.items()):
                    if name not in fresh:
                        known.pop(name)
                        yield "DELETED", obj
                for name, obj in fresh.items():
                    known[name] = obj
                    yield "MODIFIED", obj
            finally:
                w.stop()
