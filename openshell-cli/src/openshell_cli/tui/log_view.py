"""The sandbox view's log pane: a :class:`~textual.widgets.RichLog` with a line cursor.

Each entry (one log line, possibly wrapped over several rows) remembers the
denial it shows, so ``e`` can explain the entry under the cursor. Without a
cursor the pane follows the newest line; moving the cursor stops following
(new lines still arrive below), ``G``/End goes back to following.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.strip import Strip
from textual.widgets import RichLog

from openshell_cli.tui.model import Denial

CURSOR_STYLE = Style(reverse=True)  # readable with NO_COLOR too


@dataclass(frozen=True)
class Entry:
    """One written line: its first row (counted from the first row ever written) and row count."""

    start: int
    rows: int
    denial: Denial | None


class CursorLog(RichLog):
    """A log whose entries a cursor can select. ``cursor`` is an index into
    :attr:`entries` (None: no selection, follow the newest line)."""

    # Over RichLog's own (line scrolling): while it has the focus these win.
    BINDINGS = [
        Binding("j,down", "cursor(1)", show=False),
        Binding("k,up", "cursor(-1)", show=False),
        Binding("G,end", "follow", show=False),
    ]

    def __init__(self, *, max_lines: int, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id, max_lines=max_lines, wrap=True, markup=False, min_width=20)
        self.entries: list[Entry] = []
        self.cursor: int | None = None

    @property
    def ready(self) -> bool:
        """True once the pane has a size: :meth:`add` needs it to count the rows of an entry."""
        return bool(self._size_known)

    def add(self, text: Text, denial: Denial | None = None) -> None:
        """Write one entry (call only when :attr:`ready`)."""
        start = self._start_line + len(self.lines)
        self.write(text, scroll_end=self.cursor is None)
        self.entries.append(Entry(start, self._start_line + len(self.lines) - start, denial))
        self._forget_trimmed()

    def _forget_trimmed(self) -> None:
        """Drop entries whose rows ``max_lines`` pushed out (and keep the cursor on its entry)."""
        gone = 0
        while gone < len(self.entries) and self.entries[gone].start + self.entries[gone].rows <= self._start_line:
            gone += 1
        if gone:
            del self.entries[:gone]
            if self.cursor is not None:
                self.cursor = max(0, self.cursor - gone) if self.entries else None

    def clear(self) -> CursorLog:
        super().clear()
        self.entries.clear()
        self.cursor = None
        return self

    def move(self, delta: int) -> None:
        """Move the cursor ``delta`` entries (from the newest when there is none) and show it."""
        if not self.entries:
            return
        at = len(self.entries) if self.cursor is None else self.cursor
        self.cursor = min(len(self.entries) - 1, max(0, at + delta))
        self.auto_scroll = False
        self._show_cursor()
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        self.move(delta)

    def action_follow(self) -> None:
        self.follow()

    def follow(self) -> None:
        """No cursor: follow the newest line again."""
        self.cursor = None
        self.auto_scroll = True
        self.scroll_end(animate=False)
        self.refresh()

    def _show_cursor(self) -> None:
        assert self.cursor is not None
        e = self.entries[self.cursor]
        top = e.start - self._start_line
        height = self.scrollable_content_region.height or 1
        if top < self.scroll_y:
            self.scroll_to(y=top, animate=False)
        elif top + e.rows > self.scroll_y + height:
            self.scroll_to(y=top + e.rows - height, animate=False)

    def selected(self) -> Entry | None:
        """The entry under the cursor (None without a cursor)."""
        if self.cursor is None or not self.entries:
            return None
        return self.entries[self.cursor]

    def newest_denial(self) -> Denial | None:
        """The newest entry's denial among those still shown."""
        return next((e.denial for e in reversed(self.entries) if e.denial is not None), None)

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        entry = self.selected()
        if entry is not None:
            row = self.scroll_offset.y + y + self._start_line
            if entry.start <= row < entry.start + entry.rows:
                return strip.apply_style(CURSOR_STYLE)
        return strip
