"""Map a ``Sandbox`` object (and its conditions) to OpenShell's sandbox phases.

One job, no I/O: :func:`phase_of` takes the object as the API returns it (a
dict, or None when there is none) and returns a
:class:`~openshell.plugin.SandboxStatus`. READY is never reported here: the
supervisor inside the pod reports READY to the gateway itself, so a running pod
is ``PROVISIONING`` from the driver's side (as with the other drivers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openshell.plugin import SandboxStatus

#: Ready=False reasons of the agent-sandbox controller that end the sandbox
FATAL_REASONS = {"PodFailed", "PodSucceeded", "SandboxExpired", "MultiplePods"}


def conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``{type: condition}`` of ``obj.status.conditions``."""
    out: dict[str, Mapping[str, Any]] = {}
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping) and isinstance(c.get("type"), str):
            out[c["type"]] = c
    return out


def phase_of(obj: Mapping[str, Any] | None) -> SandboxStatus:
    """The phase of a ``Sandbox`` object.

    - none: ``ERROR`` (its object is gone)
    - being deleted: ``DELETING``
    - ``spec.operatingMode: Suspended``: ``STOPPED`` (stopped on request)
    - Ready=False for a reason that ends it (pod failed or exited, expired): ``ERROR``
    - otherwise (pod pending, starting or running): ``PROVISIONING``
    """
    if obj is None:
        return SandboxStatus("ERROR", "its Sandbox object is gone")
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return SandboxStatus("DELETING")
    if (obj.get("spec") or {}).get("operatingMode") == "Suspended":
        return SandboxStatus("STOPPED", "stopped on request; 'openshell sandbox start' runs it again")
    ready = conditions(obj).get("Ready")
    if ready is not None and ready.get("status") == "False" and ready.get("reason") in FATAL_REASONS:
        message = str(ready.get("message") or "")[:500]
        return SandboxStatus("ERROR", f"{ready.get('reason')}: {message}" if message else str(ready.get("reason")))
    return SandboxStatus("PROVISIONING")


def pod_ip(obj: Mapping[str, Any] | None) -> str:
    """The pod's first IP from ``status.podIPs`` ("" while there is no pod)."""
    ips = ((obj or {}).get("status") or {}).get("podIPs") or []
    return str(ips[0]) if ips else ""


def supervisor_failure(pod: Mapping[str, Any] | None, container: str = "sandbox") -> str | None:
    """Why the supervisor in a sandbox pod is not running, or None while it starts or runs.

    The supervisor is the container's process 1: once it has exited the sandbox is
    over (as a docker container's exit is), even though the kubelet restarts it. The
    message is the container's termination message (its last log lines, kept by
    ``terminationMessagePolicy: FallbackToLogsOnError``). An init container that
    failed (the runtime image lacks the site) or an image that cannot be pulled are
    failures too.
    """
    status = (pod or {}).get("status") or {}
    for init in status.get("initContainerStatuses") or []:
        term = ((init.get("lastState") or {}).get("terminated") or (init.get("state") or {}).get("terminated")) or {}
        if term and term.get("exitCode", 0) != 0:
            return f"init container {init.get('name')} exited with code {term.get('exitCode')}: {str(term.get('message') or term.get('reason') or '').strip()[-300:]}"
    for c in status.get("containerStatuses") or []:
        if c.get("name") != container:
            continue
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError"):
            return f"{waiting['reason']}: {str(waiting.get('message') or '')[:300]}"
        term = (c.get("state") or {}).get("terminated") or (c.get("lastState") or {}).get("terminated") or {}
        if term:
            message = str(term.get("message") or term.get("reason") or "").strip()
            return f"the supervisor exited with code {term.get('exitCode')}" + (f": {message[-300:]}" if message else "")
    return None
