"""Saved comparisons in the chat database: tables compare_runs and compare_panes (schema version 5).

Works on the Store's one connection through its read and write transactions (`Store.compares`), so it
shares the Store's lock, busy timeout and error wrapping.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engines.compare.types import FINAL_STATES, CompareRun, PaneResult
from engines.errors import BadRequest
from engines.store.records import TurnMetrics, params_from_json, params_to_json
from engines.store.schema import StoreError, Transaction
from engines.types import LaunchOptions, Params

_PANE_COLUMNS = (
    "compare_id, position, model, engine, ref, run_id, options_json, reply, status, error, ttft_ms, tokens_per_s,"
    " total_ms, prompt_tokens, completion_tokens, finish_reason, ram_bytes, vram_bytes"
)


class CompareNotFound(StoreError):
    """No saved comparison has the given id (it may have been deleted)."""


class CompareRuns:
    """Save, list, get and delete comparisons; every method may be called from any thread."""

    def __init__(self, read: Transaction, write: Transaction) -> None:
        self._read = read
        self._write = write

    def save(self, run: CompareRun) -> CompareRun:
        """Store a finished comparison; returns it with its id and creation time."""
        if not run.prompt.strip():
            raise BadRequest("a comparison without a prompt cannot be saved")
        unfinished = [p.index + 1 for p in run.panes if p.status not in FINAL_STATES]
        if unfinished:
            raise BadRequest(f"pane {', '.join(map(str, unfinished))} has not finished; save once the run has ended")
        now = time.time()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO compare_runs (created_at, prompt, system_prompt, params_json, mode, reason)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (now, run.prompt, run.system_prompt, params_to_json(run.params), run.mode, run.reason),
            )
            compare_id = cur.lastrowid
            assert compare_id is not None
            conn.executemany(
                f"INSERT INTO compare_panes ({_PANE_COLUMNS}) VALUES ({', '.join('?' * 18)})",
                [_pane_row(compare_id, position, pane) for position, pane in enumerate(run.panes)],
            )
        return dataclasses.replace(run, id=compare_id, created_at=now)

    def list_runs(self) -> list[CompareRun]:
        """Every saved comparison with its panes, newest first."""
        with self._read() as conn:
            runs = conn.execute("SELECT * FROM compare_runs ORDER BY created_at DESC, id DESC").fetchall()
            panes = conn.execute("SELECT * FROM compare_panes ORDER BY compare_id, position").fetchall()
        by_run: dict[int, list[PaneResult]] = {}
        for row in panes:
            by_run.setdefault(row["compare_id"], []).append(_pane_from_row(row))
        return [_run_from_row(row, by_run.get(row["id"], [])) for row in runs]

    def get(self, compare_id: int) -> CompareRun:
        """One saved comparison; CompareNotFound if there is none with that id."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM compare_runs WHERE id = ?", (compare_id,)).fetchone()
            panes = conn.execute(
                "SELECT * FROM compare_panes WHERE compare_id = ? ORDER BY position", (compare_id,)
            ).fetchall()
        if row is None:
            raise CompareNotFound(f"saved comparison {compare_id} does not exist")
        return _run_from_row(row, [_pane_from_row(p) for p in panes])

    def delete(self, compare_id: int) -> None:
        """Delete a saved comparison and its panes."""
        with self._write() as conn:
            if conn.execute("DELETE FROM compare_runs WHERE id = ?", (compare_id,)).rowcount == 0:
                raise CompareNotFound(f"saved comparison {compare_id} does not exist")


def options_to_json(options: LaunchOptions | None) -> str | None:
    """Launch options as compact JSON (the LoRA path as text); None stays None."""
    if options is None:
        return None
    data = dataclasses.asdict(options)
    data["lora_path"] = str(options.lora_path) if options.lora_path is not None else None
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def options_from_json(text: str | None) -> LaunchOptions | None:
    """Launch options from JSON; unknown keys and values of the wrong type are left at their defaults."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return LaunchOptions()
    return _options_from(data) if isinstance(data, Mapping) else LaunchOptions()


def _options_from(data: Mapping[str, Any]) -> LaunchOptions:
    kinds: dict[str, tuple[type, ...]] = {
        "n_ctx": (int,),
        "n_threads": (int, type(None)),
        "n_gpu_layers": (int,),
        "seed": (int, type(None)),
        "device": (str,),
        "dtype": (str, type(None)),
        "quantization": (str, type(None)),
        "idle_unload_s": (float, int, type(None)),
        "lora_path": (str, type(None)),
        "chat_template": (str, type(None)),
        "parallel": (int,),
        "speculative": (str, type(None)),
    }
    values: dict[str, Any] = {}
    for name, allowed in kinds.items():
        if name not in data:
            continue
        value: Any = data[name]
        if isinstance(value, bool) or not isinstance(value, allowed):
            continue
        values[name] = Path(str(value)) if name == "lora_path" and value is not None else value
    return LaunchOptions(**values)


def _pane_row(compare_id: int, position: int, pane: PaneResult) -> tuple[Any, ...]:
    m = pane.metrics or TurnMetrics()
    return (
        compare_id,
        position,
        pane.model_id,
        pane.engine,
        pane.ref,
        pane.run_id,
        options_to_json(pane.options),
        pane.text,
        pane.status,
        pane.error,
        m.ttft_ms,
        m.tokens_per_s,
        m.total_ms,
        m.prompt_tokens,
        m.completion_tokens,
        m.finish_reason,
        pane.ram_bytes,
        pane.vram_bytes,
    )


def _pane_from_row(row: sqlite3.Row) -> PaneResult:
    names = ("ttft_ms", "tokens_per_s", "total_ms", "prompt_tokens", "completion_tokens", "finish_reason")
    metrics = TurnMetrics(*(row[n] for n in names)) if any(row[n] is not None for n in names) else None
    return PaneResult(
        index=row["position"],
        model_id=row["model"],
        engine=row["engine"],
        status=row["status"],
        text=row["reply"],
        error=row["error"],
        metrics=metrics,
        ram_bytes=row["ram_bytes"],
        vram_bytes=row["vram_bytes"],
        ref=row["ref"],
        run_id=row["run_id"],
        options=options_from_json(row["options_json"]),
        unloaded=False,
    )


def _run_from_row(row: sqlite3.Row, panes: list[PaneResult]) -> CompareRun:
    return CompareRun(
        prompt=row["prompt"],
        panes=tuple(panes),
        system_prompt=row["system_prompt"],
        params=params_from_json(row["params_json"]) or Params(),
        mode=row["mode"],
        reason=row["reason"],
        id=row["id"],
        created_at=row["created_at"],
    )
