"""A DataTable of rows that are re-read on a timer (instances, downloads), keyed by id.

`show()` rebuilds the table only when the set or order of keys changed, and
otherwise updates cells in place, so the cursor and scroll stay put. When the
row under the cursor goes away, the cursor lands on the row that took its place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

Cell = str | Text


class LiveTable(DataTable[Cell]):
    """Rows keyed by id; Home and End go to the first and last row."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home", "scroll_top", "First", show=False),
        Binding("end", "scroll_bottom", "Last", show=False),
    ]

    def __init__(self, columns: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.titles = tuple(columns)
        self.keys: list[str] = []
        self._kept: tuple[str | None, int] = (None, 0)

    def on_mount(self) -> None:
        for title in self.titles:
            self.add_column(title, key=title)

    def set_columns(self, titles: Sequence[str], *, rebuild: bool = False) -> None:
        """Show these columns instead (e.g. fewer on a narrow terminal); the next show() refills the rows.

        `rebuild` starts the columns afresh even if the titles are the same: their widths then fit the new cells
        (an auto-width column only ever grows).
        """
        if tuple(titles) == self.titles and not rebuild:
            return
        self._kept = self.current_key, self.cursor_row  # clearing moves the cursor; show() puts it back
        self.titles = tuple(titles)
        self.clear(columns=True)
        for title in self.titles:
            self.add_column(title, key=title)
        self.keys = []

    @property
    def current_key(self) -> str | None:
        """The key of the row under the cursor."""
        row = self.cursor_row
        return self.keys[row] if 0 <= row < len(self.keys) else None

    def show(self, rows: Sequence[tuple[str, Sequence[Cell]]]) -> None:
        """Show (key, cells) rows in this order."""
        keys = [key for key, _ in rows]
        if keys != self.keys:
            keep, row = (self.current_key, self.cursor_row) if self.keys else self._kept
            self.clear()
            for key, cells in rows:
                self.add_row(*cells, key=key)
            self.keys = keys
            if keys:
                self.move_cursor(row=keys.index(keep) if keep in keys else min(row, len(keys) - 1))
        else:
            for key, cells in rows:
                for column, value in zip(self.titles, cells, strict=True):
                    self.update_cell(key, column, value)
