"""What :meth:`openshell.client.sdk.OpenShellClient.watch_sandbox` yields: :class:`WatchEvent`.

One frozen dataclass for every kind of item on a ``WatchSandbox`` stream, so a
consumer (the CLI, a TUI) matches on ``kind`` and reads the fields that kind
sets; the others keep their empty defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from openshell._proto import openshell_pb2

if TYPE_CHECKING:
    from openshell.client.sdk import Sandbox

WatchKind = Literal["status", "log", "event", "lagged", "warning"]


@dataclass(frozen=True)
class WatchEvent:
    """One item of a sandbox's watch stream.

    ``kind`` says which fields are set:

    - ``status``: ``sandbox`` (a :class:`~openshell.client.sdk.Sandbox`: phase,
      reason, policy version, …) — the first item, then one per change;
      ``time`` is when the phase last changed.
    - ``log``: a supervisor log line: ``level`` (``debug``/``info``/``warning``/
      ``error``), ``target`` (logger name), ``message``, ``fields`` (its
      ``key=value`` pairs), ``source`` (``supervisor``).
    - ``event``: a platform event: ``source`` (``supervisor``, ``gateway`` or
      ``driver``), ``type`` (``Normal``/``Warning``), ``reason`` (CamelCase,
      e.g. ``OOMKilled``, ``PidsLimit``, ``TmpFull``, ``Stopping``, ``Stopped``,
      ``Starting``, ``SupervisorExited``), ``message``, ``fields`` (details).
    - ``lagged``: this watcher fell behind and the gateway dropped ``dropped``
      items here; a ``status`` item with the current state follows when status
      is watched. ``message`` says the same for people.
    - ``warning``: another notice from the gateway (``message``).

    :ivar time: unix seconds (0.0 when the gateway sent none).
    """

    kind: WatchKind
    time: float = 0.0
    sandbox: Sandbox | None = None
    level: str = ""
    target: str = ""
    source: str = ""
    type: str = ""
    reason: str = ""
    message: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)
    dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``-o json|yaml``: ``kind``, ``time`` and the fields of that kind."""
        out: dict[str, Any] = {"kind": self.kind, "time": self.time}
        if self.kind == "status" and self.sandbox is not None:
            out["sandbox"] = self.sandbox.to_dict()
        elif self.kind == "log":
            out.update(level=self.level, target=self.target, source=self.source, message=self.message, fields=dict(self.fields))
        elif self.kind == "event":
            out.update(source=self.source, type=self.type, reason=self.reason, message=self.message, fields=dict(self.fields))
        else:
            out.update(message=self.message, dropped=self.dropped)
        return out


def _seconds(ts) -> float:
    return ts.ToNanoseconds() / 1e9


def watch_event_from_proto(msg: openshell_pb2.SandboxStreamEvent, sandbox_from_proto: Callable[[Any], Sandbox]) -> WatchEvent | None:
    """Map one ``SandboxStreamEvent`` to a :class:`WatchEvent` (None for a payload we do not know)."""
    which = msg.WhichOneof("payload")
    if which == "sandbox":
        ready = next((c for c in msg.sandbox.status.conditions if c.type == "Ready"), None)
        when = _seconds(ready.transition_time) if ready is not None and ready.HasField("transition_time") else 0.0
        return WatchEvent("status", time=when, sandbox=sandbox_from_proto(msg.sandbox))
    if which == "log":
        ln = msg.log
        return WatchEvent("log", time=_seconds(ln.event_time), level=ln.level, target=ln.target, source=ln.source, message=ln.message, fields=dict(ln.fields))
    if which == "event":
        ev = msg.event
        return WatchEvent("event", time=_seconds(ev.event_time), source=ev.source, type=ev.type, reason=ev.reason, message=ev.message, fields=dict(ev.metadata))
    if which == "warning":
        w = msg.warning
        return WatchEvent("lagged" if w.dropped else "warning", message=w.message, dropped=int(w.dropped))
    return None
