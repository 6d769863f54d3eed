"""Fine-tuning runs in the chat database: tables tune_runs and tune_metrics (schema version 8).

Works on the Store's one connection through its read and write transactions (`Store.tunes`), so it shares the
Store's lock, busy timeout and error wrapping. A run is named (its folder's name); its metrics are one row per
optimizer step, holding the step's training figures and, where one was taken there, the validation loss.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import time
from pathlib import Path

from engines.errors import BadRequest
from engines.store.schema import StoreError, Transaction
from engines.tune.types import StepDone, TuneEvent, TuneOptions, TuneRun, Validated

STATES = ("running", "stopped", "finished", "failed", "interrupted")
"""A run's states, as the table's CHECK allows them."""


class TuneRunNotFound(StoreError):
    """No tuning run has the given name (it may have been deleted)."""


class TuneRuns:
    """Create, read, update and delete tuning runs and record their metrics; every method may be called from any
    thread."""

    def __init__(self, read: Transaction, write: Transaction) -> None:
        self._read = read
        self._write = write

    def create(self, run: TuneRun) -> TuneRun:
        """Store a new run; returns it with its id and times. BadRequest when a run of that name exists."""
        if not run.name.strip():
            raise BadRequest("a tuning run needs a name")
        _check_state(run.state)
        now = time.time()
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM tune_runs WHERE name = ?", (run.name,)).fetchone() is not None:
                raise BadRequest(f"a tuning run named {run.name!r} exists: choose another name, or resume or delete it")
            cur = conn.execute(
                "INSERT INTO tune_runs (name, created_at, updated_at, base, data_path, data_sha256, options_json,"
                " state, run_dir, adapter_path, merged_path, mlflow_run_id, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.name,
                    now,
                    now,
                    run.base,
                    str(run.data_path),
                    run.data_sha256,
                    json.dumps(run.options.to_json(), sort_keys=True, separators=(",", ":")),
                    run.state,
                    str(run.run_dir),
                    _text(run.adapter_path),
                    _text(run.merged_path),
                    run.mlflow_run_id,
                    run.error,
                ),
            )
        return dataclasses.replace(run, id=cur.lastrowid, created_at=now, updated_at=now, steps=(), validations=())

    def get(self, name: str, *, metrics: bool = True) -> TuneRun:
        """One run, with its steps and validations unless `metrics` is False; TuneRunNotFound if there is none."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM tune_runs WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise TuneRunNotFound(f"tuning run {name!r} does not exist")
            rows = (
                conn.execute("SELECT * FROM tune_metrics WHERE run_id = ? ORDER BY step", (row["id"],)).fetchall()
                if metrics
                else []
            )
        run = _run_from_row(row)
        if not rows:
            return run
        start = run.created_at or 0.0
        steps = tuple(
            StepDone(
                step=r["step"],
                epoch=r["epoch"],
                loss=r["loss"] if r["loss"] is not None else math.nan,  # SQLite keeps NaN as NULL
                learning_rate=r["learning_rate"] or 0.0,
                tokens_per_s=r["tokens_per_s"] or 0.0,
                memory_bytes=r["memory_bytes"] or 0,
                elapsed_s=max(0.0, r["at"] - start),
                eta_s=None,
            )
            for r in rows
            if r["tokens_per_s"] is not None  # a StepDone was recorded (a Validated alone leaves it NULL)
        )
        validations = tuple(Validated(r["step"], r["val_loss"]) for r in rows if r["val_loss"] is not None)
        return dataclasses.replace(run, steps=steps, validations=validations)

    def list(self) -> list[TuneRun]:
        """Every run without its metrics, newest first."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM tune_runs ORDER BY created_at DESC, id DESC").fetchall()
        return [_run_from_row(r) for r in rows]

    def update(
        self,
        name: str,
        *,
        state: str | None = None,
        error: str | None = None,
        adapter_path: Path | None = None,
        merged_path: Path | None = None,
        mlflow_run_id: str | None = None,
    ) -> None:
        """Set the given fields (None leaves one as it is); a run set "running" again loses its old error."""
        changes: dict[str, object] = {"updated_at": time.time()}
        if state is not None:
            _check_state(state)
            changes["state"] = state
            if state == "running":
                changes["error"] = None
        if error is not None:
            changes["error"] = error
        if adapter_path is not None:
            changes["adapter_path"] = str(adapter_path)
        if merged_path is not None:
            changes["merged_path"] = str(merged_path)
        if mlflow_run_id is not None:
            changes["mlflow_run_id"] = mlflow_run_id
        columns = ", ".join(f"{column} = ?" for column in changes)
        with self._write() as conn:
            cur = conn.execute(f"UPDATE tune_runs SET {columns} WHERE name = ?", (*changes.values(), name))
            if cur.rowcount == 0:
                raise TuneRunNotFound(f"tuning run {name!r} does not exist")

    def record(self, name: str, event: TuneEvent) -> None:
        """Keep a StepDone's or a Validated's figures (a step seen again replaces its figures); other events are
        not metrics and are left to the run's events.jsonl."""
        if not isinstance(event, StepDone | Validated):
            return
        now = time.time()
        with self._write() as conn:
            run_id = _run_id(conn, name)
            if isinstance(event, StepDone):
                conn.execute(
                    "INSERT INTO tune_metrics (run_id, step, epoch, loss, learning_rate, tokens_per_s, memory_bytes,"
                    " at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (run_id, step) DO UPDATE SET epoch = excluded.epoch, loss = excluded.loss,"
                    " learning_rate = excluded.learning_rate,"
                    " tokens_per_s = excluded.tokens_per_s, memory_bytes = excluded.memory_bytes, at = excluded.at",
                    (
                        run_id,
                        event.step,
                        event.epoch,
                        event.loss,
                        event.learning_rate,
                        event.tokens_per_s,
                        event.memory_bytes,
                        now,
                    ),
                )
            else:
                # A validation before the step's own row (step 0, the loss before training) takes the epoch
                # of the latest step before it.
                conn.execute(
                    "INSERT INTO tune_metrics (run_id, step, epoch, val_loss, at) VALUES (?, ?, COALESCE((SELECT epoch"
                    " FROM tune_metrics WHERE run_id = ? AND step <= ? ORDER BY step DESC LIMIT 1), 0.0), ?, ?)"
                    " ON CONFLICT (run_id, step) DO UPDATE SET val_loss = excluded.val_loss",
                    (run_id, event.step, run_id, event.step, event.val_loss, now),
                )
            conn.execute("UPDATE tune_runs SET updated_at = ? WHERE id = ?", (now, run_id))

    def truncate_after(self, name: str, step: int) -> None:
        """Forget the metrics after `step` (a run resumed from that checkpoint trains those steps again)."""
        with self._write() as conn:
            conn.execute("DELETE FROM tune_metrics WHERE run_id = ? AND step > ?", (_run_id(conn, name), step))

    def delete(self, name: str) -> None:
        """Delete a run and its metrics from the database (its folder on disk is left to the caller)."""
        with self._write() as conn:
            if conn.execute("DELETE FROM tune_runs WHERE name = ?", (name,)).rowcount == 0:
                raise TuneRunNotFound(f"tuning run {name!r} does not exist")


def _check_state(state: str) -> None:
    if state not in STATES:
        raise BadRequest(f"unknown tuning run state {state!r}: expected one of {', '.join(STATES)}")


def _run_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM tune_runs WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise TuneRunNotFound(f"tuning run {name!r} does not exist")
    return int(row[0])


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


def _options(text: str) -> TuneOptions:
    """A run's options; a row written by another version that no longer reads gives the defaults."""
    try:
        data = json.loads(text)
        return TuneOptions.from_json(data) if isinstance(data, dict) else TuneOptions()
    except (ValueError, TypeError):
        return TuneOptions()


def _run_from_row(row: sqlite3.Row) -> TuneRun:
    return TuneRun(
        name=row["name"],
        base=row["base"],
        data_path=Path(row["data_path"]),
        data_sha256=row["data_sha256"],
        options=_options(row["options_json"]),
        state=row["state"],
        run_dir=Path(row["run_dir"]),
        adapter_path=_path(row["adapter_path"]),
        merged_path=_path(row["merged_path"]),
        mlflow_run_id=row["mlflow_run_id"],
        error=row["error"],
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
