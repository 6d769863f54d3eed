"""SVG snapshots of the downloads screen with a task in every status, at 100x30 and 80x24."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from engines.downloads.tasks import TaskStatus
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tests.tui.test_snapshots import SIZES, settle
from tui.app import LlmTuiApp
from tui.screens.downloads import DownloadsScreen

GB = 10**9


@pytest.mark.parametrize("size", SIZES)
def test_downloads_in_every_status(snap_compare, make_app: AppFactory, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def fill(pilot: Pilot[int]) -> None:
        app = pilot.app
        assert isinstance(app, LlmTuiApp)
        # The queue resumes what a last run left once the first frame is painted: let it, before the table
        # gets rows no queue would start.
        await until(pilot, lambda: app.downloads_resumed, "the start-up resume")
        await app.workers.wait_for_complete()
        tasks = app.runtime.downloads.tasks  # the table itself: nothing starts a transfer
        models = app.runtime.config.models_dir
        rows = [
            ("Qwen/Qwen2.5-7B-Instruct-GGUF", "qwen2.5-7b-instruct-q4_k_m.gguf", 4.68, TaskStatus.DOWNLOADING, 0.42),
            ("bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B-Instruct-Q4_K_M.gguf", 2.02, TaskStatus.PAUSED, 0.7),
            ("unsloth/gemma-3-4b-it-GGUF", "gemma-3-4b-it-Q4_K_M.gguf", 2.49, TaskStatus.PENDING, 0.0),
            (
                "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF",
                "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
                0.67,
                TaskStatus.COMPLETED,
                1,
            ),
            ("Qwen/Qwen3-8B-GGUF", "Qwen3-8B-Q4_K_M.gguf", 5.03, TaskStatus.FAILED, 0.13),
            (
                "microsoft/Phi-3-mini-4k-instruct-gguf",
                "Phi-3-mini-4k-instruct-q4.gguf",
                2.39,
                TaskStatus.CANCELLED,
                0.05,
            ),
        ]
        for repo, file, size_gb, status, done in rows:
            sha = "9fa1" * 16 if status is TaskStatus.COMPLETED else None  # checked against it: "verified"
            task = tasks.add("hf", models / file, repo=repo, file=file, total_bytes=int(size_gb * GB), sha256=sha)
            tasks.record_progress(
                task.id, int(size_gb * GB * done), None, 38.5e6 if status is TaskStatus.DOWNLOADING else None
            )
            if status is not TaskStatus.PENDING:
                tasks.set_status(task.id, TaskStatus.DOWNLOADING)
            if status not in (TaskStatus.PENDING, TaskStatus.DOWNLOADING):
                error = (
                    "sha256 mismatch: expected 7e1d…, got 03ab…; the partial file was deleted"
                    if status is TaskStatus.FAILED
                    else None
                )
                tasks.set_status(task.id, status, error)
            if status is TaskStatus.DOWNLOADING:
                tasks.record_progress(task.id, int(size_gb * GB * done), None, 38.5e6)
        blob = app.runtime.config.cache_dir / "hf/models--org--Embed/blobs" / ("e5" * 32)  # `--to cache`
        tasks.add("hf", blob, repo="org/Embed", file="model.safetensors", total_bytes=GB // 4, cache_ref="main")
        tasks.add("ollama", Path("ollama:qwen2.5:0.5b"), repo="qwen2.5:0.5b")
        screen = app.screen
        assert isinstance(screen, DownloadsScreen)
        screen.refresh_table()
        await pilot.press("down", "down", "down", "down")  # the failed one: its reason shows below
        await settle(pilot)

    app = make_app(screen="downloads", launch=False)
    assert snap_compare(app, terminal_size=size, run_before=fill)
