"""Presets on the chat: F12 picks one for the open chat, the palette's "Preset: NAME" does the same, and the
next reply uses its system prompt and parameters; a preset naming another model loads it."""

from __future__ import annotations

from pathlib import Path

from engines.adapters.fake import FakeEngine
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import palette, ready, run, send, until
from tests.tui.test_presets import with_presets
from tui.screens.modals.preset_picker import PresetPickerModal

__all__ = ["with_presets"]  # the fixture, used by name


def test_f12_applies_a_preset_and_the_next_reply_uses_it(make_app: AppFactory, with_presets: Path) -> None:
    engine = FakeEngine()

    async def go() -> None:
        app = make_app(engine=engine)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await ready(pilot)
            await pilot.press("f12")
            await until(pilot, lambda: isinstance(app.screen, PresetPickerModal), "the picker")
            await pilot.press("down", "enter")  # coder, then storyteller
            await until(pilot, lambda: app.screen is screen, "the picker to close")
            assert screen.session is not None and screen.session.system_prompt == "Tell a story."
            await send(pilot, "once upon")
            sent, params = engine.calls[-1], engine.params[-1]
            assert sent[0].role == "system" and sent[0].content == "Tell a story."
            assert (params.temperature, params.top_p, params.stop, params.top_k) == (1.1, 0.95, ("THE END",), 7)

            await palette(pilot, "preset: bare")  # system = "": no system prompt
            await until(pilot, lambda: screen.session is not None and screen.session.system_prompt is None, "bare")
            await send(pilot, "and then")
            assert engine.calls[-1][0].role == "user"

    run(go())


def test_a_preset_that_names_another_model_loads_it(make_app: AppFactory, with_presets: Path) -> None:
    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            await palette(pilot, "preset: coder")
            await until(
                pilot,
                lambda: app.runtime.active is not None and "gemma" in app.runtime.active.model_id,
                "the preset's model",
                timeout=30,
            )
            runs = app.runtime.manager.instances()
            assert any(i.options.n_ctx == 8192 for i in runs)  # its launch table, over the config's options
            assert screen.session is not None and screen.session.params is not None
            assert screen.session.params.max_tokens == 2

    run(go())
