"""Split a streamed reply into thinking and reply text: `<think>…</think>` at its start (DeepSeek-R1, Qwen 3,
QwQ, and the many fine-tunes that copy them).

The tags can arrive cut anywhere (`<thi` + `nk>`), so a tail that may be the start of a tag is held back until
the next piece says what it is. A reply that does not open with `<think>` is all reply; a thinking block that
never closes (max_tokens reached mid-thought) stays thinking. Templates that open the block themselves (the
DeepSeek-R1 distills, QwQ: the generation prompt ends with `<think>`) make the reply start inside it: the engine
says so with an empty Reasoning event first (`prompt_opens_thinking`).
"""

from __future__ import annotations

from typing import Literal

from engines.stop_text import held_tail

OPEN, CLOSE = "<think>", "</think>"
Kind = Literal["reasoning", "reply"]


class ThinkSplitter:
    """Feed it reply text piece by piece; it gives (kind, text) pieces with the tags taken out."""

    __slots__ = ("_held", "_state", "_trim")

    def __init__(self) -> None:
        self._held = ""
        self._state: Literal["start", "thinking", "reply"] = "start"
        self._trim = False  # drop the blank lines a model writes between </think> and its reply

    @property
    def thinking(self) -> bool:
        """Inside an open thinking block."""
        return self._state == "thinking"

    def open(self) -> None:
        """The prompt itself opened the thinking block (its template ends with `<think>`): the reply starts in it."""
        if self._state == "start":
            self._state = "thinking"

    def feed(self, text: str) -> list[tuple[Kind, str]]:
        """The pieces `text` completes (possibly none, while a tag may be starting)."""
        if self._state == "reply" and not self._trim:
            return [("reply", text)] if text else []
        buf, self._held = self._held + text, ""
        out: list[tuple[Kind, str]] = []
        if self._state == "start":
            body = buf.lstrip()
            if not body or (OPEN.startswith(body) and body != OPEN):
                self._held = buf
                return out
            if not body.startswith(OPEN):
                self._state = "reply"
                return [("reply", buf)]
            self._state, buf = "thinking", body[len(OPEN) :]
        if self._state == "thinking":
            end = buf.find(CLOSE)
            if end < 0:
                keep = held_tail(buf, (CLOSE,))
                self._held = buf[len(buf) - keep :] if keep else ""
                thought = buf[: len(buf) - keep]
                return [("reasoning", thought)] if thought else []
            if end:
                out.append(("reasoning", buf[:end]))
            self._state, self._trim, buf = "reply", True, buf[end + len(CLOSE) :]
        if self._trim:
            buf = buf.lstrip()
            if not buf:
                return out
            self._trim = False
        out.append(("reply", buf))
        return out

    def finish(self) -> list[tuple[Kind, str]]:
        """What was held back, at the end of the reply."""
        held, self._held = self._held, ""
        if not held:
            return []
        return [("reasoning" if self._state == "thinking" else "reply", held)]


def prompt_opens_thinking(prompt_tail: str) -> bool:
    """Whether a rendered prompt ends inside an open thinking block (its generation prompt ends with `<think>`)."""
    return prompt_tail.rstrip().endswith(OPEN)
