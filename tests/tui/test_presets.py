"""Presets in the app: the picker (keys and an 80×24 snapshot), the compare screen's F12, and the palette's
"Preset: NAME" entries that post PresetChosen for the chat."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Label, OptionList

from engines.adapters.fake import FakeEngine
from engines.presets import Preset
from engines.types import ChatMessage, LaunchOptions, Params, StreamEvent
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import palette, ready, run, until
from tests.tui.test_compare_screen import add_model, compare, finished, gguf, no_gpu, prompt_and_run, text_of
from tests.tui.test_snapshots import settle
from tui.commands import app_commands
from tui.preset_messages import PresetChosen
from tui.screens.modals.preset_picker import NO_PRESETS, PresetPickerModal, preset_lines

PRESETS = """
[defaults]
top_k = 7

[presets.coder]
description = "Short, exact answers about code"
system = "You write code first."
temperature = 0.2
max_tokens = 2
model = "gemma-3-270m"
[presets.coder.launch]
n_ctx = 8192

[presets.storyteller]
description = "Long and warm, for stories"
system = "Tell a story."
temperature = 1.1
top_p = 0.95
repetition_penalty = 1.1
stop = ["THE END"]

[presets.bare]
system = ""
"""


@pytest.fixture
def with_presets(isolated_dirs: Path) -> Path:
    """A ./config.toml with three presets, read under the (absent) user's file by make_app's config."""
    path = isolated_dirs / "config.toml"
    path.write_text(PRESETS, encoding="utf-8")
    return path


class ParamsEngine(FakeEngine):
    """The fake engine that keeps the parameters of every request."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.params: list[Params] = []

    def chat(
        self, messages: Sequence[ChatMessage], params: Params, cancel: threading.Event, session: str | None = None
    ) -> Iterator[StreamEvent]:
        self.params.append(params)
        yield from super().chat(messages, params, cancel, session)


class PickerApp(App[int]):
    """The picker alone, over an empty screen; `chosen` holds what it returned."""

    def __init__(self, presets: dict[str, Preset], current: str | None = None) -> None:
        super().__init__()
        self.presets = presets
        self.current = current
        self.chosen: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield Label("beneath")

    def on_mount(self) -> None:
        self.push_screen(PresetPickerModal(self.presets, self.current), self.chosen.append)


def some_presets() -> dict[str, Preset]:
    return {
        "a": Preset("a", description="first", params=Params(temperature=0.5)),
        "b": Preset("b", system="Be brief.", model="tiny", params=Params(max_tokens=9, stop=("x",))),
    }


def test_the_picker_returns_the_name_on_enter_and_none_on_escape() -> None:
    async def main() -> None:
        app = PickerApp(some_presets(), current="b")
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, PresetPickerModal), "the picker")
            options = app.screen.query_one(OptionList)
            assert options.has_focus and options.highlighted == 1  # the preset in use is highlighted
            assert [options.get_option_at_index(i).id for i in range(options.option_count)] == ["a", "b"]
            lines = [tuple(map(str, preset_lines(p, name == "b"))) for name, p in some_presets().items()]
            assert lines == [
                ("a  first", "temperature 0.5"),
                ("b  (in use)", "model tiny · max_tokens 9 · stop 'x' · system prompt"),
            ]
            await pilot.press("up", "enter")
            await until(pilot, lambda: app.chosen == ["a"], "the name returned")
            app.push_screen(PresetPickerModal(some_presets()), app.chosen.append)
            await until(pilot, lambda: isinstance(app.screen, PresetPickerModal), "the picker again")
            await pilot.press("escape")
            await until(pilot, lambda: app.chosen == ["a", None], "None on Esc")

    run(main())


def test_the_picker_without_presets_says_how_to_add_one() -> None:
    async def main() -> None:
        app = PickerApp({})
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, PresetPickerModal), "the picker")
            assert text_of(app.screen.query_one("#no-presets")) == NO_PRESETS
            await pilot.press("enter", "escape")
            await until(pilot, lambda: app.chosen == [None], "None on Esc")

    run(main())


def test_a_preset_on_the_compare_screen_applies_to_every_pane(
    make_app: AppFactory, with_presets: Path, tmp_path: Path
) -> None:
    engine = ParamsEngine()
    app = make_app(screen="compare", launch=False, engine=engine, gpu_source=no_gpu)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = compare(app)

            def line() -> str:
                return text_of(screen.query_one("#compare-options"))

            assert line().startswith("no system prompt · top_k 7 ·") and line().endswith("Ctrl+G edits · F12 preset")
            await add_model(pilot, gguf(tmp_path, "alpha"))
            await add_model(pilot, gguf(tmp_path, "beta"))
            await pilot.press("f12")
            await until(pilot, lambda: isinstance(app.screen, PresetPickerModal), "the preset picker")
            await pilot.press("down", "enter")  # the second row: storyteller
            await until(pilot, lambda: screen.preset is not None, "the preset applied")
            assert screen.system_prompt == "Tell a story."
            assert line().startswith("preset storyteller · system: Tell a story. · temperature 1.1 · top_p 0.95")
            await pilot.press("f12")
            await until(pilot, lambda: isinstance(app.screen, PresetPickerModal), "the preset picker")
            await pilot.press("up", "enter")  # coder: its values replace storyteller's, over [defaults]
            await until(pilot, lambda: screen.preset is not None and screen.preset.name == "coder", "coder applied")
            assert screen.params == Params(temperature=0.2, top_k=7, max_tokens=2)
            assert line().startswith("preset coder · system: You write code first. · temperature 0.2")

            done = await prompt_and_run(pilot, "one two three")
            await finished(pilot, done)
            assert [p.reply_text for p in screen.panes] == ["Echo: one", "Echo: one"]  # max_tokens 2, each pane
            assert [c[0] for c in engine.calls] == [ChatMessage("system", "You write code first.")] * 2
            assert engine.params and set(engine.params) == {Params(temperature=0.2, top_k=7, max_tokens=2)}

            await pilot.press("ctrl+g")  # options changed by hand: the line says the preset was edited
            await until(pilot, lambda: app.screen is not screen, "the options dialog")
            await pilot.press("ctrl+a", "ctrl+k", *"Mine.", "ctrl+s")
            await until(pilot, lambda: screen.system_prompt == "Mine.", "the options applied")
            assert line().startswith("preset coder (edited) · system: Mine.")

    run(go())


def test_f12_without_presets_says_how_to_add_one(make_app: AppFactory) -> None:
    app = make_app(screen="compare", launch=False, gpu_source=no_gpu)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = compare(app)
            await pilot.press("f12")
            await until(pilot, lambda: any(n.message == NO_PRESETS for n in app._notifications), "the hint")
            assert app.screen is screen and screen.preset is None
            assert text_of(screen.query_one("#compare-options")).endswith("· Ctrl+G edits")

    run(go())


def test_the_palette_lists_each_preset_and_posts_preset_chosen(make_app: AppFactory, with_presets: Path) -> None:
    heard: list[Message] = []
    app = make_app()

    async def main() -> None:
        async with app.run_test(size=(100, 30), message_hook=heard.append) as pilot:
            chat = await ready(pilot)
            titles = [c.title for c in app_commands(app) if c.title.startswith("Preset: ")]
            assert titles == ["Preset: coder", "Preset: storyteller", "Preset: bare"]
            helps = {c.title: c.help for c in app_commands(app)}
            assert helps["Preset: coder"] == "Short, exact answers about code (for the current chat)"
            await palette(pilot, "preset: storyteller")
            # Heard where it is dispatched: on the chat screen, then at the app it bubbles to (one message).

            def chosen() -> list[PresetChosen]:
                return list({id(m): m for m in heard if isinstance(m, PresetChosen)}.values())

            await until(pilot, lambda: len(chosen()) == 1, "PresetChosen")
            assert chosen()[0].name == "storyteller"
            assert app.screen is chat

    run(main())


@pytest.mark.parametrize("size", [pytest.param((80, 24), id="80x24"), pytest.param((100, 30), id="100x30")])
def test_snapshot_preset_picker(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, with_presets: Path, size: tuple[int, int]
) -> None:
    async def open_picker(pilot: Pilot[int]) -> None:
        await pilot.press("f12")
        await until(pilot, lambda: isinstance(pilot.app.screen, PresetPickerModal), "the preset picker")
        await pilot.press("down")
        await settle(pilot)

    app = make_app(screen="compare", launch=False, gpu_source=no_gpu)
    assert snap_compare(app, terminal_size=size, run_before=open_picker)


def test_preset_launch_options_are_shown_in_the_row() -> None:
    preset = Preset("x", launch=LaunchOptions(n_ctx=8192), launch_keys=("n_ctx",), system="")
    assert tuple(map(str, preset_lines(preset))) == ("x", "no system prompt · context 8192")
    assert tuple(map(str, preset_lines(Preset("y")))) == ("y", "the model's own defaults")
