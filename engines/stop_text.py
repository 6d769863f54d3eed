"""Stop sequences over streamed text: what may be shown now, and what must wait in case a stop is forming.

Every engine streams its reply in pieces and cuts it at the first stop sequence, even when the stop arrives split
over several pieces ("<end_" then "of_turn>"). `StopText` is that one hold-back loop: each engine feeds it the
pieces it decodes and shows only what `feed` returns, then `flush`es what was held when the reply ends without a
stop (a held "<en" was just text after all).
"""

from __future__ import annotations

from collections.abc import Sequence


def split_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str, bool]:
    """Split `text` into (safe to emit, held back as a possible stop prefix, a stop was reached).

    A stop found is the end only when no other stop that starts earlier may still be forming at the end of the
    text (stops "b" and "<b<" over "<b": the longer one starts first and decides)."""
    cut = _earliest_stop(text, stops)
    forming = len(text) - held_tail(text, stops)
    if 0 <= cut <= forming:
        return text[:cut], "", True
    return text[:forming], text[forming:], False


def _earliest_stop(text: str, stops: Sequence[str]) -> int:
    """Where the first complete stop in `text` starts, or -1."""
    found = [i for i in (text.find(stop) for stop in stops) if i >= 0]
    return min(found, default=-1)


def held_tail(text: str, markers: Sequence[str]) -> int:
    """How many characters at the end of `text` could be the beginning of one of `markers`."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:size]):
                longest = size
                break
    return longest


class StopText:
    """One reply's text cut at the earliest of `stops`: feed it the pieces, show what it returns."""

    __slots__ = ("_held", "_stops", "stopped")

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._held = ""
        self.stopped = False
        """A stop sequence was reached: the reply ends here, and what follows it is never shown."""

    def feed(self, piece: str) -> str:
        """The text that is safe to show now that `piece` came: all of it when it cannot start a stop, up to a
        stop that it completes (then `stopped` is set), or up to a tail that might start one (held back)."""
        if self.stopped:
            return ""
        if not self._stops:
            return piece
        emit, self._held, self.stopped = split_at_stop(self._held + piece, self._stops)
        return emit

    def flush(self) -> str:
        """What is still held back, for a reply that ended: up to a stop it holds (a longer stop that was still
        forming never came); empty after a stop."""
        held, self._held = self._held, ""
        cut = _earliest_stop(held, self._stops)
        if cut >= 0:
            self.stopped = True
            return held[:cut]
        return held
