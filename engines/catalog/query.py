"""Filter and sort catalog rows as the catalog screen does, fast enough to run on every keystroke.

Each row gets a lowercase search text once (`RowIndex`); a filter is then a
substring test per word over a list of strings. A filter that extends the
previous one only searches the previous matches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engines.catalog.listing import CatalogRow

SORT_KEYS: tuple[str, ...] = ("name", "size", "params")
"""What the catalog can be sorted by, in the order the sort key cycles."""

SOURCE_ORDER: dict[str, int] = {"local": 0, "hf-cache": 1, "ollama": 2, "remote": 3, "catalog": 4}
"""Models here before models to download, under equal keys."""


def search_text(row: CatalogRow) -> str:
    """What a filter word may match: id, name, family, source, format, quantization, architecture, kind, repo."""
    parts = (row.id, row.name, row.family, row.source, row.format, row.quantization, row.architecture, row.kind)
    return " ".join(p for p in (*parts, row.repo) if p).lower()


def _sort_key(key: str) -> Callable[[CatalogRow], tuple[object, ...]]:
    if key == "name":
        return lambda r: (r.name.lower(), r.id, SOURCE_ORDER.get(r.source, 9))
    if key == "size":
        # Unknown sizes go last whichever way the list runs.
        return lambda r: (r.size_bytes is None, r.size_bytes or 0, r.name.lower(), r.id)
    if key == "params":
        return lambda r: (r.params is None, r.params or 0, r.name.lower(), r.id)
    raise ValueError(f"unknown sort key {key!r}; known: {', '.join(SORT_KEYS)}")


def sort_rows(rows: Sequence[CatalogRow], key: str, *, descending: bool = False) -> list[CatalogRow]:
    """Rows sorted by name, size or params; rows without the value stay at the end either way."""
    ordered = sorted(rows, key=_sort_key(key))
    if not descending:
        return ordered
    known = [r for r in ordered if _has(r, key)]
    return known[::-1] + [r for r in ordered if not _has(r, key)]


def _has(row: CatalogRow, key: str) -> bool:
    return key == "name" or (row.size_bytes if key == "size" else row.params) is not None


@dataclass(slots=True)
class RowIndex:
    """Rows in display order with their search texts; `filter()` remembers its last answer to narrow from it."""

    rows: list[CatalogRow]
    texts: list[str]
    _last_words: tuple[str, ...] = ()
    _last: list[int] | None = None

    @classmethod
    def build(cls, rows: Sequence[CatalogRow]) -> RowIndex:
        return cls(list(rows), [search_text(r) for r in rows])

    def filter(self, text: str) -> list[CatalogRow]:
        """The rows whose search text holds every word of `text` (case-insensitive), in order."""
        words = tuple(text.lower().split())
        if not words:
            self._last_words, self._last = (), None
            return self.rows
        # Typing more only narrows: search the previous matches when every old word is still in a new one.
        narrowing = self._last is not None and _narrows(self._last_words, words)
        candidates = self._last if narrowing and self._last is not None else range(len(self.texts))
        texts = self.texts
        hits = list(candidates)
        for word in sorted(words, key=len, reverse=True):  # the longest word usually rules out the most
            hits = [i for i in hits if word in texts[i]]
        self._last_words, self._last = words, hits
        rows = self.rows
        return [rows[i] for i in hits]


def _narrows(old: tuple[str, ...], new: tuple[str, ...]) -> bool:
    """Whether every row matching `new` also matches `old` (each old word is inside some new word)."""
    return all(any(o in n for n in new) for o in old)
