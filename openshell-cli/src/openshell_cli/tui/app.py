"""The terminal UI app (:class:`TermApp`) and its first view, the sandboxes table.

The table is fed by one ``WatchSandbox`` stream per sandbox (status, and
warning-level log lines of the last minute on for the denial count), all on
one thread and one connection (:class:`~openshell_cli.tui.streams.Streams`);
the list itself is read at start, on ``r``, when a stream ends, and every
:data:`DISCOVER` seconds to find sandboxes created elsewhere (the gateway has
no list stream). The table is redrawn at most every :data:`REDRAW` seconds:
only the cells that changed, or every row when rows came, went or moved.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from openshell.client.config import active_name, list_gateways
from openshell.client.policies import PolicyRevision
from openshell.client.sdk import OpenShellClient, OpenShellError, PolicyFailed, Sandbox
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.widgets.data_table import ColumnKey

from openshell_cli.tui.keys import KEYS_BINDING, KEYS_HELP, QUIT_BINDING, STEER_BINDINGS
from openshell_cli.tui.model import DENIAL_WINDOW, Denial, DenialCounter, age, denial_of, printable
from openshell_cli.tui.sandbox_view import SandboxScreen
from openshell_cli.tui.screens import AskScreen, ConfirmScreen, PickScreen, PolicyFileScreen, TextScreen
from openshell_cli.tui.streams import Follow, Streams, WatchEnded, WatchItem

DISCOVER = 10.0  # seconds between list reads that find sandboxes created elsewhere
REDRAW = 0.25  # seconds: the table is redrawn at most this often, and only when something changed
TICK = 5.0  # seconds: ages and the one-minute denial counts are redrawn this often
RECONNECT = 2.0  # seconds between health checks while the gateway is lost
EXEC_TIMEOUT = 60.0  # seconds an exec from the UI may run
EXEC_SHOW = 64 * 1024  # bytes of an exec's output shown
LIST_LOG_TAIL = 200  # warning lines of the last minute each table stream starts with (the denial count)
COLUMNS = ("NAME", "PHASE", "DRIVER", "AGE", "POLICY", "DENIED/1m")
PHASE_STYLE = {"READY": "green", "ERROR": "bold red", "STOPPED": "yellow", "PROVISIONING": "cyan", "STARTING": "cyan", "STOPPING": "yellow"}


@dataclass
class Row:
    """What the table knows about one sandbox."""

    sandbox: Sandbox
    policy: PolicyRevision | None = None
    denials: DenialCounter = field(default_factory=DenialCounter)
    follow: Follow | None = None


def _cells(r: Row, now: float) -> tuple[str | Text, ...]:
    """The table cells of one row, in :data:`COLUMNS` order."""
    sb = r.sandbox
    n = r.denials.recent(now)
    return (
        sb.name,
        Text(sb.phase, style=PHASE_STYLE.get(sb.phase, "")),
        sb.driver or "?",
        age(sb.created_at, now),
        _policy_cell(sb, r.policy),
        Text(str(n), style="bold red" if n else ""),
    )


def _policy_cell(sb: Sandbox, rev: PolicyRevision | None) -> str:
    if rev is None:
        return f"v{sb.policy_version}" if sb.policy_version else "—"
    return f"v{rev.version} {rev.status}"


class SandboxesScreen(Screen[None]):
    """Every sandbox of the gateway and workspace, live."""

    AUTO_FOCUS = "#table"
    BINDINGS = [
        # The footer holds the actions (fits 80 columns); moving, opening, filtering and
        # sorting follow k9s/htop habits and are listed by ? with every other key.
        QUIT_BINDING,
        KEYS_BINDING,
        Binding("enter", "open", "open", key_display="⏎", priority=True, show=False),
        Binding("slash", "filter", "filter", key_display="/", show=False),
        *STEER_BINDINGS,
        Binding("o", "sort", "sort", show=False),
        Binding("g", "app.switch_gateway", "gateway"),
        Binding("w", "app.switch_workspace", "workspace"),
        Binding("r", "refresh", "refresh", show=False),
        Binding("j", "down", show=False),
        Binding("k", "up", show=False),
        Binding("escape", "clear_filter", show=False),
    ]

    DEFAULT_CSS = """
    #banner { background: $error; color: $text; display: none; }
    #banner.lost { display: block; }
    #where { height: 1; background: $boost; }
    #filter { display: none; }
    #filter.shown { display: block; }
    #table { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, Row] = {}
        self.filter = ""
        self.sort_by = 0
        self._dirty = True
        self._columns: list[ColumnKey] = []
        self._shown: list[str] = []  # row keys in the table, in order
        self._cells: dict[str, tuple[str | Text, ...]] = {}  # what each shown row holds
        self._where = ""

    @property
    def term(self) -> TermApp:
        assert isinstance(self.app, TermApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield Static("", id="banner")
        yield Static("", id="where")
        yield Input(placeholder="filter by name", id="filter")
        table: DataTable[str | Text] = DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._columns = self.query_one("#table", DataTable).add_columns(*COLUMNS)
        self.set_interval(REDRAW, self._redraw)
        self.set_interval(TICK, self._tick)
        self.set_interval(DISCOVER, self.action_refresh)
        self.restart_streams()

    def on_unmount(self) -> None:
        self._stop_all()

    def _stop_all(self) -> None:
        for row in self.rows.values():
            if row.follow is not None:
                row.follow.stop()
        self.rows.clear()

    def restart_streams(self) -> None:
        """Forget every row and read the list again (start, gateway/workspace switch, reconnect)."""
        self._stop_all()
        self._dirty = True
        self.action_refresh()

    def action_refresh(self) -> None:
        self.run_worker(self._list, thread=True, exclusive=True, group="list")

    def _list(self) -> None:
        try:
            found = self.term.client.list_sandboxes()
        except OpenShellError as exc:
            self.app.call_from_thread(self.term.gateway_lost, str(exc))
            return
        self.app.call_from_thread(self._listed, found)

    def _listed(self, found: list[Sandbox]) -> None:
        names = {sb.name for sb in found}
        for name in [n for n in self.rows if n not in names]:
            gone = self.rows.pop(name)
            if gone.follow is not None:
                gone.follow.stop()
        for sb in found:
            row = self.rows.get(sb.name)
            if row is None:
                row = self.rows[sb.name] = Row(sb)
                # Denials of the last minute first (the column's window), then new ones as they come.
                row.follow = self.term.streams.follow(
                    sb.name, self, logs_level="warning", log_tail=LIST_LOG_TAIL, log_since=time.time() - DENIAL_WINDOW, with_events=False
                )
            elif row.follow is None:
                row.sandbox = sb
        self._dirty = True

    def on_watch_item(self, msg: WatchItem) -> None:
        row = self.rows.get(msg.name)
        if row is None or row.follow is not msg.follow:
            return
        ev = msg.event
        if ev.kind == "status" and ev.sandbox is not None:
            row.sandbox = ev.sandbox
            row.policy = msg.policy or row.policy
        elif denial_of(ev) is not None:
            row.denials.add(ev.time)
        else:
            return
        self._dirty = True

    def on_watch_ended(self, msg: WatchEnded) -> None:
        row = self.rows.get(msg.name)
        if row is None or row.follow is not msg.follow:
            return
        if msg.lost:
            self.term.gateway_lost(msg.error)
            return
        del self.rows[msg.name]
        self._dirty = True

    def _tick(self) -> None:
        self._dirty = True

    def _redraw(self) -> None:
        where = f" gateway {self.term.gateway_label}  workspace {self.term.workspace}  {len(self.rows)} sandbox(es)"
        if self.filter:
            where += f"  filter '{self.filter}'"
        if where != self._where:
            self._where = where
            self.query_one("#where", Static).update(Text(where, style="bold"))
        if not self._dirty:
            return
        self._dirty = False
        table = self.query_one("#table", DataTable)
        now = time.time()
        rows = [r for name, r in self.rows.items() if self.filter.lower() in name.lower()]
        keys = (
            lambda r: r.sandbox.name,
            lambda r: r.sandbox.phase,
            lambda r: r.sandbox.driver,
            lambda r: -r.sandbox.created_at,
            lambda r: r.policy.version if r.policy else r.sandbox.policy_version,
            lambda r: -r.denials.recent(now),
        )
        rows.sort(key=lambda r: (keys[self.sort_by](r), r.sandbox.name))
        cells = {r.sandbox.name: _cells(r, now) for r in rows}
        names = list(cells)
        if names == self._shown:
            # Same rows in the same order: touch only the cells that changed (no full redraw).
            for name, new in cells.items():
                for col, old_cell, new_cell in zip(self._columns, self._cells[name], new, strict=True):
                    if old_cell != new_cell:
                        table.update_cell(name, col, new_cell, update_width=True)
        else:
            selected = self.selected()
            table.clear()
            for name, new in cells.items():
                table.add_row(*new, key=name)
            if selected in names:
                table.move_cursor(row=names.index(selected))
        self._shown, self._cells = names, cells

    def selected(self) -> str | None:
        """The name under the cursor (None for an empty table)."""
        table = self.query_one("#table", DataTable)
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - cursor outside a just-cleared table
            return None
        return str(key.value) if key.value is not None else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        self.sort_by = event.column_index
        self._dirty = True

    def action_open(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus:  # Enter ends typing the filter (kept; shown on the line above the table)
            box.remove_class("shown")
            self.query_one("#table", DataTable).focus()
            return
        name = self.selected()
        if name is not None:
            self.app.push_screen(SandboxScreen(name))

    def action_down(self) -> None:
        self.query_one("#table", DataTable).action_cursor_down()

    def action_up(self) -> None:
        self.query_one("#table", DataTable).action_cursor_up()

    def action_sort(self) -> None:
        self.sort_by = (self.sort_by + 1) % len(COLUMNS)
        self.notify(f"sorted by {COLUMNS[self.sort_by]}", timeout=2)
        self._dirty = True

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter = event.value.strip()
            self._dirty = True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            event.stop()
            event.input.remove_class("shown")
            self.query_one("#table", DataTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("shown")
        self.filter = ""
        self._dirty = True
        self.query_one("#table", DataTable).focus()

    def action_steer(self, action: str) -> None:
        name = self.selected()
        if name is None:
            return
        row = self.rows.get(name)
        self.term.steer(action, name, phase=row.sandbox.phase if row else "")


class TermApp(App[None]):
    """``openshell term``. ``gateway`` None = the active one; colours follow ``NO_COLOR`` (Textual reads it)."""

    TITLE = "openshell term"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, gateway: str | None = None, workspace: str = "default", *, openshell: str | None = None) -> None:
        super().__init__()
        self.gateway = gateway
        self.workspace = workspace
        self.client = self._client()
        self.streams = Streams(self.client)
        self.lost = ""
        self._openshell = openshell or str(Path(sys.executable).with_name("openshell"))

    def _client(self) -> OpenShellClient:
        from openshell_cli import session

        return session.client(self.gateway, workspace=self.workspace)

    @property
    def gateway_label(self) -> str:
        return self.gateway or active_name() or "?"

    def on_mount(self) -> None:
        self.push_screen(SandboxesScreen())

    def on_unmount(self) -> None:
        self.streams.close()
        self.client.close()

    def action_keys(self) -> None:
        self.push_screen(TextScreen("keys", KEYS_HELP))

    # ---------------------------------------------------------------- lost gateway

    def gateway_lost(self, message: str) -> None:
        """Show the banner on every view and try to reconnect every :data:`RECONNECT` seconds."""
        if self.lost:
            return
        self.lost = message.splitlines()[0] if message else "unreachable"
        self._banner(f" gateway {self.gateway_label} lost: {self.lost} — reconnecting…")
        self.run_worker(self._reconnect, thread=True, exclusive=True, group="reconnect")

    def _banner(self, text: str) -> None:
        for screen in self.screen_stack:
            for banner in screen.query("#banner"):
                assert isinstance(banner, Static)
                banner.update(text)
                banner.set_class(bool(text), "lost")

    def _reconnect(self) -> None:
        while True:
            time.sleep(RECONNECT)
            try:
                self.client.health()
            except OpenShellError:
                continue
            self.call_from_thread(self._reconnected)
            return

    def _reconnected(self) -> None:
        self.lost = ""
        self._banner("")
        # A fresh channel: the old one may still be backing off from the failed connection.
        old, self.streams = self.streams, Streams(self.client)
        for screen in self.screen_stack:
            if isinstance(screen, (SandboxesScreen, SandboxScreen)):
                screen.restart_streams()
        old.close()

    # ---------------------------------------------------------------- switching

    def action_switch_gateway(self) -> None:
        names = list_gateways()
        if not names:
            self.notify("no gateways configured; run 'openshell gateway start'", severity="error")
            return
        self.push_screen(PickScreen("Switch gateway", names, self.gateway_label), self._switched_gateway)

    def _switched_gateway(self, name: str | None) -> None:
        if name:
            self._switch(name, "default")

    def action_switch_workspace(self) -> None:
        self.run_worker(self._pick_workspace, thread=True, exclusive=True, group="workspace")

    def _pick_workspace(self) -> None:
        try:
            names = [w.name for w in self.client.list_workspaces()]
        except OpenShellError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        names = names or ["default"]
        self.call_from_thread(self.push_screen, PickScreen("Switch workspace", names, self.workspace), self._switched_workspace)

    def _switched_workspace(self, name: str | None) -> None:
        if name:
            self._switch(self.gateway, name)

    def _switch(self, gateway: str | None, workspace: str) -> None:
        old = (self.gateway, self.workspace, self.client, self.streams)
        self.gateway, self.workspace = gateway, workspace
        try:
            self.client = self._client()
            self.streams = Streams(self.client)
        except Exception as exc:  # noqa: BLE001 - a bad gateway config stays a message
            self.gateway, self.workspace, self.client, self.streams = old
            self.notify(str(exc), severity="error")
            return
        while len(self.screen_stack) > 2:
            self.pop_screen()
        for screen in self.screen_stack:
            if isinstance(screen, SandboxesScreen):
                screen.restart_streams()
        old[3].close()
        old[2].close()

    # ---------------------------------------------------------------- actions

    def steer(self, action: str, name: str, *, phase: str = "", denial: Denial | None = None) -> None:
        """Run ``action`` on sandbox ``name``: connect, exec, stopstart, delete, policy, explain.

        Gateway calls run in worker threads; results and errors show as notifications or dialogs.
        """
        if action == "connect":
            self._connect(name)
        elif action == "exec":
            self.push_screen(AskScreen(f"Run in {name}", "command and arguments, e.g. ls -la /sandbox"), lambda cmd: self._exec(name, cmd))
        elif action == "stopstart":
            self._in_thread(lambda: self._stop_start(name, phase), f"stopstart-{name}")
        elif action == "delete":
            self.push_screen(ConfirmScreen(f"Delete sandbox {name} and its /sandbox files?"), lambda yes: self._delete(name, bool(yes)))
        elif action == "policy":
            self.push_screen(PolicyFileScreen(name, lambda text: self.client.set_policy(name, text).version), lambda v: self._policy_stored(name, v))
        elif action == "explain":
            if denial is None:
                self.notify("no denial seen in this sandbox yet", severity="warning")
            else:
                self._in_thread(lambda: self._explain(name, denial), f"explain-{name}")

    def _in_thread(self, fn: Callable[[], None], group: str) -> None:
        self.run_worker(fn, thread=True, group=group)

    def _fail(self, exc: Exception) -> None:
        self.call_from_thread(self.notify, str(exc), severity="error", timeout=8)

    def _connect(self, name: str) -> None:
        argv = [self._openshell, "sandbox", "connect", name]
        if self.gateway:
            argv += ["--gateway", self.gateway]
        try:
            with self.suspend():
                subprocess.call(argv, env=os.environ.copy())
        except Exception as exc:  # noqa: BLE001 - SuspendNotSupported (headless, web): say so
            self.notify(f"cannot connect from here: {exc or type(exc).__name__}; run: {shlex.join(argv)}", severity="error")

    def _exec(self, name: str, cmd: str | None) -> None:
        if not cmd:
            return
        try:
            argv = shlex.split(cmd)
        except ValueError as exc:
            self.notify(f"cannot parse the command: {exc}", severity="error")
            return

        def run() -> None:
            try:
                code, out, err = self.client.run(name, argv, timeout=EXEC_TIMEOUT)
            except OpenShellError as exc:
                self._fail(exc)
                return
            raw = (out[:EXEC_SHOW] + (b"\n" + err[:EXEC_SHOW] if err else b"")).decode("utf-8", "replace")
            body = "\n".join(printable(line) for line in raw.splitlines())  # the sandbox's bytes never drive the terminal
            self.call_from_thread(self.push_screen, TextScreen(f"{shlex.join(argv)} in {name}: exit {code}", body or "(no output)"))

        self._in_thread(run, f"exec-{name}")

    def _stop_start(self, name: str, phase: str) -> None:
        try:
            if phase in ("STOPPED", "ERROR"):
                self.call_from_thread(self.notify, f"starting {name}…", timeout=3)
                self.client.start_sandbox(name)
            else:
                self.call_from_thread(self.notify, f"stopping {name}…", timeout=3)
                self.client.stop_sandbox(name)
        except OpenShellError as exc:
            self._fail(exc)

    def _delete(self, name: str, yes: bool) -> None:
        if not yes:
            return
        if isinstance(self.screen, SandboxScreen) and self.screen.sandbox == name:
            self.pop_screen()

        def run() -> None:
            try:
                self.client.delete_sandbox(name, allow_missing=True)
            except OpenShellError as exc:
                self._fail(exc)
                return
            self.call_from_thread(self.notify, f"deleted {name}", timeout=3)

        self._in_thread(run, f"delete-{name}")

    def _policy_stored(self, name: str, version: int | None) -> None:
        if version is None:
            return
        self.notify(f"{name}: policy revision {version} stored; waiting for the supervisor…", timeout=4)

        def wait() -> None:
            rev: PolicyRevision
            try:
                rev = self.client.wait_policy(name, version, timeout=60)
            except PolicyFailed as exc:
                self._fail(exc)
                if not isinstance(exc.revision, PolicyRevision):
                    return
                rev = exc.revision
            except OpenShellError as exc:
                self._fail(exc)
                return
            else:
                self.call_from_thread(self.notify, f"{name}: policy revision {version} loaded", timeout=4)
            for screen in self.screen_stack:
                if isinstance(screen, SandboxScreen) and screen.sandbox == name:
                    self.call_from_thread(screen.set_policy, rev)

        self._in_thread(wait, f"policy-{name}")

    def _explain(self, name: str, d: Denial) -> None:
        from openshell_cli.commands.policy import explain_in_sandbox

        try:
            rec = explain_in_sandbox(self.client, name, d.binary, d.ancestors, d.host, d.port, (), d.method or None, d.path or None if d.method else None)
        except Exception as exc:  # noqa: BLE001 - gateway or engine errors become a notification
            self._fail(exc)
            return
        lines = [f"{k + ':':<10} {printable(', '.join(v) if isinstance(v, list) else str(v))}" for k, v in rec.items() if v not in (None, "", [])]
        # What the proxy logged comes first: the rules may allow a connection that the
        # proxy still refused after them (destination safety: the address the name
        # resolved to, which explain cannot know), and "allow" alone would mislead.
        logged = [f"{'logged:':<10} DENIED — {d.reason or 'no reason given'} [{d.error or 'denied'}]"]
        if str(rec.get("decision", "")).lower() in ("allow", "audit"):
            logged.append(f"{'note:':<10} the rules allow this connection; the proxy refused it after them, for the logged reason")
        lines = logged + [""] + lines
        title = f"explain: {d.host}:{d.port} by {d.binary} (as 'openshell policy explain {name}')"
        self.call_from_thread(self.push_screen, TextScreen(title, "\n".join(lines)))
