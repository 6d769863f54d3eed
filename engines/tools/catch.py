"""Catch tool calls in a streamed reply: text is passed on until a call begins, then held and parsed at the end.

A call begins at a marker (`<tool_call>`, `[TOOL_CALLS]`, `<|python_tag|>`) anywhere in the reply, or with `{` /
`[` as the reply's first character (Llama 3's plain JSON, a grammar-forced call). A tail that may be a marker's
beginning is held until the next piece decides. Held text that does not parse as calls is handed on as text at
the end, so nothing the model wrote is lost.
"""

from __future__ import annotations

from engines.stop_text import held_tail
from engines.tools.parse import JSON_STARTS, MARKERS, parse_calls
from engines.types import ToolCall


class CallCatcher:
    """Feed it reply text; it returns the text that is safe to show now, and the calls at `finish`."""

    __slots__ = ("_caught", "_held", "_started")

    def __init__(self) -> None:
        self._held = ""
        self._caught = False
        self._started = False

    def feed(self, text: str) -> str:
        """The part of the reply so far that is certainly not a call."""
        if self._caught:
            self._held += text
            return ""
        buf, self._held = self._held + text, ""
        if not self._started:
            body = buf.lstrip()
            if not body:
                self._held = buf
                return ""
            self._started = True
            if body.startswith(JSON_STARTS):
                self._caught, self._held = True, buf
                return ""
        found = [at for at in (buf.find(marker) for marker in MARKERS) if at >= 0]
        if found:
            at = min(found)
            self._caught, self._held = True, buf[at:]
            return buf[:at]
        keep = held_tail(buf, MARKERS)
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def finish(self) -> tuple[str, tuple[ToolCall, ...]]:
        """(text still to hand on, the calls): the held text parsed, or handed on whole when it is not calls."""
        held, self._held = self._held, ""
        if self._caught and (parsed := parse_calls(held)) is not None:
            return parsed.content, parsed.calls
        return held, ()
