"""The one hold-back loop every engine streams through: pieces in, text safe to show out, cut at a stop."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from hypothesis import given
from hypothesis import strategies as st

from engines.stop_text import StopText, split_at_stop


def shown(pieces: Iterable[str], stops: Sequence[str]) -> tuple[list[str], bool]:
    """What an engine shows for `pieces`: each non-empty feed, then the flush; and whether a stop ended it."""
    cut = StopText(stops)
    out = []
    for piece in pieces:
        if emit := cut.feed(piece):
            out.append(emit)
        if cut.stopped:
            break
    if held := cut.flush():
        out.append(held)
    return out, cut.stopped


def test_stop_prefix_is_held_back_until_decided() -> None:
    assert split_at_stop("hello wor", ("world",)) == ("hello ", "wor", False)
    assert split_at_stop("hello world!", ("world",)) == ("hello ", "", True)
    assert split_at_stop("a<|e", ("<|end|>", "xyz")) == ("a", "<|e", False)
    assert split_at_stop("abcd", ("c", "bc")) == ("a", "", True)  # the earliest-starting stop wins
    assert split_at_stop("plain", ("zz",)) == ("plain", "", False)


def test_a_stop_split_over_pieces_is_held_back_then_cut() -> None:
    cut = StopText(["<end_of_turn>"])
    assert cut.feed("Hi there<end") == "Hi there"
    assert cut.feed("_of") == ""
    assert not cut.stopped
    assert cut.feed("_turn>and more") == ""
    assert cut.stopped
    assert cut.feed("ignored") == ""  # nothing after a stop is ever shown
    assert cut.flush() == ""


def test_a_stop_at_the_start_shows_nothing() -> None:
    assert shown(["STOP", "after"], ["STOP"]) == ([], True)
    assert shown(["ST", "OP rest"], ["STOP"]) == ([], True)


def test_overlapping_stops_cut_at_the_one_that_starts_first() -> None:
    assert shown(["ab", "cd"], ["cd", "bc"]) == (["a"], True)  # "bc" starts before "cd"
    assert shown(["xab", "aby"], ["abab", "aby"]) == (["x"], True)  # both complete; "abab" starts first
    assert shown(["aaa"], ["aab", "ab"]) == (["a", "aa"], False)  # the longest possible start is held


def test_without_stops_every_piece_shows_as_it_comes() -> None:
    assert shown(["a", "<", "b"], []) == (["a", "<", "b"], False)


def test_the_end_flushes_what_only_looked_like_a_stop() -> None:
    cut = StopText(["</s>"])
    assert cut.feed("x </") == "x "
    assert cut.flush() == "</"
    assert cut.flush() == ""  # once
    assert shown(["done <", "/"], ["</s>"]) == (["done ", "</"], False)


@given(
    text=st.text(alphabet="ab<>", max_size=30),
    stops=st.lists(st.text(alphabet="ab<>", min_size=1, max_size=4), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=8),
)
def test_any_split_shows_the_text_up_to_the_earliest_stop(text: str, stops: list[str], cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    ends = [i for i in (text.find(s) for s in stops) if i >= 0]
    out, stopped = shown(pieces, stops)
    assert "".join(out) == text[: min(ends, default=len(text))]
    assert stopped == bool(ends)


def test_a_longer_stop_that_starts_first_decides_even_when_a_shorter_one_completes_first() -> None:
    """Found by the property test above: over "<b" the stop "b" is complete, but "<b<" starts earlier and may
    still come; the text waits, and the end shows what the earliest stop leaves."""
    assert shown(["<b", "<"], ["b", "<b<"]) == ([], True)  # "<b<" came: nothing before it
    assert shown(["<b", "x"], ["b", "<b<"]) == (["<"], True)  # it did not: "b" cuts
    assert shown(["<b"], ["b", "<b<"]) == (["<"], True)  # the reply ended while it waited: "b" cuts
