"""Pieces the gauges screen is drawn with: number formats, bars, a readout, and a gauge row with its history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.app import RenderResult
from textual.color import Color
from textual.content import Content
from textual.strip import Strip
from textual.visual import Visual
from textual.widget import Widget
from textual.widgets import Sparkline

# The byte formats live with the telemetry, shared with `llm-tui gauges`; the panels import them from here.
from engines.telemetry.units import NA as NA
from engines.telemetry.units import human_bytes as human_bytes
from engines.telemetry.units import used_of as used_of

BLOCKS = " ▏▎▍▌▋▊▉█"
"""Eighths of a cell, for bars finer than one character."""
TICKS = "▁▂▃▄▅▆▇█"
LABEL = 6
"""Width of the first column."""
BAR = 20
VALUE = 13
READOUT = LABEL + BAR + 1 + VALUE
"""Width of a gauge_line: label, bar, number."""
GAP = 2
"""Between a readout and its history."""


def pct(value: float | None) -> str:
    """ "63%", or N/A."""
    return NA if value is None else f"{value:.0f}%"


def ratio(part: float | None, whole: float | None) -> float | None:
    """part/whole clamped to 0..1, or None when unknown."""
    if part is None or not whole:
        return None
    return min(1.0, max(0.0, part / whole))


def level_style(value: float | None, warn: float = 0.75, alarm: float = 0.9) -> str:
    """Green below `warn`, then warning, then error from `alarm` (theme variables, so every theme works)."""
    if value is None:
        return "$text-muted"
    return "$error" if value >= alarm else "$warning" if value >= warn else "$success"


def bar(fraction: float | None, width: int, style: str | None = None) -> Content:
    """A horizontal bar `width` cells wide, filled to `fraction` in eighths of a cell."""
    if fraction is None:
        return Content.styled("─" * width, "$text-muted 50%")
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + (BLOCKS[part] if part and full < width else "")
    return Content.assemble(
        (filled, style or level_style(fraction)),
        ("─" * (width - len(filled)), "$text-muted 50%"),
    )


def ticks(values: Sequence[float | None], top: float = 100.0) -> Content:
    """One vertical mini bar per value (per-core CPU load); None shows as a dim dot."""
    parts: list[tuple[str, str]] = []
    for value in values:
        fraction = ratio(value, top)
        if fraction is None:
            parts.append(("·", "$text-muted"))
        else:
            parts.append((TICKS[min(len(TICKS) - 1, int(fraction * len(TICKS)))], level_style(fraction)))
    return Content.assemble(*parts)


def label(text: str) -> Content:
    """A row's name in the first column ("util", "cores"), so values line up under each other."""
    return Content.styled(f"{text:<{LABEL}}", "$text-muted")


def gauge_line(name: str, fraction: float | None, value: str, *, width: int = BAR, value_width: int = VALUE) -> Content:
    """ "util  ████▌────      63%": a label, a bar and its number, in fixed columns so rows line up."""
    return Content.assemble(
        label(name),
        bar(fraction, width),
        (f" {value:>{value_width}}", "$text" if fraction is not None else "$text-muted"),
    )


class Readout(Widget):
    """Shows one piece of Content; `show` repaints only when the content really changed."""

    DEFAULT_CSS = """
    Readout {
        height: auto;
        width: 1fr;
    }
    """

    def __init__(self, content: Content | str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.content = Content(content) if isinstance(content, str) else content

    def show(self, content: Content | str) -> None:
        new = Content(content) if isinstance(content, str) else content
        if new.is_same(self.content):
            return
        height_before = self._height(self.content)
        self.content = new
        # A new line count changes the height; otherwise a repaint is enough (no layout pass).
        self.refresh(layout=self._height(new) != height_before)

    def _height(self, content: Content) -> int:
        """Lines `content` takes at this width: its own lines, wrapped where the style wraps."""
        width = self.content_region.width
        if self.styles.text_wrap == "nowrap" or width <= 0:
            return content.plain.count("\n") + 1
        return content.get_height(self.styles, width)  # type: ignore[arg-type]  # as Widget calls it

    def render(self) -> RenderResult:
        return self.content


class GaugeRow(Sparkline):
    """A readout ("util ████▌── 63%") and its history on one line, the history on a fixed scale (0..`top`).

    The history is drawn one cell per sample, newest on the right. Textual's own sparkline stretches
    a short history across the width and scales to the data's min..max, which makes 3 % → 5 % look
    like a full swing; a gauge needs an absolute scale. One widget per row (not a readout beside a
    sparkline) keeps the repaint each second small: the compositor redraws every widget in the
    updated area.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {*Sparkline.COMPONENT_CLASSES, "gaugerow--empty"}
    DEFAULT_CSS = """
    GaugeRow {
        width: 1fr;
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    GaugeRow > .gaugerow--empty {
        color: $text-muted 30%;
    }
    """

    def __init__(self, top: float = 100.0, *, classes: str | None = None) -> None:
        self._styles: tuple[Style, list[Style]] | None = None
        self._left: Strip | None = None
        super().__init__([], classes=classes)
        self.top = top
        self.content = Content()

    def show(self, readout: Content, values: Sequence[float], top: float | None = None) -> None:
        """Show `readout` and `values` (oldest first) against `top`; repaints only when something changed."""
        if top is not None and top > 0 and top != self.top:
            self.top = top
            self.refresh()
        if not readout.is_same(self.content):
            self.content = readout
            self._left = None
            self.refresh()
        self.plot(values)

    def plot(self, values: Sequence[float]) -> None:
        """Show the history `values`, oldest first."""
        self.data = list(values)  # a reactive: repaints only when the values differ

    def notify_style_update(self) -> None:
        self._styles = None  # the theme or the CSS changed: blend the colours again
        self._left = None
        super().notify_style_update()

    def _tick_styles(self) -> tuple[Style, list[Style]]:
        """The baseline's style and one per tick height, blended from the sparkline's min to max colour."""
        if self._styles is None:
            _, background = self.background_colors
            low = background + self.get_component_styles("sparkline--min-color").color
            high = background + self.get_component_styles("sparkline--max-color").color
            base = self.rich_style
            empty = base + _fg(background + self.get_component_styles("gaugerow--empty").color)
            self._styles = (empty, [base + _fg(low.blend(high, i / (len(TICKS) - 1))) for i in range(len(TICKS))])
        return self._styles

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y != 0 or width <= 0:
            return Strip.blank(width, self.rich_style)
        if self._left is None:
            strips = Visual.to_strips(self, self.content, READOUT + GAP, 1, self.visual_style, pad=True)
            self._left = strips[0] if strips else Strip.blank(READOUT + GAP, self.rich_style)
        graph = width - READOUT - GAP
        if graph <= 0:
            return self._left.crop(0, width)
        values = list(self.data or [])[-graph:]
        empty, styles = self._tick_styles()
        # Where there is no history yet, a faint baseline shows how far the chart reaches.
        segments = [Segment("·" * (graph - len(values)), empty)] if len(values) < graph else []
        top, last = self.top, len(TICKS) - 1
        for value in values:
            level = min(last, max(0, int(value / top * len(TICKS)))) if top > 0 else 0
            segments.append(Segment(TICKS[level], styles[level]))
        return Strip.join([self._left, Strip(segments, graph)])


def _fg(color: Color) -> Style:
    return Style(color=color.rich_color)
