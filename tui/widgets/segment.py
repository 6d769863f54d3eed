"""One Markdown segment of a message: drawn once into static lines, parked (lines dropped, height kept) when far.

A streamed frame must not cost a layout of the whole screen. Two things keep it cheap:

- a frozen segment, once its Markdown blocks are laid out, is drawn once into
  strips (`capture`) and its block widgets are dropped: the compositor then
  walks and paints one widget per segment instead of tens;
- the live tail's paragraphs and code fences are updated in place and ask for
  a layout only when their size changes (`TailParagraph`, `TailFence`), so
  most frames repaint only the lines that changed.
"""

from __future__ import annotations

from textual._compositor import Compositor
from textual.app import ComposeResult
from textual.content import Content
from textual.events import Mount
from textual.geometry import Region, Size, Spacing
from textual.strip import Strip
from textual.visual import VisualType
from textual.widget import Widget
from textual.widgets import Label, Markdown, Static
from textual.widgets._markdown import MarkdownParagraph  # not re-exported by textual.widgets.markdown
from textual.widgets.markdown import MarkdownBlock, MarkdownFence

from tui.widgets.segmenter import Piece

CAPTURE_RETRIES = 100
"""Refreshes to wait for a segment's blocks to be laid out before it is drawn into static lines."""


def _sized_without_second_layout(
    widget: Widget, size: Size, virtual_size: Size, container_size: Size, layout: bool = True
) -> bool:
    """Widget._size_updated without the layout Textual asks for again when a size changed.

    The reflow that measured the new size has already placed every widget (and moved an
    anchored log to its bottom); the second, whole-screen reflow would change nothing but
    doubled the cost of every streamed frame that adds a line.
    """
    return Widget._size_updated(widget, size, virtual_size, container_size, layout=False)


class BlankContent(Widget):
    """A container whose children cover its content area: blank lines are drawn only where asked.

    Textual renders every line of a widget's own content whenever it changes
    size; for a message thousands of lines tall that alone would grow with the reply.
    """

    _blank: tuple[int, object, Strip] | None = None
    _blank_lines: tuple[tuple[object, ...], Strip] | None = None
    _size_updated = _sized_without_second_layout

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        visual_style = self.visual_style
        blank = self._blank
        if blank is None or blank[0] != width or blank[1] is not visual_style:
            blank = self._blank = (width, visual_style, Strip.blank(width, visual_style.rich_style))
        return blank[2]

    def render_lines(self, crop: Region) -> list[Strip]:
        # Without border or padding every line is the same blank strip: make it once per width
        # and background instead of once per line per resize (a growing message resizes every frame).
        if self.styles.gutter:
            return super().render_lines(crop)
        style = self.visual_style
        background = self.background_colors[1]
        if style.background != background:  # the style is cached by own styles only: an ancestor changed
            return super().render_lines(crop)
        filters = self.app._filters
        key = (crop.width, style.rich_style, *filters)
        cached = self._blank_lines
        if cached is None or cached[0] != key:
            strip = Strip.blank(crop.width, style.rich_style)
            for line_filter in filters:
                strip = strip.apply_filter(line_filter, background)
            cached = self._blank_lines = (key, strip)
        return [cached[1]] * crop.height


def _update_in_place(widget: Static, content: VisualType, *, width_too: bool = False) -> None:
    """Show `content` in `widget`, asking for a layout only if its size changes (else repaint only)."""
    size = widget.content_size
    if not size:
        widget.update(content)
        return
    container = widget.parent.size if isinstance(widget.parent, Widget) else size
    old_width = widget.get_content_width(container, container) if width_too else 0
    widget.update(content, layout=False)
    new_width = widget.get_content_width(container, container) if width_too else 0
    if new_width != old_width or widget.get_content_height(container, container, size.width) != size.height:
        widget.refresh(layout=True)


class TailParagraph(MarkdownParagraph):
    """A paragraph of the live tail: a frame that adds words but no line repaints it without a layout."""

    _size_updated = _sized_without_second_layout

    def set_content(self, content: Content) -> None:
        self._content = content
        _update_in_place(self, content)


class TailLabel(Label):
    """The code of a live tail's fence."""

    _size_updated = _sized_without_second_layout


class TailFence(MarkdownFence):
    """A code fence of the live tail: relaid out only when it gains a line or a wider one."""

    _size_updated = _sized_without_second_layout

    def compose(self) -> ComposeResult:
        yield TailLabel(self._highlighted_code, id="code-content", expand=True)

    def set_content(self, content: Content) -> None:
        self._content = content
        labels = self.query("#code-content").results(Label)
        for label in labels:
            _update_in_place(label, content, width_too=True)


TAIL_BLOCKS: dict[str, type[MarkdownBlock]] = {
    **Markdown.BLOCKS,
    "paragraph_open": TailParagraph,
    "fence": TailFence,
    "code_block": TailFence,
}
"""Block classes of a live tail: the same look, cheaper updates."""


class Segment(Markdown):
    """A piece of a message's Markdown. Once frozen it is never updated again.

    A frozen segment whose blocks are laid out is drawn once into strips and
    its block widgets are dropped (*static*); when what it is drawn over
    changes (width, the message's or log's background, the theme) the blocks
    are built and drawn again. Far from the viewport a frozen segment is
    *parked*: its blocks and strips are dropped and it keeps its height; near
    again it is rebuilt from its source. So the widgets alive, and the work of
    every layout and paint, stay bounded however long the log grows.
    """

    DEFAULT_CSS = """
    Segment { padding: 0; }
    """

    # Textual's CSS follows a widget's first base class only: borrow the method rather than inherit it.
    _blank: tuple[int, object, Strip] | None = None
    _blank_lines: tuple[tuple[object, ...], Strip] | None = None
    render_line = BlankContent.render_line

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True) -> bool:
        changed = _sized_without_second_layout(self, size, virtual_size, container_size)
        if changed and self.frozen and self.ready and self.children and not self.parked:
            # Laid out anew (blocks placed at last, or a new width): now it can be drawn.
            self._schedule_capture()
        return changed

    def __init__(self, piece: Piece | None = None) -> None:
        super().__init__(piece.markdown if piece is not None else None)
        self.frozen = piece is not None
        """No more text will come."""
        self.ready = False
        """Its blocks are built, so its height is its real height."""
        self.parked = False
        self.split_before = piece.split_before if piece is not None else False
        self.split_after = piece.split_after if piece is not None else False
        self._strips: list[Strip] | None = None
        self._strips_key: tuple[object, ...] = ()
        self._capture_scheduled = False
        self._capture_tries = 0
        self._rebuilding = False
        self.captures = 0
        """How many times the blocks were drawn into strips (a probe for tests)."""

    def get_block_class(self, block_name: str) -> type[MarkdownBlock]:
        """Tail blocks update in place while text may still come; frozen ones are Textual's own."""
        return (self.BLOCKS if self.frozen else TAIL_BLOCKS)[block_name]

    @property
    def static(self) -> bool:
        """Drawn from captured strips, with no block widgets."""
        return self._strips is not None

    @property
    def piece(self) -> Piece:
        """This segment's Markdown and where a code fence was split around it."""
        return Piece(self.source, self.split_before, self.split_after)

    def set_split(self, piece: Piece) -> None:
        """Remember where a code fence continues into the next or from the previous segment."""
        self.split_before = piece.split_before
        self.split_after = piece.split_after

    def freeze(self) -> None:
        """No more text will come: it may be parked, and drawn into static lines, from now on."""
        self.frozen = True
        self.ready = True
        self.join_fences()
        self._schedule_capture()

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
            self._schedule_capture()

    # -- static lines ---------------------------------------------------------------------------------------

    def _lines_key(self) -> tuple[object, ...]:
        """What captured strips depend on besides the source: width, background beneath, theme."""
        return (self.size.width, self.background_colors, self.app.theme, self.app.ansi_theme)

    def _schedule_capture(self, retry: bool = False) -> None:
        if not retry:
            self._capture_tries = 0
        if not self._capture_scheduled and self.is_attached:
            self._capture_scheduled = True
            # After the next refresh the blocks have been laid out at their final size.
            self.call_after_refresh(self._capture)

    async def _capture(self) -> None:
        """Draw the laid-out blocks into strips once, then drop the block widgets."""
        self._capture_scheduled = False
        blocks = self.children
        size = self.size
        if self.parked or not (self.frozen and self.ready) or not blocks:
            return  # nothing to draw: unpark() or a rebuild schedules it again
        if not size or self.lock.is_locked or self._layout_pending():
            # Not laid out (at its latest size) yet, or its blocks are being built: look again after the next refresh.
            if self._capture_tries < CAPTURE_RETRIES:
                self._capture_tries += 1
                self._schedule_capture(retry=True)
            return
        self._capture_tries = 0
        strips = self.picture()
        self._strips, self._strips_key = strips, self._lines_key()
        self.captures += 1
        self.styles.height = len(strips)
        await self._drop_blocks()

    def _layout_pending(self) -> bool:
        """Whether a layout that may change this segment's blocks is still to come (its size would be stale)."""
        if self in self.screen._layout_widgets:  # a block asked for a layout the screen has not done yet
            return True
        if not all(block.size.width for block in self.children if block.display):
            return True  # mounted since the last layout
        return any(widget._layout_required for widget in self.walk_children(Widget, with_self=True))

    def picture(self) -> list[Strip]:
        """What this segment shows, line by line: its strips if static, else its laid-out blocks drawn now."""
        if self._strips is not None and not self.children:
            return list(self._strips)
        # A compositor of its own lays the blocks out as the screen did (same size, cached
        # arrangements) and draws every line, on screen or not.
        compositor = Compositor()
        compositor.reflow(self, self.size)
        return compositor.render_strips(self.size)

    def render_lines(self, crop: Region) -> list[Strip]:
        strips = self._strips
        if strips is None or self.children:
            if self.frozen and self.ready and self.children and not (self.parked or self._capture_scheduled):
                self._schedule_capture()  # shown with its blocks: draw it into static lines when laid out
            return BlankContent.render_lines(self, crop)  # type: ignore[arg-type]
        if self._strips_key != self._lines_key() and not self._rebuilding:
            # Drawn over something else now (selected, focused log, new width or theme): draw again.
            self._rebuilding = True
            self.call_later(self._rebuild)
        width = crop.width
        lines = strips[crop.y : crop.bottom]
        if crop.x or width != self.size.width:
            lines = [strip.crop(crop.x, crop.right) for strip in lines]
        if len(lines) < crop.height:
            lines += [Strip.blank(width, self.visual_style.rich_style)] * (crop.height - len(lines))
        return lines

    async def action_link(self, href: str) -> None:
        """A link clicked in static lines: reported as Markdown's own blocks report it."""
        self.post_message(Markdown.LinkClicked(self, href))

    # -- parking ----------------------------------------------------------------------------------------------

    def park(self) -> None:
        """Drop the block widgets or strips of a frozen, laid-out segment, keeping its height."""
        height = self.outer_size.height
        if self.parked or not (self.frozen and self.ready) or not height:
            return
        self.parked = True
        self.styles.height = height
        self.call_later(self._drop)

    def unpark(self) -> None:
        """Rebuild the block widgets (the height stays fixed until they are built).

        A static segment drawn at another width is rebuilt too.
        """
        if self.parked:
            self.parked = False
            self.call_later(self._rebuild)
        elif self._strips is not None and self._strips_key[:1] != (self.size.width,) and not self._rebuilding:
            self._rebuilding = True
            self.call_later(self._rebuild)

    async def _drop(self) -> None:
        if not self.parked:
            return
        self._strips = None
        await self._drop_blocks()

    async def _drop_blocks(self) -> None:
        await self.remove_children()
        # The cached arrangements and the cached list of displayed children still
        # reference the removed blocks: refresh both, or dropped blocks stay in memory.
        self._clear_arrangement_cache()
        _ = self.displayed_children

    async def _rebuild(self) -> None:
        try:
            if self.parked:
                return
            if not self.children:
                self._strips = None
                await self.update(self.source)
                self.join_fences()
            if not self.parked:
                self.styles.height = "auto"
                self._schedule_capture()
        finally:
            self._rebuilding = False


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
