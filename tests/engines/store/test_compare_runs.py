"""Saved comparisons: the schema 5 migration, save / list / get / delete, launch options as JSON, the export."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from engines.compare.types import CompareRun, PaneResult
from engines.errors import BadRequest
from engines.store import schema as store_schema
from engines.store.compare_runs import CompareNotFound, options_from_json, options_to_json
from engines.store.export import compare_to_markdown, default_compare_name, export_compare
from engines.store.records import TurnMetrics
from engines.store.sessions import Store
from engines.types import LaunchOptions, Params

MB = 10**6


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "llm-tui.db") as s:
        yield s


def finished_run(prompt: str = "Name three colors.") -> CompareRun:
    return CompareRun(
        prompt=prompt,
        system_prompt="Be brief.",
        params=Params(temperature=0.0, max_tokens=32, stop=("\n\n",)),
        mode="sequential",
        reason="together they need 1.2 GB RAM + 268 MB margin; 800 MB free",
        panes=(
            PaneResult(
                0,
                "gemma-3-270m",
                "llama.cpp",
                "done",
                "Red, green, blue.\n\n```\nno closing fence",
                metrics=TurnMetrics(120.0, 45.25, 900.0, 12, 8, "stop"),
                ram_bytes=350 * MB,
                vram_bytes=None,
                ref="gemma-3-270m",
                options=LaunchOptions(n_ctx=2048, n_threads=2, lora_path=Path("/tmp/adapter.gguf")),
            ),
            PaneResult(1, "tiny", "fake", "stopped", "Echo", metrics=TurnMetrics(10.0, 0.0, 20.0, 3, 1, "cancelled")),
            PaneResult(2, "broken", "fake", "error", error="file is truncated", run_id="r3-fake"),
        ),
    )


def test_a_database_at_version_4_migrates_to_the_latest_keeping_its_chats(tmp_path: Path) -> None:
    path = tmp_path / "llm-tui.db"
    with contextlib.closing(sqlite3.connect(path)) as raw:
        for migration in store_schema.MIGRATIONS[:4]:
            migration(raw)
        raw.execute("PRAGMA user_version = 4")
        raw.execute("INSERT INTO sessions (title, created_at, updated_at) VALUES ('Old chat', 1, 1)")
        raw.commit()
    with Store(path) as store:
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store_schema.LATEST_VERSION >= 5
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"compare_runs", "compare_panes"} <= tables
        assert [s.title for s in store.list_sessions()] == ["Old chat"]
        assert store.compares.list_runs() == []


def test_save_list_get_and_delete_round_trip_everything(store: Store) -> None:
    runs = store.compares
    first = runs.save(finished_run("first prompt"))
    second = runs.save(finished_run("second prompt"))
    assert first.id is not None and second.id is not None and first.created_at > 0
    assert [r.prompt for r in runs.list_runs()] == ["second prompt", "first prompt"]  # newest first
    got = runs.get(first.id)
    assert got == first  # prompt, system prompt, params, mode, reason and every pane, as saved
    assert got.panes[0].options == LaunchOptions(n_ctx=2048, n_threads=2, lora_path=Path("/tmp/adapter.gguf"))
    assert got.panes[1].metrics == TurnMetrics(10.0, 0.0, 20.0, 3, 1, "cancelled")
    assert got.panes[2].metrics is None and got.panes[2].run_id == "r3-fake"
    runs.delete(first.id)
    assert [r.id for r in runs.list_runs()] == [second.id]
    with pytest.raises(CompareNotFound):
        runs.get(first.id)
    with pytest.raises(CompareNotFound):
        runs.delete(first.id)
    conn = store._conn
    assert conn is not None  # the panes went with their run (ON DELETE CASCADE)
    assert conn.execute("SELECT count(*) FROM compare_panes WHERE compare_id = ?", (first.id,)).fetchone()[0] == 0


def test_a_run_that_has_not_ended_or_has_no_prompt_is_not_saved(store: Store) -> None:
    run = finished_run()
    running = CompareRun(run.prompt, (*run.panes[:2], PaneResult(2, "slow", "fake", "running")))
    with pytest.raises(BadRequest, match="pane 3 has not finished"):
        store.compares.save(running)
    with pytest.raises(BadRequest, match="without a prompt"):
        store.compares.save(CompareRun(" ", run.panes))
    assert store.compares.list_runs() == []


def test_launch_options_json_round_trips_and_tolerates_junk() -> None:
    options = LaunchOptions(n_ctx=8192, n_gpu_layers=-1, device="cuda:1", dtype="bfloat16", idle_unload_s=300.0)
    assert options_from_json(options_to_json(options)) == options
    # Every field survives, a new one included: each set away from its default.
    everything = LaunchOptions(
        **{f.name: value for f, value in zip(fields(LaunchOptions), _unusual_values(), strict=True)}
    )
    assert options_from_json(options_to_json(everything)) == everything
    assert options_to_json(None) is None and options_from_json(None) is None
    assert options_from_json("not json") == LaunchOptions()
    assert options_from_json('{"n_ctx": "big", "n_threads": true, "device": "cpu", "extra": 1}') == LaunchOptions()


def test_markdown_export_has_prompt_options_summary_and_every_reply(store: Store, tmp_path: Path) -> None:
    saved = store.compares.save(finished_run())
    text = compare_to_markdown(saved)
    assert text.startswith("# Comparison: Name three colors.\n")
    assert "sequential: together they need 1.2 GB RAM" in text
    assert "## Prompt\n\nName three colors.\n" in text and "## System prompt\n\nBe brief.\n" in text
    assert "*Parameters: temperature 0.0 · max_tokens 32 · stop ['\\n\\n']*" in text
    assert "| 1 | gemma-3-270m | llama.cpp | done | 120 ms | 45.2 | 12→8 | 350 MB | - |" in text
    assert "| 3 | broken | fake | error | - | - | - | - | - |" in text
    assert "*tok/s: 1 gemma-3-270m 45.2 · TTFT: 1 gemma-3-270m 120 ms*" in text
    assert "## 1. gemma-3-270m · llama.cpp\n\n*context 2048 · device cpu · threads 2 · LoRA adapter.gguf*" in text
    assert "```\nno closing fence\n```\n" in text  # a fence the reply left open is closed before the next pane
    assert "*8 tokens · 45.2 tok/s · first token 120 ms · total 0.90 s · finish: stop*" in text
    assert "Stopped before the end." in text
    assert "## 3. broken · fake\n\n*running instance r3-fake*\n\n*Failed: file is truncated*" in text

    name = default_compare_name(saved)
    assert name == f"compare-name-three-colors-{saved.id}.md"
    written = export_compare(saved, tmp_path)
    assert written == tmp_path / name and written.read_text(encoding="utf-8") == text
    other = export_compare(saved, tmp_path / "out.md")
    assert other.read_text(encoding="utf-8") == text
    assert not list(tmp_path.glob(".*.tmp"))


def _unusual_values() -> list[object]:
    """A value for each LaunchOptions field, in order, that differs from its default."""
    chosen = {
        "device": "cuda:1",
        "n_ctx": 1234,
        "n_gpu_layers": 7,
        "n_threads": 3,
        "dtype": "bfloat16",
        "quantization": "4bit",
        "lora_path": Path("/tmp/adapter.gguf"),
        "idle_unload_s": 60.0,
        "seed": 42,
        "chat_template": "chatml",
        "parallel": 4,
        "speculative": "prompt-lookup",
    }
    missing = [f.name for f in fields(LaunchOptions) if f.name not in chosen]
    assert not missing, f"give the new LaunchOptions fields a value here and a kind in store_compare: {missing}"
    return [chosen[f.name] for f in fields(LaunchOptions)]
