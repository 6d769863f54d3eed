"""Saved evaluation runs in the chat database: tables eval_runs and eval_items (schema version 8).

Works on the Store's one connection through its read and write transactions (`Store.evals`), so it shares the
Store's lock, busy timeout and error wrapping. A run's report (less its items) is kept as JSON in eval_runs; its
items are rows of eval_items, so two runs can be compared item by item.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from typing import Any

from engines.errors import BadRequest
from engines.evaluate.export import report_from_dict, report_to_dict
from engines.evaluate.types import EvalReport, ItemResult
from engines.store.schema import StoreError, Transaction

STATES = ("finished", "cancelled", "failed")


class EvalRunNotFound(StoreError):
    """No saved evaluation run has the given id (it may have been deleted)."""


class EvalRuns:
    """Save, list, get and delete evaluation runs; every method may be called from any thread."""

    def __init__(self, read: Transaction, write: Transaction) -> None:
        self._read = read
        self._write = write

    def save(self, report: EvalReport) -> EvalReport:
        """Store a run and its items; returns it with its id and creation time."""
        if report.state not in STATES:
            raise BadRequest(f"an evaluation in state {report.state!r} cannot be saved; it must be one of {STATES}")
        keys = {(item.subject, item.index) for item in report.items}
        if len(keys) != len(report.items):
            raise BadRequest("an evaluation with the same item (subject and index) twice cannot be saved")
        now = time.time()
        summary = json.dumps(report_to_dict(dataclasses.replace(report, id=None, created_at=None), items=False))
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO eval_runs (created_at, model, engine, data_name, data_sha256, method, shots, item_limit,"
                " items, correct, items_per_s, state, report_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    now,
                    report.model,
                    report.engine,
                    report.data_name,
                    report.data_sha256,
                    report.method.value,
                    report.shots,
                    report.limit,
                    len(report.items),
                    sum(item.correct for item in report.items),
                    report.items_per_s,
                    report.state,
                    summary,
                ),
            )
            run_id = cur.lastrowid
            assert run_id is not None
            conn.executemany(
                "INSERT INTO eval_items (run_id, subject, item, answer, predicted, correct, scores_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [_item_row(run_id, item) for item in report.items],
            )
        return dataclasses.replace(report, id=run_id, created_at=now)

    def list(self, limit: int = 200) -> list[EvalReport]:
        """The saved runs, newest first, without their items (items=())."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, created_at, report_json FROM eval_runs ORDER BY created_at DESC, id DESC LIMIT ?",
                (max(0, limit),),
            ).fetchall()
        return [_report(row, ()) for row in rows]

    def get(self, run_id: int) -> EvalReport:
        """One saved run with its items (in the order they were answered); EvalRunNotFound if there is none."""
        with self._read() as conn:
            row = conn.execute("SELECT id, created_at, report_json FROM eval_runs WHERE id = ?", (run_id,)).fetchone()
            items = conn.execute("SELECT * FROM eval_items WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall()
        if row is None:
            raise EvalRunNotFound(f"saved evaluation run {run_id} does not exist")
        return _report(row, tuple(_item_from_row(r) for r in items))

    def delete(self, run_id: int) -> None:
        """Delete a saved run and its items."""
        with self._write() as conn:
            conn.execute("DELETE FROM eval_items WHERE run_id = ?", (run_id,))
            if conn.execute("DELETE FROM eval_runs WHERE id = ?", (run_id,)).rowcount == 0:
                raise EvalRunNotFound(f"saved evaluation run {run_id} does not exist")


def _item_row(run_id: int, item: ItemResult) -> tuple[Any, ...]:
    scores = None if item.scores is None else json.dumps(list(item.scores))
    return (run_id, item.subject, item.index, item.answer, item.predicted, int(item.correct), scores)


def _item_from_row(row: sqlite3.Row) -> ItemResult:
    scores = None if row["scores_json"] is None else tuple(float(x) for x in json.loads(row["scores_json"]))
    return ItemResult(row["subject"], row["item"], row["answer"], row["predicted"], scores)


def _report(row: sqlite3.Row, items: tuple[ItemResult, ...]) -> EvalReport:
    try:
        data = json.loads(row["report_json"])
    except ValueError as exc:
        raise StoreError(f"saved evaluation run {row['id']} is damaged: {exc}") from exc
    if not isinstance(data, dict):
        raise StoreError(f"saved evaluation run {row['id']} is damaged: its report is not an object")
    data["items"] = []
    report = report_from_dict(data)
    return dataclasses.replace(report, items=items, id=row["id"], created_at=row["created_at"])
