"""The launch dialog's Parallel and Speculative fields, by keys: the fit counts every slot's KV cache, a bad
number is named, and the choice reaches the launch; engines that cannot batch keep the fields disabled."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Input, Select

from engines.catalog.fit import ModelShape, estimate, human_bytes
from tests.engines.gguf_corpus import write_gguf
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tests.tui.test_launch_dialog import GB, drive, opened, text
from tui.app import LlmTuiApp
from tui.screens.modals.launch import LaunchModal, LaunchTarget, launch_target

SHAPE = ModelShape(weights_bytes=GB, n_layers=32, n_kv_heads=8, head_dim=128)  # 128 KiB of F16 KV per token
LLAMA = LaunchTarget("x", "Qwen 2.5 7B Instruct", "gguf", ("llama.cpp",), SHAPE)


async def focus(modal: LaunchModal, pilot: Pilot[int], widget_id: str) -> None:
    for _ in range(30):
        if modal.focused is not None and modal.focused.id == widget_id:
            return
        await pilot.press("tab")
    raise AssertionError(f"#{widget_id} never took focus")


def test_slots_multiply_the_kv_cache_in_the_fit_and_reach_the_launch(make_app: AppFactory, tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "qwen-small.gguf", "qwen2", context_length=4096)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        target = launch_target(str(model), app.runtime)
        assert target.shape is not None
        modal = await opened(app, pilot, target)
        assert modal.query_one("#parallel", Input).value == "1"
        kv = estimate(target.shape, n_ctx=modal.base.n_ctx).kv_cache_bytes
        one = text(modal, "#launch-fit")
        assert "KV " + human_bytes(kv).replace(" ", "\u00a0") in one and "slots" not in one
        await focus(modal, pilot, "parallel")
        await pilot.press("ctrl+u", "4")
        await pilot.pause()
        four = text(modal, "#launch-fit")
        assert "KV " + human_bytes(4 * kv).replace(" ", "\u00a0") in four
        assert f"4 slots × {modal.base.n_ctx:,}\u00a0tokens each" in four
        await focus(modal, pilot, "speculative")
        await pilot.press("enter", "down", "enter")
        assert modal.query_one("#speculative", Select).value == "prompt-lookup"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.runtime.active is not None, "launched")
        options = app.runtime.launches[app.runtime.active.run_id].options  # type: ignore[union-attr]
        assert options is not None and (options.parallel, options.speculative) == (4, "prompt-lookup")

    drive(make_app(launch=False), test, (100, 30))


def test_a_bad_slot_count_is_named_and_nothing_launches(make_app: AppFactory) -> None:
    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        modal = await opened(app, pilot, LLAMA)
        await focus(modal, pilot, "parallel")
        for typed, message in (("0", "Parallel: 0 is outside 1…64"), ("many", "Parallel: 'many' is not a whole")):
            await pilot.press("ctrl+u", *typed)
            await pilot.pause()
            assert message in text(modal, "#error")
            await pilot.press("ctrl+s")
            assert isinstance(app.screen, LaunchModal) and app.runtime.active is None

    drive(make_app(launch=False), test)


def test_fields_follow_what_the_engine_can_do(make_app: AppFactory) -> None:
    """transformers batches but does not draft; Ollama schedules its own requests: both fields stay disabled."""
    transformers = LaunchTarget("x", "Gemma 3 270M IT", "hf", ("transformers",), SHAPE)
    ollama = LaunchTarget("llama3.2:1b", "llama3.2:1b", "ollama", ("ollama",))

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        modal = await opened(app, pilot, transformers)
        assert not modal.query_one("#parallel", Input).disabled
        assert modal.query_one("#speculative", Select).disabled
        await pilot.press("escape")
        modal = await opened(app, pilot, ollama)
        assert modal.query_one("#parallel", Input).disabled
        assert modal.query_one("#speculative", Select).disabled

    drive(make_app(launch=False), test)
