"""Prompt-lookup draft sizes: up while drafts are confirmed, down to what was confirmed."""

from __future__ import annotations

import threading

from engines.adapters.llama_cpp_reply import Reply
from engines.adapters.llama_cpp_slots import DRAFT_SIZES, Prepared, _adapt, _Request
from engines.types import Params


def request() -> _Request:
    reply = Reply(1, 100, 100, (), strip_leading=False)
    return _Request(Prepared([1], ()), Params(), threading.Event(), lambda _e: None, reply, sampler=None)


def test_sizes_grow_while_every_draft_is_confirmed_and_stop_at_the_largest() -> None:
    r = request()
    assert r.draft_limit == DRAFT_SIZES[0] == 3
    for expected in (7, 15, 15):
        _adapt(r, r.draft_limit, r.draft_limit)
        assert r.draft_limit == expected


def test_a_partly_confirmed_draft_shrinks_to_what_was_confirmed() -> None:
    r = request()
    r.draft_limit = 15
    _adapt(r, confirmed=9, drafted=15)
    assert r.draft_limit == 15
    _adapt(r, confirmed=4, drafted=15)
    assert r.draft_limit == 7
    _adapt(r, confirmed=0, drafted=7)
    assert r.draft_limit == 3
