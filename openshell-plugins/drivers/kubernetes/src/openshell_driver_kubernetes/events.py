"""Forward Kubernetes events about sandbox objects and their pods as platform events.

One job: watch ``core/v1`` events of one namespace and, for each about a
``Sandbox`` or ``Pod`` named ``openshell-<sandbox id>``, call
``report(sandbox_id, reason, message, warning)``. Events that existed before
the watch started are not forwarded (they were forwarded by an earlier run, or
are history). A watch that ends is re-opened at the last resourceVersion; after
``410 Gone`` it starts again from a fresh list (events in between are lost:
Kubernetes events are best-effort anyway). Messages are cut to 500 characters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client, watch
from kubernetes.client import ApiException

log = logging.getLogger(__name__)

PREFIX = "openshell-"
KINDS = ("Pod", "Sandbox")
WATCH_SECONDS = 30
API_TIMEOUT = 15.0
MAX_MESSAGE = 500
#: seconds between attempts after an API error
RETRY = 2.0

Report = Callable[[str, str, str, bool], None]


def sandbox_of(event: Mapping[str, Any], is_id: Callable[[str], bool]) -> str | None:
    """The sandbox id an event is about, or None (not ours)."""
    obj = event.get("involvedObject") or event.get("involved_object") or {}
    if obj.get("kind") not in KINDS:
        return None
    name = str(obj.get("name") or "")
    if not name.startswith(PREFIX):
        return None
    sid = name[len(PREFIX) :]
    return sid if is_id(sid) else None


class EventForwarder:
    """A daemon thread forwarding a namespace's events (see the module doc)."""

    def __init__(self, api: client.ApiClient, namespace: str, report: Report, is_id: Callable[[str], bool]) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.report = report
        self.is_id = is_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"k8s-events-{namespace}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    listed = self.core.list_namespaced_event(self.namespace, _request_timeout=API_TIMEOUT)
                    rv = str(listed.metadata.resource_version if listed.metadata else "")
                rv = self._follow(rv)
            except ApiException as exc:
                if exc.status == 410:
                    rv = ""
                    continue
                log.warning("kubernetes events of %s: %s %s", self.namespace, exc.status, exc.reason)
                self._stop.wait(RETRY)
            except Exception as exc:  # noqa: BLE001 - keep forwarding after a network error
                log.warning("kubernetes events of %s: %s", self.namespace, exc)
                self._stop.wait(RETRY)

    def _follow(self, rv: str) -> str:
        w = watch.Watch()
        try:
            for ev in w.stream(
                self.core.list_namespaced_event,
                self.namespace,
                resource_version=rv,
                timeout_seconds=WATCH_SECONDS,
                _request_timeout=WATCH_SECONDS + API_TIMEOUT,
            ):
                if self._stop.is_set():
                    break
                if ev["type"] == "ERROR":
                    raw = ev.get("raw_object") or {}
                    raise ApiException(status=int(raw.get("code", 500)), reason=str(raw.get("message", "watch error")))
                obj = ev["object"]
                rv = obj.metadata.resource_version or rv
                if ev["type"] != "ADDED" and ev["type"] != "MODIFIED":
                    continue
                data = client.ApiClient().sanitize_for_serialization(obj)
                sid = sandbox_of(data, self.is_id)
                if sid is None:
                    continue
                kind = str((data.get("involvedObject") or {}).get("kind"))
                message = f"{kind}: {str(data.get('message') or '')[:MAX_MESSAGE]}"
                self.report(sid, str(data.get("reason") or "Event"), message, data.get("type") == "Warning")
        finally:
            w.stop()
        return rv
