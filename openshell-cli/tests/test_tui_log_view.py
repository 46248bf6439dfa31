"""The log pane's cursor bookkeeping (headless Textual, no gateway): entries stay
matched to their rows while old rows are trimmed, and the cursor stays on its entry."""

from __future__ import annotations

import asyncio

from openshell_cli.tui.log_view import CursorLog
from openshell_cli.tui.model import Denial
from rich.text import Text
from textual.app import App, ComposeResult


def _denial(port: int) -> Denial:
    return Denial(time=0.0, host="h.test", port=port, binary="/usr/bin/curl", ancestors=(), reason="r", policy="-", error="policy_denied")


class LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield CursorLog(id="log", max_lines=12)


def test_the_cursor_selects_entries_and_survives_trimming():
    async def run() -> None:
        app = LogApp()
        async with app.run_test(size=(60, 10)) as pilot:
            log = app.query_one(CursorLog)
            while not log.ready:
                await pilot.pause(0.01)
            for i in range(8):  # every other line a denial; one line wraps over several rows
                text = Text(("x" * 150) if i == 3 else f"line {i}")
                log.add(text, _denial(9000 + i) if i % 2 else None)
            assert log.selected() is None and log.newest_denial() == _denial(9007)
            log.move(-1)  # from the bottom: the newest entry
            assert log.selected().denial == _denial(9007)
            log.move(-4)
            assert log.selected().denial == _denial(9003) and log.selected().rows > 1
            sel = log.selected()
            for i in range(8, 12):  # more lines push the oldest rows out (max_lines=12)
                log.add(Text(f"line {i}"))
            assert log._start_line > 0 and len(log.entries) < 12  # rows were trimmed, their entries too
            assert log.entries[0].start + log.entries[0].rows > log._start_line  # nothing trimmed is kept
            assert log.selected() == sel  # still the same entry
            log.move(-100)
            assert log.cursor == 0
            log.follow()
            assert log.selected() is None and log.auto_scroll

    asyncio.run(run())
