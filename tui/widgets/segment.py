"""One Markdown segment of a message: drawn once, parked (widgets dropped, height kept) when far away."""

from __future__ import annotations

from textual.events import Mount
from textual.geometry import Spacing
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Label, Markdown
from textual.widgets.markdown import MarkdownBlock, MarkdownFence

from tui.widgets.segmenter import Piece


class BlankContent(Widget):
    """A container whose children cover its content area: blank lines are drawn only where asked.

    Textual renders every line of a widget's own content whenever it changes
    size; for a message thousands of lines tall that alone would grow with the reply.
    """

    _blank: tuple[int, object, Strip] | None = None

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        visual_style = self.visual_style
        blank = self._blank
        if blank is None or blank[0] != width or blank[1] is not visual_style:
            blank = self._blank = (width, visual_style, Strip.blank(width, visual_style.rich_style))
        return blank[2]


class Segment(Markdown):
    """A piece of a message's Markdown. Once frozen it is never updated again.

    Far from the viewport a frozen segment is *parked*: its block widgets are
    removed and it keeps its height; near again it is rebuilt from its source.
    So the widgets alive, and the work of every layout, stay bounded however
    long the log grows.
    """

    DEFAULT_CSS = """
    Segment { padding: 0; }
    """

    # Textual's CSS follows a widget's first base class only: borrow the method rather than inherit it.
    _blank: tuple[int, object, Strip] | None = None
    render_line = BlankContent.render_line

    def __init__(self, piece: Piece | None = None) -> None:
        super().__init__(piece.markdown if piece is not None else None)
        self.frozen = piece is not None
        """No more text will come."""
        self.ready = False
        """Its blocks are built, so its height is its real height."""
        self.parked = False
        self.split_before = piece.split_before if piece is not None else False
        self.split_after = piece.split_after if piece is not None else False

    @property
    def piece(self) -> Piece:
        """This segment's Markdown and where a code fence was split around it."""
        return Piece(self.source, self.split_before, self.split_after)

    def set_split(self, piece: Piece) -> None:
        """Remember where a code fence continues into the next or from the previous segment."""
        self.split_before = piece.split_before
        self.split_after = piece.split_after

    def freeze(self) -> None:
        """No more text will come: it may be parked from now on."""
        self.frozen = True
        self.ready = True
        self.join_fences()

    def join_fences(self) -> None:
        """Draw a code fence split across segments as one block: no gap where it was cut."""
        if not (self.split_before or self.split_after):
            return
        blocks = [child for child in self.children if isinstance(child, MarkdownBlock)]
        if self.split_before and blocks and isinstance(blocks[0], MarkdownFence):
            _trim(blocks[0], top=True)
        if self.split_after and blocks and isinstance(blocks[-1], MarkdownFence):
            _trim(blocks[-1], top=False)

    async def _on_mount(self, event: Mount) -> None:  # type: ignore[override]
        # Textual calls each class's mount handler in turn, Markdown's (the first
        # render) after this one: run them here instead, to know when the blocks are built.
        event.prevent_default()
        Widget._on_mount(self, event)
        await Markdown._on_mount(self, event)
        if self.frozen:
            self.join_fences()
            self.ready = True

    def park(self) -> None:
        """Drop the block widgets of a frozen, laid-out segment, keeping its height."""
        height = self.outer_size.height
        if self.parked or not (self.frozen and self.ready) or not height:
            return
        self.parked = True
        self.styles.height = height
        self.call_later(self._drop)

    def unpark(self) -> None:
        """Rebuild the block widgets (the height stays fixed until they are built)."""
        if self.parked:
            self.parked = False
            self.call_later(self._rebuild)

    async def _drop(self) -> None:
        if not self.parked:
            return
        await self.remove_children()
        # The cached arrangements and the cached list of displayed children still
        # reference the removed blocks: refresh both, or parked blocks stay in memory.
        self._clear_arrangement_cache()
        _ = self.displayed_children

    async def _rebuild(self) -> None:
        if self.parked:
            return
        if not self.children:
            await self.update(self.source)
            self.join_fences()
        if not self.parked:
            self.styles.height = "auto"


def _trim(fence: MarkdownFence, *, top: bool) -> None:
    """Remove a fence's margin and inner padding on one side."""

    def cut(spacing: Spacing) -> tuple[int, int, int, int]:
        t, r, b, left = spacing
        return (0, r, b, left) if top else (t, r, 0, left)

    fence.styles.margin = cut(fence.styles.margin)
    for label in fence.query(Label):
        label.styles.padding = cut(label.styles.padding)


def hide_children(widget: Widget) -> None:
    """Fix a widget's height and take its children out of the layout."""
    widget.styles.height = widget.outer_size.height
    for child in widget.children:
        child.display = False


def show_children(widget: Widget) -> None:
    """Undo hide_children()."""
    for child in widget.children:
        child.styles.clear_rule("display")
        child.refresh(layout=True)  # clearing a rule does not ask for a layout by itself
    widget.styles.height = "auto"


def far(widget: Widget, top: int, bottom: int) -> bool | None:
    """Whether `widget` lies wholly outside screen rows top..bottom; None before it has a place."""
    region = widget.region
    if not region:
        return None
    return region.bottom < top or region.y > bottom


class SegmentGroup(BlankContent):
    """Up to GROUP_SIZE consecutive segments of a message.

    Layout work per frame grows with the number of children of the widgets
    that change; grouping keeps it about (segments / GROUP_SIZE + GROUP_SIZE)
    instead of one per segment, and a far group is parked as one widget.
    """

    DEFAULT_CSS = """
    SegmentGroup { height: auto; layout: vertical; }
    """

    def __init__(self, *segments: Segment) -> None:
        super().__init__(*segments)
        self.parked = False

    def segments(self) -> list[Segment]:
        """The segments of this group, in order."""
        return [child for child in self.children if isinstance(child, Segment)]

    def park(self) -> None:
        """Park every segment and hide them, keeping the group's height (only when all are frozen)."""
        segments = self.segments()
        if self.parked or not self.outer_size.height or not all(s.frozen and s.ready for s in segments):
            return
        for segment in segments:
            segment.park()
        hide_children(self)
        self.parked = True

    def unpark(self) -> None:
        """Show the segments again (still parked: park_segments() rebuilds the near ones)."""
        if self.parked:
            show_children(self)
            self.parked = False

    def park_segments(self, top: int, bottom: int) -> bool:
        """Park the segments outside screen rows top..bottom, rebuild the parked ones inside.

        Returns True when a parked segment has no place yet (just shown: look again after a layout).
        """
        unplaced = False
        for segment in self.segments():
            where = far(segment, top, bottom)
            if where:
                segment.park()
            elif where is not None:
                segment.unpark()
            elif segment.parked:  # it has a fixed height, so it will have a place
                unplaced = True
        return unplaced
