"""Pure helpers of the terminal UI: what a watch item means for the screen.

Nothing here talks to the gateway or draws; the views call these.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from openshell.client.watch import WatchEvent
from rich.text import Text

DENIAL_WINDOW = 60.0  # seconds: the "denied in the last minute" column
MAX_LINE = 4096  # characters of one log message shown (the rest is cut, with a mark)

# C0 controls but tab and newline, DEL and C1 controls: a sandbox's output or
# log line must never drive the user's terminal (cursor moves, title, OSC 52 clipboard).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))}


def printable(text: str, limit: int = MAX_LINE) -> str:
    """``text`` safe to draw: control characters as ``\\xNN``, at most ``limit`` characters (then ``…``)."""
    out = text[:limit].translate(_CONTROLS)  # escapes lengthen it: cut again after
    return out[:limit] + "…" if len(text) > limit or len(out) > limit else out


def is_denial(ev: WatchEvent) -> bool:
    """A proxy decision that refused a connection or request (``event=decision decision=DENIED``)."""
    return ev.kind == "log" and ev.fields.get("event") == "decision" and ev.fields.get("decision", "").upper() == "DENIED"


@dataclass(frozen=True)
class Denial:
    """What a denied connection was: the inputs of ``policy explain`` plus the proxy's reason.

    :ivar port: 0 when the line did not carry a valid one.
    """

    time: float
    host: str
    port: int
    binary: str
    ancestors: tuple[str, ...]
    reason: str
    policy: str
    error: str
    method: str = ""
    path: str = ""


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        return 0
    return port if 0 < port < 65536 else 0


def denial_of(ev: WatchEvent) -> Denial | None:
    """The :class:`Denial` in a log item, or None when it is not one."""
    if not is_denial(ev):
        return None
    f: Mapping[str, str] = ev.fields
    anc = f.get("ancestors", "-")
    return Denial(
        time=ev.time,
        host=printable(f.get("host", ""), 253),
        port=_port(f.get("port", "")),
        binary=printable(f.get("binary", ""), 4096),
        ancestors=() if anc in ("", "-") else tuple(printable(a, 4096) for a in anc.split(",") if a)[:32],
        reason=printable(f.get("reason", ""), 1024),
        policy=printable(f.get("policy", "-"), 256),
        error=printable(f.get("error", ""), 64),
        method=printable(f.get("method", ""), 16),
        path=printable(f.get("path", ""), 2048),
    )


def denial_text(d: Denial) -> str:
    """One line for a denial: ``DENIED host:port binary — reason [error, rule]``."""
    req = f" {d.method} {d.path}" if d.method else ""
    rule = "" if d.policy in ("", "-") else f", rule {d.policy}"
    return f"✗ DENIED {d.host}:{d.port}{req} by {d.binary or '?'} — {d.reason or 'no reason given'} [{d.error or 'denied'}{rule}]"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t or time.time()))


def log_line(ev: WatchEvent) -> Text:
    """A styled line for the log pane (denials in bold red with a ✗ mark, so they show without colours too)."""
    if ev.kind == "log":
        d = denial_of(ev)
        if d is not None:
            return Text(f"{_clock(ev.time)} {denial_text(d)}", style="bold red")
        style = {"error": "red", "warning": "yellow", "debug": "dim"}.get(ev.level, "")
        return Text(f"{_clock(ev.time)} {printable(ev.level.upper(), 16):7} {printable(ev.message)}", style=style)
    if ev.kind == "event":
        what = printable(f"{ev.type} {ev.reason}: {ev.message}")
        return Text(f"{_clock(ev.time)} EVENT   {what}", style="magenta" if ev.type == "Warning" else "cyan")
    if ev.kind == "status" and ev.sandbox is not None:
        why = f": {printable(ev.sandbox.reason)}" if ev.sandbox.reason else ""
        return Text(f"{_clock(ev.time)} STATUS  {ev.sandbox.phase}{why}", style="blue")
    if ev.kind == "lagged":
        return Text(f"{_clock(0)} LAGGED  {ev.dropped} item(s) dropped: this view fell behind", style="yellow")
    return Text(f"{_clock(ev.time)} {ev.kind.upper():7} {printable(ev.message)}")


def limits_of(ev: WatchEvent) -> dict[str, str] | None:
    """The limits in force from the supervisor's ``event=limits`` line (cpu, memory, pids, tmp, disk, cgroup)."""
    if ev.kind != "log" or ev.fields.get("event") != "limits":
        return None
    return {k: printable(ev.fields[k], 32) for k in ("cpu", "memory", "pids", "tmp", "disk", "cgroup") if k in ev.fields}


class DenialCounter:
    """Denial times of one sandbox; :meth:`recent` counts those in the last :data:`DENIAL_WINDOW` seconds."""

    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=10_000)

    def add(self, t: float) -> None:
        self._times.append(t or time.time())

    def recent(self, now: float | None = None) -> int:
        cut = (now or time.time()) - DENIAL_WINDOW
        while self._times and self._times[0] < cut:
            self._times.popleft()
        return len(self._times)


def age(created_at: float, now: float | None = None) -> str:
    """``42s``, ``5m``, ``3h``, ``2d`` since ``created_at`` (unix seconds); "" when unknown."""
    if not created_at:
        return ""
    s = max(0, int((now or time.time()) - created_at))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def next_level(level: str) -> str:
    """The log level filter after ``level`` ("" = all): all → info → warning → error → all."""
    order = ("", "info", "warning", "error")
    return order[(order.index(level) + 1) % len(order)] if level in order else ""
