"""The compare screen driven by keys on fake engines: parallel, sequential with unloads between, stop, save and
reopen, export, options, and adding or removing models."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Input

from engines.adapters.fake import FakeEngine
from engines.admission import margin_bytes
from engines.launch import default_options, estimate_need
from engines.telemetry.fake import FakeGpuSource
from engines.types import InstanceState, LaunchOptions, ModelSpec
from tests.engines.compare.test_runner import RecordingEngine, RemoteLike
from tests.engines.gguf_corpus import write_gguf
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import footer_keys, palette, run, until
from tests.tui.test_launch_admission import MB, short_of_memory
from tui.app import LlmTuiApp
from tui.screens.compare import CompareScreen
from tui.screens.modals.compare_runs import CompareRunsModal
from tui.screens.modals.launch import LaunchModal
from tui.screens.modals.model_picker import ModelPickerModal
from tui.screens.modals.params import ParamsModal
from tui.screens.modals.text_prompt import TextPromptModal
from tui.widgets.prompt import PromptInput


def no_gpu() -> FakeGpuSource:
    return FakeGpuSource(gpus=[])


def compare(app: LlmTuiApp) -> CompareScreen:
    screen = app.screen
    assert isinstance(screen, CompareScreen), screen
    return screen


def gguf(folder: Path, name: str) -> Path:
    """A tiny model with a real GGUF header, so the planner can estimate it."""
    return write_gguf(folder / f"{name}.gguf")


async def add_model(pilot: Pilot[int], path: Path) -> None:
    """Ctrl+L, the model's path, Enter, then Ctrl+S in the launch dialog (its engine and options)."""
    app = pilot.app
    screen = compare(app)  # type: ignore[arg-type]
    count = len(screen.models)
    await pilot.press("ctrl+l")
    await until(pilot, lambda: isinstance(app.screen, ModelPickerModal), "the model picker")
    app.screen.query_one("#model-query", Input).value = str(path)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, LaunchModal), "the launch dialog")
    await pilot.press("ctrl+s")
    await until(pilot, lambda: len(screen.models) == count + 1 and len(screen.panes) == count + 1, "the new pane")


async def prompt_and_run(pilot: Pilot[int], text: str) -> CompareScreen:
    screen = compare(pilot.app)  # type: ignore[arg-type]
    screen.query_one(PromptInput).focus()
    await pilot.press(*text, "enter")
    await until(pilot, lambda: screen.runner is not None or screen.shown is not None, "the run to start")
    return screen


async def finished(pilot: Pilot[int], screen: CompareScreen) -> None:
    await until(pilot, lambda: screen.runner is None and screen.shown is not None, "the run to end")
    await until(pilot, lambda: all(p.state in ("done", "stopped", "error") for p in screen.panes), "final states")


def text_of(widget: object) -> str:
    return " ".join(str(widget.render()).split())  # type: ignore[attr-defined]


def test_two_models_stream_at_the_same_time_and_finish_with_metrics(make_app: AppFactory, tmp_path: Path) -> None:
    gate = threading.Event()
    app = make_app(screen="compare", launch=False, engine=FakeEngine(gate=gate), gpu_source=no_gpu)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await add_model(pilot, gguf(tmp_path, "alpha"))
            await add_model(pilot, gguf(tmp_path, "beta"))
            screen = await prompt_and_run(pilot, "hello both")
            manager = app.runtime.manager
            # Both replies are held at their first token together: they run at the same time.
            busy = lambda: [i.state for i in manager.instances()] == [InstanceState.BUSY] * 2  # noqa: E731
            await until(pilot, busy, "both instances busy")
            await until(pilot, lambda: [p.state for p in screen.panes] == ["running", "running"], "both running")
            assert "parallel — all at the same time" in text_of(screen.query_one("#compare-status"))
            gate.set()
            await finished(pilot, screen)
            for pane in screen.panes:
                assert pane.state == "done" and pane.reply_text == "Echo: hello both"
                metrics = text_of(pane.query_one(".pane-metrics"))
                assert "TTFT" in metrics and "tok/s" in metrics and "→3 tokens" in metrics and "RAM " in metrics
                assert pane.border_subtitle == "done · unloaded"
            # Each pane keeps the run id of the instance it ran on after the run unloaded it.
            titles = [str(p.border_title) for p in screen.panes]
            assert titles == [f"1 alpha · fake ({screen.panes[0].run_id})", f"2 beta · fake ({screen.panes[1].run_id})"]
            assert all(re.fullmatch(r"r\d+-fake", str(p.run_id)) for p in screen.panes)
            assert len({p.run_id for p in screen.panes}) == 2
            summary = text_of(screen.query_one("#compare-summary"))
            assert (
                summary.startswith("tok/s: ") and " alpha " in summary and " beta " in summary and "TTFT: " in summary
            )
            assert manager.instances() == []  # what the run launched is stopped when it ends

    run(go())


def test_models_that_do_not_fit_together_run_one_after_another_with_unloads(
    make_app: AppFactory, tmp_path: Path
) -> None:
    journal: list[str] = []
    app = make_app(screen="compare", launch=False, engine=RecordingEngine(journal), gpu_source=no_gpu)
    models = [gguf(tmp_path, "alpha"), gguf(tmp_path, "beta")]

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            need = estimate_need(ModelSpec(id="alpha", path=models[0]), default_options(app.runtime.config))
            assert need is not None
            # Room for one model with its margin, not for two (the fake host frees what an instance held).
            short_of_memory(app, need.ram_bytes + margin_bytes(1000 * MB) + 50 * MB)
            for path in models:
                await add_model(pilot, path)
            screen = await prompt_and_run(pilot, "one at a time")
            await finished(pilot, screen)
            assert "sequential — one after another (load, run, unload)" in text_of(screen.query_one("#compare-status"))
            assert "together they need" in text_of(screen.query_one("#compare-status"))
            assert screen.shown is not None
            assert [(r.status, r.error) for r in screen.shown.panes] == [("done", None), ("done", None)]
            assert journal == ["load alpha", "unload alpha", "load beta", "unload beta"]
            assert [p.reply_text for p in screen.panes] == ["Echo: one at a time"] * 2
            assert [p.border_subtitle for p in screen.panes] == ["done · unloaded"] * 2
            assert app.runtime.manager.instances() == []

    run(go())


def test_escape_stops_every_pane_mid_run(make_app: AppFactory, tmp_path: Path) -> None:
    engine = FakeEngine(gate=threading.Event())  # never opened: only Stop ends these replies
    app = make_app(screen="compare", launch=False, engine=engine, gpu_source=no_gpu)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await add_model(pilot, gguf(tmp_path, "alpha"))
            await add_model(pilot, gguf(tmp_path, "beta"))
            screen = await prompt_and_run(pilot, "never ends")
            await until(pilot, lambda: [p.state for p in screen.panes] == ["running"] * 2, "both running")
            await pilot.press("escape")
            await finished(pilot, screen)
            assert [p.state for p in screen.panes] == ["stopped", "stopped"]
            assert screen.shown is not None and [r.status for r in screen.shown.panes] == ["stopped", "stopped"]
            assert text_of(screen.query_one("#compare-status")).startswith("stopped · parallel")
            assert app.runtime.manager.instances() == []

    run(go())


def test_save_reopen_and_export(make_app: AppFactory, tmp_path: Path, isolated_dirs: Path) -> None:
    app = make_app(screen="compare", launch=False, gpu_source=no_gpu)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await add_model(pilot, gguf(tmp_path, "alpha"))
            await add_model(pilot, gguf(tmp_path, "beta"))
            screen = await prompt_and_run(pilot, "keep me")
            await finished(pilot, screen)
            await pilot.press("ctrl+s")
            saved = app.runtime.store.compares.list_runs()
            assert len(saved) == 1 and saved[0].prompt == "keep me"
            assert screen.shown is not None and screen.shown.id == saved[0].id
            assert [(p.model_id, p.text) for p in saved[0].panes] == [
                ("alpha", "Echo: keep me"),
                ("beta", "Echo: keep me"),
            ]

            # Take both models out and clear the prompt, then reopen the saved run from the list.
            for _ in range(2):
                screen.panes[0].query_one("ChatLog").focus()
                await pilot.press("delete")
                await pilot.pause()
            await until(pilot, lambda: screen.panes == [] and screen.models == [], "no panes")
            screen.query_one(PromptInput).text = ""
            await pilot.press("ctrl+o")
            await until(pilot, lambda: isinstance(app.screen, CompareRunsModal), "the saved runs")
            await pilot.press("enter")
            await until(pilot, lambda: len(screen.panes) == 2, "the saved panes")
            await pilot.pause()
            assert screen.query_one(PromptInput).text == "keep me"
            assert [p.reply_text for p in screen.panes] == ["Echo: keep me"] * 2
            assert all("→3 tokens" in text_of(p.query_one(".pane-metrics")) for p in screen.panes)
            assert [m.ref for m in screen.models] == [str(tmp_path / "alpha.gguf"), str(tmp_path / "beta.gguf")]
            assert "saved run #" in text_of(screen.query_one("#compare-status"))

            await pilot.press("ctrl+t")
            await until(pilot, lambda: isinstance(app.screen, TextPromptModal), "the export prompt")
            await pilot.press("enter")
            # Where chat exports go (exports/ in the data folder), never the working folder.
            exports = app.runtime.config.data_dir / "exports"
            await until(pilot, lambda: list(exports.glob("compare-*.md")) != [], "the export")
            (exported,) = exports.glob("compare-*.md")
            assert not list(isolated_dirs.glob("compare-*.md"))
            text = exported.read_text(encoding="utf-8")
            assert exported.name == f"compare-keep-me-{saved[0].id}.md"
            assert "## Prompt\n\nkeep me" in text and text.count("Echo: keep me") == 2

    run(go())


def test_options_a_running_instance_and_the_limits(make_app: AppFactory, tmp_path: Path, fake_model: Path) -> None:
    engine = FakeEngine()
    app = make_app(screen="compare", launch=False, engine=engine, gpu_source=no_gpu)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = compare(app)
            mine = app.runtime.manager.start(ModelSpec(id="mine", path=fake_model), LaunchOptions(), FakeEngine())
            await pilot.press("ctrl+r")
            assert "compare 2 to 4 models (0 chosen)" in text_of(screen.query_one("#compare-status"))

            await pilot.press("ctrl+l")  # the running instance is the picker's first row
            await until(pilot, lambda: isinstance(app.screen, ModelPickerModal), "the model picker")
            await pilot.press("enter")
            await until(pilot, lambda: len(screen.models) == 1, "the instance added")
            assert screen.models[0].run_id == mine
            for name in ("alpha", "beta", "gamma"):
                await add_model(pilot, gguf(tmp_path, name))
            await pilot.press("ctrl+l")
            assert any("At most 4 models" in n.message for n in app._notifications)
            assert not isinstance(app.screen, ModelPickerModal)

            await pilot.press("ctrl+g")
            await until(pilot, lambda: isinstance(app.screen, ParamsModal), "the options")
            await pilot.press(*"Be brief.", "tab", *"0", "ctrl+s")
            await until(pilot, lambda: screen.system_prompt == "Be brief.", "the options applied")
            assert screen.params.temperature == 0.0
            assert "system: Be brief. · temperature 0.0" in text_of(screen.query_one("#compare-options"))

            run_screen = await prompt_and_run(pilot, "four at once")
            await finished(pilot, run_screen)
            assert screen.shown is not None
            assert [(r.status, r.error) for r in screen.shown.panes] == [("done", None)] * 4
            assert [p.state for p in screen.panes] == ["done"] * 4
            assert engine.calls[-1][0].content == "Be brief."  # the system prompt went to every pane
            assert [i.run_id for i in app.runtime.manager.instances()] == [mine]  # the user's instance stays
            assert screen.panes[0].border_subtitle == "done"
            assert screen.panes[0].border_title == f"1 mine · fake ({mine})"  # the user's instance, named after the run

    run(go())


def test_the_footer_fits_80_columns_listing_what_acts_now(make_app: AppFactory, tmp_path: Path) -> None:
    """Idle and finished: run, add, options, save, open, export; running: Esc stops (the rest would be refused)."""
    gate = threading.Event()
    app = make_app(screen="compare", launch=False, engine=FakeEngine(gate=gate), gpu_source=no_gpu)
    between_runs = ["^r Run", "^l Add model", "^g Options", "^s Save", "^o Open", "^t Export"]

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert footer_keys(app) == between_runs
            await add_model(pilot, gguf(tmp_path, "alpha"))
            await add_model(pilot, gguf(tmp_path, "beta"))
            screen = await prompt_and_run(pilot, "hi")
            await until(pilot, lambda: [p.state for p in screen.panes] == ["running"] * 2, "both running")
            await pilot.pause()
            assert footer_keys(app) == ["esc Stop", "^g Options"]
            await pilot.press("ctrl+l")  # refused while running, as before: no picker over a run
            assert not isinstance(app.screen, ModelPickerModal)
            gate.set()
            await finished(pilot, screen)
            await pilot.pause()
            assert footer_keys(app) == between_runs
            await pilot.press("tab")  # to the first pane's reply: one message, nothing to step through with k/j
            await pilot.pause()
            assert app.focused is screen.panes[0].log_view and footer_keys(app) == between_runs
            await pilot.press("ctrl+s")
            await until(pilot, lambda: screen.shown is not None and screen.shown.id is not None, "the save")

    run(go())


def test_a_remote_pane_says_its_memory_is_remote_not_local_ram(
    make_app: AppFactory, tmp_path: Path, fake_model: Path
) -> None:
    app = make_app(screen="compare", launch=False, gpu_source=no_gpu)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = compare(app)
            served = ModelSpec(id="served", path=fake_model)
            remote = app.runtime.manager.start(served, LaunchOptions(), RemoteLike(ram_bytes=733_000))
            await pilot.press("ctrl+l")
            await until(pilot, lambda: isinstance(app.screen, ModelPickerModal), "the model picker")
            await pilot.press("enter")
            await until(pilot, lambda: len(screen.models) == 1, "the remote instance added")
            assert screen.models[0].run_id == remote
            await add_model(pilot, gguf(tmp_path, "alpha"))
            await finished(pilot, await prompt_and_run(pilot, "where are you"))
            remote_pane, local_pane = screen.panes
            assert "RAM n/a (remote)" in text_of(remote_pane.query_one(".pane-metrics"))
            assert "733" not in text_of(remote_pane.query_one(".pane-metrics"))
            local = text_of(local_pane.query_one(".pane-metrics"))
            assert "RAM " in local and "remote" not in local  # a local model's RAM is still shown
            assert remote_pane.border_title == f"1 served · remote ({remote})"

    run(go())


def test_the_command_palette_reaches_compare_actions_from_another_screen(make_app: AppFactory) -> None:
    app = make_app(screen="chat", launch=False)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await palette(pilot, "Compare: add a model")
            await until(pilot, lambda: isinstance(app.screen, ModelPickerModal), "the model picker")
            assert app.current_mode == "compare"

    run(go())
