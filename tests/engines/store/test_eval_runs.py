"""Saved evaluation runs: save / list / get / delete on schema 8, items kept for item-by-item comparison."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines.errors import BadRequest
from engines.evaluate.types import ItemResult, Method
from engines.store.eval_runs import EvalRunNotFound
from engines.store.sessions import Store
from tests.engines.evaluate.test_export import make_report


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "llm-tui.db") as s:
        yield s


def test_save_get_round_trip_with_items(store: Store) -> None:
    report = make_report()
    saved = store.evals.save(report)
    assert saved.id is not None and saved.created_at is not None
    got = store.evals.get(saved.id)
    assert got == saved
    assert got.items[0].scores == (-2.5, -0.25, -3.0, -4.0) and got.items[2].predicted is None


def test_list_newest_first_without_items(store: Store) -> None:
    first = store.evals.save(make_report(model="one"))
    second = store.evals.save(make_report(model="two", method=Method.GENERATE))
    listed = store.evals.list()
    assert [r.id for r in listed] == [second.id, first.id]
    assert listed[0].items == () and listed[0].method is Method.GENERATE and listed[0].overall == second.overall
    assert [r.id for r in store.evals.list(limit=1)] == [second.id]


def test_columns_hold_the_summary(store: Store, tmp_path: Path) -> None:
    saved = store.evals.save(make_report())
    with sqlite3.connect(tmp_path / "llm-tui.db") as conn:
        row = conn.execute("SELECT model, method, shots, item_limit, items, correct, state FROM eval_runs").fetchone()
        items = conn.execute("SELECT subject, item, correct FROM eval_items WHERE run_id = ?", (saved.id,)).fetchall()
    assert row == ("gemma-3-270m", "loglik", 5, 10, 3, 1, "finished")
    assert sorted(items) == [("astronomy", 0, 1), ("astronomy", 1, 0), ("law, civil", 0, 0)]


def test_delete_and_not_found(store: Store) -> None:
    saved = store.evals.save(make_report())
    assert saved.id is not None
    store.evals.delete(saved.id)
    with pytest.raises(EvalRunNotFound, match=f"run {saved.id} does not exist"):
        store.evals.get(saved.id)
    with pytest.raises(EvalRunNotFound):
        store.evals.delete(saved.id)


def test_refuses_duplicate_items_and_unknown_state(store: Store) -> None:
    twice = [ItemResult("s", 0, "A", "A"), ItemResult("s", 0, "A", "B")]
    with pytest.raises(BadRequest, match="same item"):
        store.evals.save(make_report(twice))
    with pytest.raises(BadRequest, match="state 'running'"):
        store.evals.save(make_report(state="running"))
    assert store.evals.list() == []
