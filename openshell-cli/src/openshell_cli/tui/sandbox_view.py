"""The sandbox view: one sandbox's live log stream (denials highlighted), its
policy in force, providers (names and types only) and limits."""

from __future__ import annotations

from typing import Protocol, cast

from openshell.client.policies import PolicyRevision
from openshell.client.sdk import OpenShellClient, OpenShellError
from openshell.client.watch import WatchEvent
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from openshell_cli.tui.keys import KEYS_BINDING, QUIT_BINDING, STEER_BINDINGS
from openshell_cli.tui.log_view import CursorLog
from openshell_cli.tui.model import Denial, denial_of, limits_of, log_line, next_level, printable
from openshell_cli.tui.streams import Follow, Streams, WatchEnded, WatchItem

LOG_TAIL = 500  # log lines already held shown when the view opens
LOG_KEEP = 5000  # lines the log pane keeps
FLUSH = 0.1  # seconds: stream items are drawn in batches at most this often (no redraw storms)


class Steer(Protocol):
    """What the view needs from the app (:class:`openshell_cli.tui.app.TermApp`)."""

    client: OpenShellClient
    streams: Streams

    def steer(self, action: str, name: str, *, phase: str = "", denial: Denial | None = None) -> None: ...

    def gateway_lost(self, message: str) -> None: ...


class SandboxScreen(Screen[None]):
    """One sandbox. The stream starts on mount and is cancelled when the view closes."""

    AUTO_FOCUS = "#log"
    BINDINGS = [
        Binding("escape", "back", "back", key_display="esc"),
        QUIT_BINDING,
        KEYS_BINDING,
        Binding("e", "steer('explain')", "explain"),
        Binding("l", "level", "level", show=False),  # listed by ?; the footer keeps to 80 columns
        *STEER_BINDINGS,
    ]

    DEFAULT_CSS = """
    #banner { background: $error; color: $text; display: none; }
    #banner.lost { display: block; }
    #info { height: 1; background: $boost; }
    #body { height: 1fr; }
    #log { width: 2fr; border: round $primary; }
    #side { width: 1fr; border: round $secondary; }
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.sandbox = name
        self.level = ""
        self.phase = ""
        self.policy: PolicyRevision | None = None
        self.limits: dict[str, str] = {}
        self.providers: list[tuple[str, str]] = []
        self.last_denial: Denial | None = None
        self.denials = 0
        self._follow: Follow | None = None
        self._pending: list[WatchEvent] = []
        self._side_dirty = True

    @property
    def steering(self) -> Steer:
        return cast(Steer, self.app)

    def compose(self) -> ComposeResult:
        yield Static("", id="banner")
        yield Static("", id="info")
        with Horizontal(id="body"):
            yield CursorLog(id="log", max_lines=LOG_KEEP)
            with VerticalScroll(id="side"):
                yield Static("", id="side-text")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#log", CursorLog).border_title = "log"
        self.query_one("#side", VerticalScroll).border_title = "policy · providers · limits"
        self.set_interval(FLUSH, self._flush)
        self.restart_streams()

    def on_unmount(self) -> None:
        if self._follow is not None:
            self._follow.stop()

    def restart_streams(self) -> None:
        """(Re)open the stream (on mount, after a level change, after a reconnect)."""
        if self._follow is not None:
            self._follow.stop()
        self.query_one("#log", CursorLog).clear()
        self._pending.clear()
        self._follow = self.steering.streams.follow(self.sandbox, self, logs_level=self.level, log_tail=LOG_TAIL, with_events=True)
        self.run_worker(self._load_providers, thread=True, exclusive=True, group="providers")

    def _load_providers(self) -> None:
        try:
            found = [(p.name, p.type) for p in self.steering.client.sandbox_providers(self.sandbox)]
        except OpenShellError:
            return
        self.app.call_from_thread(self._set_providers, found)

    def _set_providers(self, found: list[tuple[str, str]]) -> None:
        self.providers = found
        self._side_dirty = True

    def on_watch_item(self, msg: WatchItem) -> None:
        if msg.follow is not self._follow:
            return
        ev = msg.event
        if ev.kind == "status" and ev.sandbox is not None:
            self.phase = ev.sandbox.phase
            if msg.policy is not None:
                self.policy = msg.policy
            self._side_dirty = True
        lim = limits_of(ev)
        if lim:
            self.limits = lim
            self._side_dirty = True
        d = denial_of(ev)
        if d is not None:
            self.last_denial = d
            self.denials += 1
            self._side_dirty = True
        self._pending.append(ev)

    def on_watch_ended(self, msg: WatchEnded) -> None:
        if msg.follow is not self._follow:
            return
        if msg.lost:
            self.steering.gateway_lost(msg.error)
            return
        self._pending.append(WatchEvent("warning", message=msg.error or f"sandbox '{self.sandbox}' was deleted"))
        if not msg.error:
            self.phase = "DELETED"
            self._side_dirty = True

    def _flush(self) -> None:
        log = self.query_one("#log", CursorLog)
        if self._pending and log.ready:
            batch, self._pending = self._pending[-LOG_KEEP:], []
            for ev in batch:
                log.add(log_line(ev), denial_of(ev))
        if self._side_dirty:
            self._side_dirty = False
            self._draw_side()

    def _draw_side(self) -> None:
        pol = self.policy
        policy = f"v{pol.version} {pol.status}" + (" (active)" if pol.active else "") if pol else "—"
        level = self.level or "all"
        self.query_one("#info", Static).update(
            Text(f" {self.sandbox}  {self.phase or '…'}  policy {policy}  denied {self.denials}  level {level}", style="bold")
        )
        side = Text()
        side.append("Policy\n", style="bold underline")
        side.append(f"revision {policy}\n")
        if pol is not None and pol.error:
            side.append(f"error: {printable(pol.error)}\n", style="red")
        if pol is not None and pol.policy_yaml:
            side.append(printable(_network_summary(pol.policy_yaml), 16384))
        side.append("\nProviders\n", style="bold underline")
        side.append("".join(f"{printable(n, 128)} ({printable(t, 64)})\n" for n, t in self.providers) or "none\n")
        side.append("\nLimits\n", style="bold underline")
        side.append("".join(f"{k}: {v}\n" for k, v in self.limits.items()) or "not reported yet\n")
        if self.last_denial is not None:
            d = self.last_denial
            side.append("\nLast denial (e explains it, or the one under the ↑↓ cursor)\n", style="bold underline")
            side.append(f"{d.host}:{d.port} by {d.binary}\n", style="red")
        self.query_one("#side-text", Static).update(side)

    def set_policy(self, rev: PolicyRevision) -> None:
        """Show revision ``rev`` (the app calls this once a stored revision is loaded or failed)."""
        self.policy = rev
        self._side_dirty = True

    def action_back(self) -> None:
        self.app.pop_screen()

    def chosen_denial(self) -> Denial | None:
        """The denial ``e`` explains: the one under the log cursor, else the newest seen."""
        entry = self.query_one("#log", CursorLog).selected()
        if entry is not None and entry.denial is not None:
            return entry.denial
        return self.last_denial

    def action_level(self) -> None:
        self.level = next_level(self.level)
        self._side_dirty = True
        self.restart_streams()

    def action_steer(self, action: str) -> None:
        self.steering.steer(action, self.sandbox, phase=self.phase, denial=self.chosen_denial() if action == "explain" else None)


def _network_summary(policy_yaml: str) -> str:
    """``key: host:port, … ← binaries`` per network policy of a policy document ("" if it does not parse)."""
    import yaml

    try:
        doc = yaml.safe_load(policy_yaml)
    except yaml.YAMLError:
        return ""
    rules = (doc or {}).get("network_policies") or {} if isinstance(doc, dict) else {}
    if not isinstance(rules, dict) or not rules:
        return "no network rules (everything denied)\n"
    out = []
    for key, rule in list(rules.items())[:50]:
        if not isinstance(rule, dict):
            continue
        eps = ", ".join(f"{e.get('host', '?')}:{e.get('port', '?')}" for e in rule.get("endpoints") or [] if isinstance(e, dict))
        bins = ", ".join(str(b.get("path", "?")) for b in rule.get("binaries") or [] if isinstance(b, dict))
        out.append(f"{key}: {eps} ← {bins or 'any binary'}\n")
    return "".join(out)
