"""``openshell term`` (the Textual UI) against the session gateway with real sandboxes.

Headless through Textual's test harness (``App.run_test`` / ``Pilot``), plus
one run of the real command in tmux. Sandbox names start with ``tui-``; the
tests look only at those (other sandboxes may exist). Every wait is on a
condition the user would see, with generous limits (no timing assertions).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable

import pytest
from conftest import OPENSHELL, write_policy  # noqa: E402 - tests/ is on sys.path (conftest)

pytestmark = pytest.mark.timeout(600)

BLOCKED_HOST, BLOCKED_IP = "tblk.test", "10.199.62.2"  # denied by the default policy; nothing listens there
WAIT = 120.0  # seconds any condition may take on a slow shared machine
SHOTS = os.environ.get("OPENSHELL_TUI_SCREENSHOTS")  # folder: save an SVG of each view (docs/tui.md)


@pytest.fixture
def term_env(gateway, monkeypatch):
    """This process's environment pointed at the session gateway (the app reads client files from it)."""
    for key in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "OPENSHELL_GATEWAY"):
        monkeypatch.setenv(key, gateway.env[key])
    monkeypatch.setenv("OPENSHELL_NO_VERSION_CHECK", "1")
    return gateway


def _create(gw, name: str, *extra: str) -> None:
    gw.cli("sandbox", "delete", name)
    gw.cli("sandbox", "create", "--name", name, "--add-host", f"{BLOCKED_HOST}:{BLOCKED_IP}", *extra, "--detach", check=True)


async def until(pilot, pred: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Let the app run until ``pred()`` is true; fail naming ``what`` and the screen's text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await pilot.pause(0.2)
    raise AssertionError(f"not seen within {timeout:g}s: {what}\n--- screen ---\n{screen_text(pilot.app)}")


def screen_text(app) -> str:
    """The visible text of the current screen (what a user reads)."""
    from textual.widgets import DataTable, RichLog, Static

    scr = app.screen
    out: list[str] = []
    for w in scr.query("*"):
        if isinstance(w, DataTable):
            out += [" ".join(str(c) for c in w.get_row_at(i)) for i in range(w.row_count)]
        elif isinstance(w, RichLog):
            out += [strip.text.rstrip() for strip in w.lines]
        elif isinstance(w, Static):
            out.append(str(w.render()))
    return "\n".join(out)


def row(app, name: str) -> list[str] | None:
    """The cells of sandbox ``name``'s row in the sandboxes table, or None."""
    from textual.widgets import DataTable

    table = app.screen.query_one("#table", DataTable)
    try:
        return [str(c) for c in table.get_row(name)]
    except Exception:  # noqa: BLE001 - RowDoesNotExist: not (or no longer) shown
        return None


def log_text(app) -> str:
    from textual.widgets import RichLog

    return "\n".join(strip.text.rstrip() for strip in app.screen.query_one("#log", RichLog).lines)


async def open_sandbox(pilot, name: str) -> None:
    """Filter the table to ``name`` with ``/`` and open it with Enter."""
    app = pilot.app
    await until(pilot, lambda: row(app, name) is not None, f"row {name}")
    await pilot.press("slash", *name, "enter")
    await until(pilot, lambda: app.screen.query_one("#table").row_count == 1, f"only {name} after filtering")
    await pilot.press("enter")
    await until(pilot, lambda: getattr(app.screen, "sandbox", None) == name, f"sandbox view of {name}")


def shot(app, name: str) -> None:
    if SHOTS:
        app.save_screenshot(filename=f"{name}.svg", path=SHOTS)


async def sx(gw, name: str, *argv: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(gw.sx, name, *argv)


def test_tui_watches_three_sandboxes_and_a_denial_shows_up(term_env):
    gw = term_env
    names = ["tui-a", "tui-b", "tui-c"]
    for name in names:
        _create(gw, name)
    from openshell_cli.tui.app import TermApp

    async def run() -> None:
        app = TermApp()
        async with app.run_test(size=(110, 30)) as pilot:
            await until(pilot, lambda: all((row(app, n) or ["", ""])[1] == "READY" for n in names), "three READY rows")
            await open_sandbox(pilot, "tui-a")
            await until(pilot, lambda: "memory: " in screen_text(app), "limits in the side panel")
            proc = await sx(gw, "tui-a", "curl", "-sS", "--max-time", "5", f"http://{BLOCKED_HOST}:8080/")
            assert b"policy_denied" in proc.stdout  # the proxy answered 403
            # Within a second on an idle machine; the limit is generous for a shared one.
            await until(pilot, lambda: f"DENIED {BLOCKED_HOST}:8080" in log_text(app), "the denial in the log")
            text = log_text(app)
            assert "/usr/bin/curl" in text and "not allowed by policy" in text
            shot(app, "tui-sandbox")
            await pilot.press("escape")
            await until(pilot, lambda: (row(app, "tui-a") or ["0"])[-1] not in ("0", ""), "a denial counted in the list")
            await pilot.press("escape")  # clears the filter
            await until(pilot, lambda: all(row(app, n) for n in names), "all three rows again")
            shot(app, "tui-sandboxes")
            await pilot.press("q")

    asyncio.run(run())


# Static sections omitted: kept as they are (only network policies change live).
def _allow_curl(host_ip: str) -> str:
    return f"""\
version: 1
network_policies:
  up:
    endpoints: [{{host: up.example.test, port: 8080, allowed_ips: ["{host_ip}/32"]}}]
    binaries: [{{path: /usr/bin/curl}}]
"""


BAD_POLICY = """\
version: 1
network_policies:
  up:
    endpoints: [{host: up.example.test, port: 99999}]
    binaries: [{path: /usr/bin/curl}]
"""


def test_tui_explains_a_denial_and_a_policy_set_from_the_ui_lets_the_next_request_pass(term_env, upstream, tmp_path):
    gw = term_env
    name = "tui-fix"
    gw.cli("sandbox", "delete", name)
    gw.cli("sandbox", "create", "--name", name, "--add-host", f"up.example.test:{upstream.ip}", "--detach", check=True)
    bad = write_policy(tmp_path / "bad.yaml", BAD_POLICY)
    good = write_policy(tmp_path / "good.yaml", _allow_curl(upstream.ip))
    url = "http://up.example.test:8080/"
    from openshell_cli.tui.app import TermApp
    from textual.widgets import Input, Static

    async def run() -> None:
        app = TermApp()
        async with app.run_test(size=(120, 34)) as pilot:
            await open_sandbox(pilot, name)
            await until(pilot, lambda: "v1 loaded" in screen_text(app), "policy revision 1 loaded")
            denied = await sx(gw, name, "curl", "-sS", "--max-time", "10", url)
            assert b"policy_denied" in denied.stdout
            await until(pilot, lambda: "DENIED up.example.test:8080" in log_text(app), "the denial in the log")

            # e: the same answer as 'openshell policy explain NAME' for that line
            await pilot.press("e")
            await until(pilot, lambda: "decision:" in screen_text(app), "the explanation")
            explained = screen_text(app)
            cli = gw.cli("policy", "explain", name, "--binary", "/usr/bin/curl", "--host", "up.example.test", "--port", "8080", check=True)
            for line in cli.stdout.decode().splitlines():
                if line.startswith(("decision:", "reason:", "error:")):
                    assert line in explained, (line, explained)
            shot(app, "tui-explain")
            await pilot.press("escape")

            # p: a bad file shows its errors in the dialog, which stays open
            await pilot.press("p")
            await until(pilot, lambda: bool(app.screen.query("#policy-path")), "the policy dialog")
            app.screen.query_one("#policy-path", Input).value = bad
            await pilot.press("enter")
            errors = lambda: str(app.screen.query_one("#policy-errors", Static).render())  # noqa: E731
            await until(pilot, lambda: "port" in errors(), "the bad field named in place")
            assert "error:" in errors()
            shot(app, "tui-policy-errors")
            app.screen.query_one("#policy-path", Input).value = good
            await pilot.press("enter")
            await until(pilot, lambda: not app.screen.query("#policy-path"), "the dialog closed after storing")
            await until(pilot, lambda: "v2 loaded" in screen_text(app), "revision 2 loaded in the view")

            passed = await sx(gw, name, "curl", "-sS", "--max-time", "10", url)
            assert passed.returncode == 0 and b"policy_denied" not in passed.stdout, passed
            await pilot.press("q")

    asyncio.run(run())


def test_tui_exec_stop_start_and_delete_with_confirmation(term_env):
    gw = term_env
    name = "tui-life"
    _create(gw, name)
    from openshell_cli.tui.app import TermApp
    from textual.widgets import Input

    def phase() -> str:
        cells = row(app, name)
        return cells[1] if cells else ""

    async def run() -> None:
        async with app.run_test(size=(110, 30)) as pilot:
            await open_sandbox(pilot, name)
            # x: run a command, see its output and exit status
            await pilot.press("x")
            await until(pilot, lambda: bool(app.screen.query("#ask")), "the exec dialog")
            app.screen.query_one("#ask", Input).value = "sh -c 'echo hi-from-tui; exit 3'"
            await pilot.press("enter")
            await until(pilot, lambda: "hi-from-tui" in screen_text(app), "the exec output")
            assert "exit 3" in screen_text(app)
            await pilot.press("escape")
            await pilot.press("escape")
            await until(pilot, lambda: row(app, name) is not None, "back on the list")

            await pilot.press("s")
            await until(pilot, lambda: phase() == "STOPPED", "STOPPED in the list")
            assert "STOPPED" in gw.cli("sandbox", "get", name, check=True).stdout.decode()
            await pilot.press("s")
            await until(pilot, lambda: phase() == "READY", "READY again")

            await pilot.press("d")
            await until(pilot, lambda: "Delete sandbox" in screen_text(app), "the confirmation")
            await pilot.press("n")
            await until(pilot, lambda: row(app, name) is not None, "still listed after 'n'")
            assert gw.cli("sandbox", "get", name).returncode == 0

            await pilot.press("d")
            await until(pilot, lambda: "Delete sandbox" in screen_text(app), "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: row(app, name) is None, "the row gone")
            assert gw.cli("sandbox", "get", name).returncode != 0
            await pilot.press("q")

    app = TermApp()
    asyncio.run(run())


class Tmux:
    """A tmux server of its own (``-L``) running one command in a 100×30 window."""

    def __init__(self, sock: str, env: dict, argv: list[str]) -> None:
        self.base = ["tmux", "-L", sock]
        envs = [f"-e{k}={env[k]}" for k in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "OPENSHELL_GATEWAY")]
        cmd = ["new-session", "-d", "-s", "term", "-x", "100", "-y", "30", *envs, "-eNO_COLOR=1", "-eTERM=xterm-256color"]
        subprocess.run([*self.base, "-f", "/dev/null", *cmd, *argv], check=True, env=env, timeout=30)

    def screen(self) -> str:
        out = subprocess.run([*self.base, "capture-pane", "-p", "-t", "term"], capture_output=True, timeout=30)
        return out.stdout.decode(errors="replace")

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "term", *keys], check=True, timeout=30)

    def alive(self) -> bool:
        return subprocess.run([*self.base, "has-session", "-t", "term"], capture_output=True, timeout=30).returncode == 0

    def until(self, pred: Callable[[str], bool], what: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if pred(text):
                return text
            time.sleep(0.3)
        raise AssertionError(f"not seen in tmux within {timeout:g}s: {what}\n--- screen ---\n{text}")

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=30)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/setup.sh installs it)")
def test_openshell_term_in_tmux_opens_a_sandbox_connects_and_quits(term_env):
    gw = term_env
    name = "tui-tmux"
    _create(gw, name)
    tmux = Tmux(f"openshell-tui-{os.getpid()}", gw.env, [OPENSHELL, "term"])
    try:
        screen = tmux.until(lambda s: name in s and "READY" in s, "the sandbox row")
        assert "quit" in screen and "keys" in screen and "shell" in screen  # the footer names the keys
        tmux.keys("/")  # keys sent at once may overtake the focus move: wait for the box
        tmux.until(lambda s: "filter by name" in s, "the filter box")
        tmux.keys("-l", name)
        tmux.until(lambda s: f"filter '{name}'" in s, "the filter applied")
        tmux.keys("Enter")
        tmux.until(lambda s: s.count(name) == 2, "the filter box closed (name in the filter line and its row)")
        tmux.keys("Enter")
        screen = tmux.until(lambda s: "Limits" in s and "event=ready" in s, "the sandbox view with its log")
        assert "explain" in screen  # its footer
        # c: the UI steps aside for the interactive shell and comes back when it exits
        tmux.keys("c")
        tmux.until(lambda s: f"sandbox@{name}" in s, "the shell prompt")
        tmux.keys("-l", "echo tui-$((6*7))")
        tmux.keys("Enter")
        tmux.until(lambda s: "tui-42" in s, "the command's output")
        tmux.keys("-l", "exit")
        tmux.keys("Enter")
        tmux.until(lambda s: "Limits" in s, "the sandbox view again")
        tmux.keys("Escape")
        tmux.until(lambda s: "DENIED/1m" in s, "back on the sandboxes view")
        tmux.keys("q")
        deadline = time.monotonic() + 60
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not tmux.alive(), "q did not quit"
    finally:
        tmux.kill()


def test_tui_switches_workspace(term_env):
    gw = term_env
    gw.cli("workspace", "create", "tui-ws")  # may exist from an earlier run
    _create(gw, "tui-home")
    from openshell_cli.tui.app import TermApp
    from textual.widgets import OptionList

    async def run() -> None:
        app = TermApp()
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: row(app, "tui-home") is not None, "a sandbox of the default workspace")
            await pilot.press("w")
            await until(pilot, lambda: bool(app.screen.query(OptionList)), "the workspace list")
            picker = app.screen
            options = picker.query_one(OptionList)
            for _ in range(options.option_count):
                if "tui-ws" in str(options.get_option_at_index(options.highlighted or 0).prompt):
                    break
                await pilot.press("j")
            await pilot.press("enter")
            await until(pilot, lambda: "workspace tui-ws" in screen_text(app), "the new workspace named")
            await until(pilot, lambda: row(app, "tui-home") is None, "the default workspace's sandbox gone")
            await pilot.press("q")

    asyncio.run(run())


def test_tui_lost_gateway_shows_a_banner_and_reconnects(tmp_path, monkeypatch):
    """Its own gateway (the session one must keep running): stop it under the UI, start it again."""
    from conftest import _start_gateway, require_root

    require_root()
    gw = _start_gateway(tmp_path, "tuilost")
    try:
        for key in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "OPENSHELL_GATEWAY"):
            monkeypatch.setenv(key, gw.env[key])
        monkeypatch.setenv("OPENSHELL_NO_VERSION_CHECK", "1")
        gw.cli("sandbox", "create", "--name", "tui-lost", "--detach", check=True)
        from openshell_cli.tui.app import TermApp

        async def run() -> None:
            app = TermApp()
            async with app.run_test(size=(100, 30)) as pilot:
                banner = lambda: str(app.screen.query_one("#banner").render())  # noqa: E731
                await until(pilot, lambda: (row(app, "tui-lost") or ["", ""])[1] == "READY", "the sandbox READY")
                await asyncio.to_thread(gw.cli, "gateway", "stop", "--name", gw.name, check=True)
                await until(pilot, lambda: "lost" in banner() and "reconnecting" in banner(), "the lost-gateway banner")
                await asyncio.to_thread(gw.cli, "gateway", "start", "--name", gw.name, "--port", str(gw.port), check=True)
                await until(pilot, lambda: "lost" not in banner(), "the banner gone after reconnecting")
                await until(pilot, lambda: (row(app, "tui-lost") or ["", ""])[1] == "READY", "the sandbox listed again")
                await pilot.press("q")

        asyncio.run(run())
    finally:
        gw.cli("sandbox", "delete", "--all", timeout=120)
        gw.cli("gateway", "stop", "--name", gw.name, timeout=60)


MANY = int(os.environ.get("OPENSHELL_TUI_MANY", "100"))  # sandboxes of the scale test (local ones are cheap)


def test_tui_lists_many_sandboxes_and_its_keys_still_work(term_env):
    """``MANY`` sandboxes (100 by default: the issue's figure): every one listed with its driver,
    then filtering, opening one, moving and sorting still answer."""
    from concurrent.futures import ThreadPoolExecutor

    from openshell.client.sdk import OpenShellClient
    from openshell_cli.tui.app import TermApp

    names = [f"tui-many-{i:03d}" for i in range(MANY)]
    client = OpenShellClient.from_config(timeout=120)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: client.delete_sandbox(n, allow_missing=True), names))
        list(pool.map(lambda n: client.create_sandbox(n), names))
    try:

        async def run() -> None:
            import threading

            threads = threading.active_count()
            app = TermApp()
            async with app.run_test(size=(100, 30)) as pilot:
                await until(pilot, lambda: all(row(app, n) is not None for n in names), f"all {MANY} rows")
                await until(pilot, lambda: all((row(app, n) or ["", ""])[1] == "READY" for n in names), f"all {MANY} READY")
                assert all((row(app, n) or ["", "", ""])[2] == "local" for n in names)  # the DRIVER column
                # The streams share one thread (and a small pool), not one thread per sandbox.
                assert threading.active_count() - threads < 20, threading.enumerate()
                # keys still answer: move, sort, filter, open one, back
                table = app.screen.query_one("#table")
                at = table.cursor_row
                await pilot.press("j", "j")
                await until(pilot, lambda: table.cursor_row == at + 2, "the cursor two rows down")
                await pilot.press("o")
                await until(pilot, lambda: "sorted by PHASE" in screen_text(app) or app.screen.sort_by == 1, "sorted by the next column")
                target = names[MANY // 2]
                await open_sandbox(pilot, target)
                await until(pilot, lambda: "event=ready" in log_text(app), "its log")
                await pilot.press("escape")
                await until(pilot, lambda: row(app, target) is not None, "back on the list")
                await pilot.press("escape")
                await until(pilot, lambda: all(row(app, n) for n in names), f"all {MANY} rows again")
                await pilot.press("q")

        asyncio.run(run())
    finally:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: client.delete_sandbox(n, allow_missing=True), names))
        client.close()


def test_tui_explains_the_denial_under_the_cursor(term_env):
    gw = term_env
    name = "tui-cursor"
    _create(gw, name)
    from openshell_cli.tui.app import TermApp

    async def run() -> None:
        app = TermApp()
        async with app.run_test(size=(120, 34)) as pilot:
            await open_sandbox(pilot, name)
            for port in (8081, 8082):  # two denials: 8081 older, 8082 newest
                proc = await sx(gw, name, "curl", "-sS", "--max-time", "5", f"http://{BLOCKED_HOST}:{port}/")
                assert b"policy_denied" in proc.stdout
                await until(pilot, lambda p=port: f"DENIED {BLOCKED_HOST}:{p}" in log_text(app), f"the denial of port {port}")
            # no cursor: e explains the newest
            await pilot.press("e")
            await until(pilot, lambda: "decision:" in screen_text(app), "the explanation")
            assert f"explain: {BLOCKED_HOST}:8082" in screen_text(app)
            await pilot.press("escape")
            # the cursor up from the bottom onto the older denial, then e explains that one
            log = app.screen.query_one("#log")
            for _ in range(len(log.entries)):
                await pilot.press("k")
                sel = log.selected()
                if sel is not None and sel.denial is not None and sel.denial.port == 8081:
                    break
            else:
                raise AssertionError(f"the cursor never reached the older denial\n{log_text(app)}")
            await pilot.press("e")
            await until(pilot, lambda: "decision:" in screen_text(app), "the explanation")
            assert f"explain: {BLOCKED_HOST}:8081" in screen_text(app)
            shot(app, "tui-explain-cursor")
            await pilot.press("escape")
            await pilot.press("G")  # follow the newest again: no cursor
            await until(pilot, lambda: log.selected() is None, "the cursor gone")
            await pilot.press("q")

    asyncio.run(run())


def test_every_footer_key_fits_80_columns_in_both_views(term_env):
    from textual.widgets._footer import FooterKey

    gw = term_env
    _create(gw, "tui-narrow")
    from openshell_cli.tui.app import TermApp

    def keys_cut_off(app) -> list[str]:
        return [f"{k.key_display or k.key} {k.description} {k.region}" for k in app.screen.query(FooterKey) if k.region.right > 80 or k.region.width == 0]

    def footer_laid_out(app) -> bool:
        # On a loaded machine the footer's keys can still be unplaced (every region empty)
        # when the table already shows READY: wait for the layout, then judge the widths.
        return any(k.region.width for k in app.screen.query(FooterKey))

    async def run() -> None:
        app = TermApp()
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: (row(app, "tui-narrow") or ["", ""])[1] == "READY", "tui-narrow READY")
            await until(pilot, lambda: footer_laid_out(app), "the footer laid out")
            assert not keys_cut_off(app), keys_cut_off(app)
            assert {k.description for k in app.screen.query(FooterKey)} >= {
                "shell",
                "run",
                "stop/start",
                "delete",
                "policy",
                "gateway",
                "workspace",
                "keys",
                "quit",
            }
            await open_sandbox(pilot, "tui-narrow")
            await pilot.pause(0.5)
            await until(pilot, lambda: footer_laid_out(app), "the sandbox view's footer laid out")
            assert not keys_cut_off(app), keys_cut_off(app)
            assert {k.description for k in app.screen.query(FooterKey)} >= {"explain", "shell", "run", "delete", "policy", "back", "keys"}

    try:
        asyncio.run(run())
    finally:
        gw.cli("sandbox", "delete", "tui-narrow")
