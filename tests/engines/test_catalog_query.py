"""Filtering and sorting catalog rows (what the catalog screen runs per keystroke)."""

from __future__ import annotations

import pytest

from engines.catalog.listing import CatalogRow
from engines.catalog.query import RowIndex, search_text, sort_rows


def row(
    id: str, *, size: int | None = None, params: int | None = None, source: str = "catalog", **kw: str
) -> CatalogRow:
    name = kw.pop("name", id)
    return CatalogRow(id=id, name=name, source=source, format="gguf", size_bytes=size, params=params, **kw)


ROWS = [
    row("qwen2.5-7b-q4_k_m", size=4_700, params=7_600, family="qwen2.5", quantization="Q4_K_M"),
    row("gemma-3-270m", size=253, params=268, family="gemma3", source="local", quantization="Q4_K_M"),
    row("llama-3.2-1b-q8_0", size=1_300, params=None, family="llama3.2", quantization="Q8_0"),
    row("nomic-embed-text", size=None, params=137, family="nomic-bert", kind="embedding"),
]


def ids(rows: list[CatalogRow]) -> list[str]:
    return [r.id for r in rows]


def test_every_word_must_match_somewhere_case_insensitively() -> None:
    index = RowIndex.build(ROWS)
    assert ids(index.filter("Q4_K")) == ["qwen2.5-7b-q4_k_m", "gemma-3-270m"]
    assert ids(index.filter("q4_k local")) == ["gemma-3-270m"]
    assert ids(index.filter("embedding")) == ["nomic-embed-text"]
    assert ids(index.filter("  ")) == ids(ROWS)
    assert index.filter("no-such-model") == []


def test_narrowing_gives_the_same_answer_as_a_fresh_search() -> None:
    index = RowIndex.build(ROWS)
    typed = ""
    for char in "llama q8":
        typed += char
        assert ids(index.filter(typed)) == ids(RowIndex.build(ROWS).filter(typed)), typed
    # Deleting and replacing a word widens again.
    for text in ("llama q", "llama", "gem", "ge", "gemma 3"):
        assert ids(index.filter(text)) == ids(RowIndex.build(ROWS).filter(text)), text


def test_search_text_covers_the_columns_people_type() -> None:
    text = search_text(ROWS[1])
    for part in ("gemma-3-270m", "gemma3", "local", "gguf", "q4_k_m"):
        assert part in text


@pytest.mark.parametrize(
    ("key", "descending", "expected"),
    [
        ("name", False, ["gemma-3-270m", "llama-3.2-1b-q8_0", "nomic-embed-text", "qwen2.5-7b-q4_k_m"]),
        ("size", False, ["gemma-3-270m", "llama-3.2-1b-q8_0", "qwen2.5-7b-q4_k_m", "nomic-embed-text"]),
        ("size", True, ["qwen2.5-7b-q4_k_m", "llama-3.2-1b-q8_0", "gemma-3-270m", "nomic-embed-text"]),
        ("params", False, ["nomic-embed-text", "gemma-3-270m", "qwen2.5-7b-q4_k_m", "llama-3.2-1b-q8_0"]),
        ("params", True, ["qwen2.5-7b-q4_k_m", "gemma-3-270m", "nomic-embed-text", "llama-3.2-1b-q8_0"]),
    ],
)
def test_sort_keeps_unknown_values_last(key: str, descending: bool, expected: list[str]) -> None:
    assert ids(sort_rows(ROWS, key, descending=descending)) == expected


def test_unknown_sort_key_is_named() -> None:
    with pytest.raises(ValueError, match="unknown sort key 'speed'"):
        sort_rows(ROWS, "speed")
