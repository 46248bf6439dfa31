"""Both views take their steering keys from one definition, in one order."""

from __future__ import annotations

from openshell_cli.tui.app import SandboxesScreen
from openshell_cli.tui.keys import STEER_BINDINGS
from openshell_cli.tui.sandbox_view import SandboxScreen


def _steer_keys(bindings) -> list[tuple[str, str]]:
    return [(b.key, b.action) for b in bindings if b.action.startswith("steer(") and b.action != "steer('explain')"]


def test_both_views_steer_with_the_same_keys_in_the_same_order():
    shared = [(b.key, b.action) for b in STEER_BINDINGS]
    assert _steer_keys(SandboxesScreen.BINDINGS) == shared
    assert _steer_keys(SandboxScreen.BINDINGS) == shared


def test_the_keys_screen_fits_80x24_without_wrapping():
    import asyncio

    from openshell_cli.tui.keys import KEYS_HELP
    from openshell_cli.tui.screens import TextScreen
    from textual.app import App
    from textual.containers import VerticalScroll
    from textual.widgets import Static

    lines = KEYS_HELP.rstrip("\n").splitlines()

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(TextScreen("keys", KEYS_HELP))

    async def run() -> None:
        app = Host()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            body = app.screen.query_one("#body", Static)
            assert body.content_region.width >= max(len(ln) for ln in lines)  # no line wraps
            assert body.size.height == len(KEYS_HELP.split("\n"))  # one row per line (the last is the final newline)
            assert app.screen.query_one(VerticalScroll).max_scroll_y == 0  # nothing is cut off

    asyncio.run(run())
