"""What event hooks receive: frozen snapshots, never live gateway objects.

An event hook (``gateway_started``, ``sandbox_created``, ``sandbox_deleted``)
gets one of these instead of the gateway's own objects, so a plugin can neither
change gateway state nor read a secret: the sandbox's NSSH1/supervisor secret,
its environment (which may carry credentials) and the gateway's TLS material
are not in them. Fields may be added in later releases (never removed), so a
plugin reads the fields it knows and ignores the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class SandboxEvent:
    """One sandbox, as an event hook sees it (no secret, no environment, no policy).

    :ivar id: the sandbox's id (uuid4 string).
    :ivar name: its name, unique within ``workspace``.
    :ivar workspace: the workspace it belongs to.
    :ivar labels: its labels, read-only.
    :ivar phase: its phase when the event fired (``PROVISIONING``, ``READY``,
        ``ERROR``, ``STOPPED``, ``DELETING``); ``sandbox_created`` sees ``ERROR``
        when the compute driver could not start it.
    :ivar reason: why, for ``ERROR``/``STOPPED`` (empty otherwise).
    :ivar created_at: when the sandbox was created, unix seconds.
    """

    id: str
    name: str
    workspace: str = "default"
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    phase: str = ""
    reason: str = ""
    created_at: float = 0.0

    @classmethod
    def from_record(cls, record: Any) -> SandboxEvent:
        """Copy the public fields of a stored sandbox record (``gateway.store.SandboxRecord``).

        :param record: any object with ``id``, ``name``, ``workspace``, ``labels``,
            ``phase``, ``reason`` and ``created_at`` attributes; nothing else is read.
        """
        return cls(
            id=str(record.id),
            name=str(record.name),
            workspace=str(record.workspace),
            labels=MappingProxyType(dict(record.labels or {})),
            phase=str(record.phase),
            reason=str(record.reason or ""),
            created_at=float(record.created_at or 0.0),
        )


@dataclass(frozen=True)
class GatewayEvent:
    """A running gateway, as the ``gateway_started`` hook sees it (no keys, no store).

    :ivar name: the gateway's name (``openshell gateway start --name``).
    :ivar endpoint: the URL clients and supervisors dial, e.g. ``https://127.0.0.1:8080``.
    :ivar port: the TCP port it listens on (the actual one when started with port 0).
    :ivar driver: the compute driver's name, e.g. ``"local"``.
    :ivar state_dir: the gateway's state directory.
    :ivar started_at: when it started serving, unix seconds.
    """

    name: str
    endpoint: str
    port: int
    driver: str
    state_dir: str
    started_at: float


__all__ = ["GatewayEvent", "SandboxEvent"]
