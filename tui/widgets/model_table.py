"""The catalog's model list: a virtual table that draws only the rows on screen.

Textual's DataTable measures and stores every cell it is given: refilling it
with 5,000 rows took ~190 ms here, and its first draw 1.6 s. A filter runs on
every keystroke, so this table keeps a list of rows and renders the visible
lines on demand (the line API): replacing the rows costs a list assignment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engines.catalog.fit import human_bytes, human_params
from engines.catalog.listing import CatalogRow

BADGES: dict[str, str] = {
    "local": "local",
    "hf-cache": "hf-cache",
    "ollama": "ollama",
    "remote": "remote",
    "catalog": "download",
}
"""The source column: where a model is, or that it can be downloaded."""


def fit_label(row: CatalogRow) -> str:
    """A short fit verdict for the table: ✓ RAM, ✓ GPU 0, ~ partial, ✗ too big, ✗ disk, broken, or -."""
    if row.status != "ok":
        return "broken"
    if row.fit is None:
        return "-"
    verdict = row.fit.verdict
    if verdict.startswith("does not fit"):
        return "✗ too big"
    if "exceeds free disk" in verdict:
        return "✗ disk"
    if verdict.startswith("fits on GPU"):
        return "✓ GPU " + verdict.removeprefix("fits on GPU ")
    if verdict.startswith("partial"):
        return "~ partial"
    return "✓ RAM"


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    width: int
    """Cells wide; 0 = takes what the fixed columns leave."""
    cell: Callable[[CatalogRow], str]
    right: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("Source", 9, lambda r: BADGES.get(r.source, r.source)),
    Column("Model", 0, lambda r: f"{r.id} (base)" if r.kind == "base" else r.id),
    Column("Params", 7, lambda r: human_params(r.params), right=True),
    Column("Quant", 8, lambda r: r.quantization or "-"),
    Column("Size", 9, lambda r: human_bytes(r.size_bytes) if r.size_bytes else "-", right=True),
    Column("Fit", 10, fit_label),
)
SORTABLE: dict[str, str] = {"Model": "name", "Size": "size", "Params": "params"}
"""Column titles whose header click sorts the list, and the sort key they stand for."""


class ModelTable(ScrollView, can_focus=True):
    """Rows of CatalogRow with a cursor; the first line is the column header."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "choose", "Launch", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "model-table--header",
        "model-table--cursor",
        "model-table--local",
        "model-table--hf-cache",
        "model-table--ollama",
        "model-table--remote",
        "model-table--catalog",
        "model-table--broken",
        "model-table--fits",
        "model-table--no-fit",
    }
    DEFAULT_CSS = """
    ModelTable { background: $surface; }
    ModelTable > .model-table--header { text-style: bold; color: $text-accent; background: $panel; }
    ModelTable > .model-table--cursor { background: $block-cursor-blurred-background; }
    ModelTable:focus > .model-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    ModelTable > .model-table--local { color: $text-success; }
    ModelTable > .model-table--hf-cache { color: $text-primary; }
    ModelTable > .model-table--ollama { color: $text-accent; }
    ModelTable > .model-table--remote { color: $text-secondary; }
    ModelTable > .model-table--catalog { color: $text-muted; }
    ModelTable > .model-table--broken { color: $text-error; }
    ModelTable > .model-table--fits { color: $text-success; }
    ModelTable > .model-table--no-fit { color: $text-warning; }
    """

    cursor: reactive[int] = reactive(0, always_update=True, init=False)

    class Highlighted(Message):
        """The cursor moved to another row (None: the list is empty)."""

        def __init__(self, row: CatalogRow | None) -> None:
            super().__init__()
            self.row = row

    class Chosen(Message):
        """Enter on a row."""

        def __init__(self, row: CatalogRow) -> None:
            super().__init__()
            self.row = row

    class HeaderClicked(Message):
        """A sortable column header was clicked."""

        def __init__(self, sort_key: str) -> None:
            super().__init__()
            self.sort_key = sort_key

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rows: list[CatalogRow] = []
        self._styles: dict[str, Style] = {}
        """Resolved styles by component class ("" = the widget's own); computing them is most of a line's cost."""
        self._widths: list[int] | None = None

    @property
    def rows(self) -> list[CatalogRow]:
        """The rows shown, in order."""
        return self._rows

    @property
    def current(self) -> CatalogRow | None:
        """The row under the cursor."""
        return self._rows[self.cursor] if 0 <= self.cursor < len(self._rows) else None

    def set_rows(self, rows: Sequence[CatalogRow], *, keep: str | None = None) -> None:
        """Show `rows`; the cursor stays on the row with id `keep` when it is still there, else goes to the top."""
        self._rows = list(rows)
        self.virtual_size = Size(self.size.width, len(self._rows) + 1)
        index = next((i for i, r in enumerate(self._rows) if r.id == keep), 0) if keep else 0
        self.scroll_to(y=0, animate=False, immediate=True)
        self.cursor = index
        self._follow_cursor()  # the cursor may keep its index (no watch_cursor) while the scroll went to the top
        self.refresh()

    def widths(self) -> list[int]:
        """Each column's width at the current size (the Model column takes the rest, at least 12)."""
        if self._widths is None:
            fixed = sum(c.width + 1 for c in COLUMNS if c.width)
            flexible = max(12, self.scrollable_content_region.width - fixed - 1)
            self._widths = [c.width or flexible for c in COLUMNS]
        return self._widths

    def notify_style_update(self) -> None:
        self._styles.clear()  # a theme change or a CSS reload
        super().notify_style_update()

    def _on_focus(self, event: events.Focus) -> None:
        self._styles.clear()  # the cursor's colour follows focus
        super()._on_focus(event)

    def _on_blur(self, event: events.Blur) -> None:
        self._styles.clear()
        super()._on_blur(event)

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            if not name:
                style = self.rich_style
            elif name in ("model-table--header", "model-table--cursor"):
                style = self.get_component_rich_style(name)
            else:  # only the colour: the cursor's background must show through
                partial = self.get_component_rich_style(name, partial=True)
                style = Style(color=partial.color, bold=partial.bold)
            self._styles[name] = style
        return style

    # -- drawing ------------------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if y == 0:
            header = self._style("model-table--header")
            return self._line([c.title for c in COLUMNS], [header] * len(COLUMNS), header, width)
        index = self.scroll_offset.y + y - 1
        if index >= len(self._rows):
            return Strip.blank(width, self._style(""))
        row = self._rows[index]
        base = self._style("model-table--cursor" if index == self.cursor else "")
        styles = [base] * len(COLUMNS)
        styles[0] = base + self._style(f"model-table--{row.source}")
        if row.status != "ok":
            styles[-1] = base + self._style("model-table--broken")
        elif row.fit is not None:
            styles[-1] = base + self._style("model-table--fits" if row.fit.fits else "model-table--no-fit")
        return self._line([c.cell(row) for c in COLUMNS], styles, base, width)

    def _line(self, cells: list[str], styles: list[Style], base: Style, width: int) -> Strip:
        segments = [Segment(" ", base)]
        for column, text, cell_width, style in zip(COLUMNS, cells, self.widths(), styles, strict=True):
            if len(text) > cell_width:
                text = text[: cell_width - 1] + "…"
            segments.append(Segment(text.rjust(cell_width) if column.right else text.ljust(cell_width), style))
            segments.append(Segment(" ", base))
        return Strip(segments).adjust_cell_length(width, base).crop(0, width)

    # -- moving -------------------------------------------------------------------------------------------

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self._rows) - 1))

    def watch_cursor(self, old: int, new: int) -> None:
        self._follow_cursor()
        self.refresh()
        self.post_message(self.Highlighted(self.current))

    def _follow_cursor(self, retry: bool = True) -> None:
        """Scroll so the cursor's row shows; again after the next refresh when the rows just arrived and the
        scrollable height does not reach it yet (a scroll past the end is clamped, leaving the cursor hidden)."""
        visible = max(1, self.scrollable_content_region.height - 1)
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            want = self.cursor - visible + 1
            self.scroll_to(y=want, animate=False, immediate=True)
            if retry and want > self.max_scroll_y:
                self.call_after_refresh(self._follow_cursor, False)

    def action_cursor(self, step: int) -> None:
        self.cursor += step

    def action_page(self, direction: int) -> None:
        self.cursor += direction * max(1, self.scrollable_content_region.height - 2)

    def action_jump(self, index: int) -> None:
        self.cursor = index if index >= 0 else len(self._rows) - 1

    def action_choose(self) -> None:
        if self.current is not None:
            self.post_message(self.Chosen(self.current))

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            x = event.x - 1
            for column, cell_width in zip(COLUMNS, self.widths(), strict=True):
                if 0 <= x < cell_width + 1 and column.title in SORTABLE:
                    self.post_message(self.HeaderClicked(SORTABLE[column.title]))
                    return
                x -= cell_width + 1
            return
        index = int(self.scroll_offset.y) + event.y - 1
        if 0 <= index < len(self._rows):
            if index == self.cursor and event.chain > 1:
                self.action_choose()
            self.cursor = index

    def on_resize(self) -> None:
        self._widths = None
        self.virtual_size = Size(self.size.width, len(self._rows) + 1)
        # A table that shrinks (the detail pane below fills in) must not leave its cursor row out of view.
        self.call_after_refresh(self._follow_cursor, False)
