"""The chat screen driven by keys with the real Gemma 3 270M on llama.cpp (no fakes below the UI)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from engines.config.load import load_config
from tests.tui.test_chat_screen import chat, ready, until
from tui.app import LlmTuiApp
from tui.runtime import Runtime
from tui.widgets.chat_log import ChatLog
from tui.widgets.prompt import PromptInput

pytestmark = pytest.mark.real_model


def test_real_model_chat_by_keys(gemma_path: Path, isolated_dirs: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the llama extra is not installed")
    config_file = isolated_dirs / "config.toml"
    config_file.write_text(
        f'models_dir = "{gemma_path.parent}"\nn_threads = 2\n[defaults]\ntemperature = 0.0\nmax_tokens = 48\n'
    )
    config = load_config(config_file, env={}, cwd=isolated_dirs)
    runtime = Runtime(config)
    written: list[str] = []

    async def go() -> None:
        app = LlmTuiApp(runtime, model="gemma-3-270m")
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            assert "gemma-3-270m · llama.cpp · ready" in app.status_text
            prompt = screen.query_one(PromptInput)
            assert prompt.has_focus  # --model opens the chat focused on the prompt
            await pilot.press(*"What is the capital of France?", "enter")
            # (Pilot's key presses wait for the app to go idle: the short reply may be done already.)
            assert screen.session is not None
            session_id = screen.session.id
            await until(
                pilot,
                lambda: screen.turn is None and len(app.runtime.store.messages(session_id)) == 2,
                "the reply to finish",
                timeout=120,
            )
            user, reply = app.runtime.store.messages(screen.session.id)
            assert (user.role, user.content) == ("user", "What is the capital of France?")
            assert reply.role == "assistant" and reply.status == "complete" and "Paris" in reply.content
            assert reply.model == "gemma-3-270m" and reply.engine == "llama.cpp"
            assert reply.metrics is not None and reply.metrics.completion_tokens and reply.metrics.tokens_per_s
            log = screen.query_one(ChatLog)
            view = log.reply(reply.id)
            assert view is not None and view.text == reply.content
            assert "tok/s" in view.footer

            # The instance's own log holds what llama.cpp said while loading it (its C log, on its thread).
            active = app.runtime.active
            assert active is not None and app.runtime.instance_log is not None
            lines = app.runtime.instance_log.lines(active.run_id)
            assert any("gemma" in line.lower() or "llama" in line.lower() for line in lines), lines[:5]
            footprint = app.runtime.manager.info(active.run_id).footprint
            assert footprint.ram_bytes and footprint.ram_bytes > 100 * 10**6

            # Copy the reply: the terminal gets it as an OSC 52 sequence (works over SSH).
            driver = app._driver
            assert driver is not None
            original_write = driver.write
            driver.write = written.append  # type: ignore[method-assign]
            try:
                log.focus()
                await pilot.press("k", "c")
                await pilot.pause()
            finally:
                driver.write = original_write  # type: ignore[method-assign]
            assert chat(app).query_one(ChatLog).selected_message is not None

    try:
        asyncio.run(go())
    finally:
        runtime.close()
    sequences = [w for w in written if w.startswith("\x1b]52;c;")]
    assert len(sequences) == 1
    copied = base64.b64decode(sequences[0].removeprefix("\x1b]52;c;").removesuffix("\a")).decode()
    assert "Paris" in copied
