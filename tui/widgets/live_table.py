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
FLEX_MIN = 12
"""The flexible column (Model) is shortened (with …) before a column is dropped, down to this width."""


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def fit_columns(
    rows: Sequence[Sequence[Cell]],
    width: int,
    columns: Sequence[str],
    drops: Sequence[str],
    flex: str = "Model",
) -> tuple[list[str], int]:
    """The columns that fit in `width` cells (dropping `drops` in order) and the width left for `flex`, the
    column shortened first (down to FLEX_MIN).

    Each column takes its widest cell or title plus the table's padding of one cell on each side.
    """
    natural = {t: max([len(t), *(len(_plain(r[i])) for r in rows)]) for i, t in enumerate(columns)}
    shown = list(columns)
    room = 0
    for drop in (None, *drops):
        if drop is not None:
            shown.remove(drop)
        room = width - sum(natural[t] + 2 for t in shown if t != flex) - 2
        if room >= min(natural[flex], FLEX_MIN):
            break
    return shown, max(5, min(natural[flex], room))


def shorten(text: str, width: int) -> str:
    """`text` cut to `width` cells with an ellipsis where it was cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


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
        self._layout: tuple[tuple[str, ...], tuple[int, ...]] = (self.titles, ())
        """The columns shown and their widths (show_fitted), to rebuild the columns only when they change."""

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

    def show_fitted(
        self, rows: Sequence[tuple[str, Sequence[Cell]]], columns: Sequence[str], drops: Sequence[str]
    ) -> None:
        """Show (key, cells-for-every-column) rows with the columns that fit the table's width: `drops` given up
        in order, Model shortened first (fit_columns)."""
        cells = [r for _, r in rows]
        width = self.scrollable_content_region.width
        shown, model_width = fit_columns(cells, width, columns, drops) if width > 0 else (list(columns), 0)
        picks = [columns.index(t) for t in shown]
        model = columns.index("Model")
        shown_rows = [
            [shorten(_plain(r[c]), model_width) if c == model and model_width else r[c] for c in picks] for r in cells
        ]
        # A column's width is set when it is built and does not follow its cells ("474 MB" shown as "474"
        # after a load): build the columns again whenever the widest cell of one changes.
        widths = tuple(max([len(t), *(len(_plain(r[k])) for r in shown_rows)]) for k, t in enumerate(shown))
        layout = (tuple(shown), widths)
        self.set_columns(shown, rebuild=layout != self._layout)
        self._layout = layout
        self.show([(key, r) for (key, _), r in zip(rows, shown_rows, strict=True)])
