"""Stop sequences over streamed text: what may be shown now, and what must wait in case a stop is forming."""

from __future__ import annotations

from collections.abc import Sequence


def split_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str, bool]:
    """Split `text` into (safe to emit, held back as a possible stop prefix, a stop was reached)."""
    cut = -1
    for stop in stops:
        i = text.find(stop)
        if i >= 0 and (cut < 0 or i < cut):
            cut = i
    if cut >= 0:
        return text[:cut], "", True
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:k]):
                hold = k
                break
    return text[: len(text) - hold], text[len(text) - hold :], False
