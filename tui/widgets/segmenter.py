"""Cut a growing Markdown text into finished segments and one live tail.

A streaming reply is shown as a few frozen Markdown widgets plus one live
widget holding only the text whose blocks may still change. This module
decides where the cuts go; it knows nothing about Textual.

Cuts fall only where every block before them is finished:

- after a blank line, at a line that starts in column 0 (unless that line is
  one more item of the list the blank line interrupted);
- before a column-0 code fence (```` ``` ```` or ``~~~``), which ends any
  paragraph or list before it;
- after the closing line of a code fence;
- inside a column-0 fence that is still open, every ``fence_lines`` lines
  (once one more line has come): the piece gets a synthetic closing fence and
  the rest a synthetic opener with the same info string, so both still render
  as code;
- before a column-0 line once the current block has grown past
  ``force_chars`` (a very long list or paragraph), except table rows and
  setext underlines.

A cut is only taken once the segment before it holds ``segment_chars``, so a
long reply becomes tens of segments, not one per block. Every decision
depends on the text alone, never on how it was chunked, so streaming a text
and splitting it whole give the same pieces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEGMENT_CHARS = 1500
"""A segment is frozen at the first block boundary after it holds this many characters."""
FORCE_CHARS = 12000
"""A single block longer than this is cut at the next column-0 line."""
FENCE_LINES = 40
"""An open column-0 code fence is frozen every this many lines."""

_FENCE_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_FENCE_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*$")
_LIST_ITEM = re.compile(r"^([-*+]|\d{1,9}[.)])([ \t]|$)")
_SETEXT = re.compile(r"^(=+|-+)[ \t]*$")
_LIST_START = frozenset("-*+0123456789")


@dataclass(frozen=True, slots=True)
class Piece:
    """One segment's Markdown source, and whether a code fence was split at its start or end."""

    markdown: str
    split_before: bool = False
    split_after: bool = False


def _list_item(text: str, complete: bool) -> bool | None:
    """Whether `text` starts with a list marker; None while a partial line cannot tell yet."""
    if complete:
        return _LIST_ITEM.match(text) is not None
    if not text:
        return None
    if text[0] in "-*+":
        return None if len(text) < 2 else text[1] in " \t"
    index = 0
    while index < len(text) and text[index].isdigit():
        index += 1
    if index == 0 or index > 9:
        return False
    if index == len(text):
        return None
    if text[index] not in ".)":
        return False
    return None if index + 1 == len(text) else text[index + 1] in " \t"


class Segmenter:
    """Consumes streamed Markdown and returns the segments that became final."""

    def __init__(
        self, segment_chars: int = SEGMENT_CHARS, force_chars: int = FORCE_CHARS, fence_lines: int = FENCE_LINES
    ) -> None:
        self.segment_chars = segment_chars
        self.force_chars = force_chars
        self.fence_lines = fence_lines
        self._buf = ""  # the live segment's Markdown (may start with a synthetic fence opener)
        self._pos = 0  # start of the first line not yet classified
        self._split_before = False
        self._fence: tuple[str, int, str, bool] | None = None  # char, length, opener line, splittable
        self._fence_count = 0
        self._blank = False  # the last classified line was blank, outside a fence
        self._block_start = 0
        self._block_list = False  # the current block holds a column-0 list item
        self._out: list[Piece] = []

    @property
    def live(self) -> str:
        """The Markdown of the segment still open."""
        return self._buf

    @property
    def live_split_before(self) -> bool:
        """Whether the open segment starts with a synthetic fence opener."""
        return self._split_before

    def feed(self, text: str) -> list[Piece]:
        """Add streamed text; return the segments it finished, in order."""
        self._buf += text
        buf_find = self._buf.find
        while (newline := buf_find("\n", self._pos)) >= 0:
            start = self._pos
            self._pos = newline + 1
            self._line(self._buf[start:newline].rstrip("\r"), start)
            buf_find = self._buf.find
        if self._pos < len(self._buf) and self._fence is None:
            self._early(self._buf[self._pos :])
        out, self._out = self._out, []
        return out

    def finish(self) -> Piece:
        """The last segment, once no more text will come."""
        return Piece(self._buf, self._split_before, False)

    def _cut(self, pos: int) -> int:
        """A block boundary at `pos`; freeze the segment before it if it is big enough."""
        self._block_start = pos
        if pos < self.segment_chars:
            return 0
        self._out.append(Piece(self._buf[:pos], self._split_before, False))
        self._buf = self._buf[pos:]
        self._pos -= pos
        self._block_start = 0
        self._split_before = False
        return pos

    def _early(self, partial: str) -> None:
        """Decide a boundary at the start of an unfinished line as soon as its first characters allow."""
        start = self._pos
        first = partial[0]
        if first in " \t\r":
            return
        if self._blank:
            if self._block_list and first in _LIST_START:
                item = _list_item(partial, complete=False)
                if item is None or item:
                    return
            self._blank = False
            self._block_list = False
            self._cut(start)
        else:
            fence_start = partial.startswith(("```", "~~~"))
            forced = start - self._block_start >= self.force_chars and first not in "|=-"
            if fence_start or forced:
                self._cut(start)

    def _line(self, line: str, start: int) -> None:
        """Classify one complete line that starts at `start` in the buffer."""
        end = self._pos
        if self._fence is not None:
            char, length, opener, splittable = self._fence
            close = _FENCE_CLOSE.match(line)
            if close and close.group(1)[0] == char and len(close.group(1)) >= length:
                self._fence = None
                self._blank = False
                self._cut(end)
                return
            self._fence_count += 1
            if splittable and self._fence_count > self.fence_lines:
                # Freeze the fence's first lines as a piece of their own (closed by a synthetic
                # fence); this line starts the rest, behind a synthetic opener. Cutting only once
                # a further line exists never leaves an empty fence on screen.
                self._out.append(Piece(self._buf[:start] + char * length + "\n", self._split_before, True))
                self._buf = opener + "\n" + self._buf[start:]
                self._pos = len(opener) + 1 + end - start
                self._block_start = 0
                self._split_before = True
                self._fence_count = 1
            return
        if not line.strip():
            self._blank = True
            return
        first = line[0]
        if first not in " \t\r":
            is_item = _list_item(line, complete=True)
            natural = self._blank and not (is_item and self._block_list)
            fence_start = line.startswith(("```", "~~~"))
            forced = start - self._block_start >= self.force_chars and first != "|" and _SETEXT.match(line) is None
            if natural or fence_start or forced:
                start -= self._cut(start)
                self._block_list = False
            if is_item:
                self._block_list = True
        self._blank = False
        opened = _FENCE_OPEN.match(line)
        if opened and not (opened.group(2)[0] == "`" and "`" in opened.group(3)):
            indent = len(opened.group(1))
            self._fence = (opened.group(2)[0], len(opened.group(2)), line, indent == 0)
            self._fence_count = 0


def split_markdown(
    text: str, segment_chars: int = SEGMENT_CHARS, force_chars: int = FORCE_CHARS, fence_lines: int = FENCE_LINES
) -> list[Piece]:
    """Cut a finished text into the same pieces streaming it would give (no empty pieces)."""
    segmenter = Segmenter(segment_chars, force_chars, fence_lines)
    pieces = segmenter.feed(text)
    last = segmenter.finish()
    if last.markdown:
        pieces.append(last)
    return pieces
