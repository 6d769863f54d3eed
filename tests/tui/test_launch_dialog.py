"""The launch dialog driven by keys: no usable engine, the chat-template choice, the catalog's context, 80x24."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select, Static

from engines.adapters import registry
from engines.catalog.fit import ModelShape
from tests.engines.gguf_corpus import write_gguf
from tests.tui.catalog_fixture import RESOURCES, fixed_listing
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import run, until
from tui.app import LlmTuiApp
from tui.screens.catalog import CatalogScreen
from tui.screens.modals.launch import LaunchModal, LaunchTarget, launch_target, template_options

GB = 10**9
NOTHING_INSTALLED = LaunchTarget("gemma-3-270m-it", "Gemma 3 270M IT", "hf", ("transformers",))


def text(modal: LaunchModal, selector: str) -> str:
    return str(modal.query_one(selector, Static).render())


async def opened(app: LlmTuiApp, pilot: Pilot[int], target: LaunchTarget | None = None) -> LaunchModal:
    """The launch dialog once built: opened for `target`, or awaited when a key opens it."""
    if target is not None:
        app.open_launch_dialog(target)
    await until(pilot, lambda: isinstance(app.screen, LaunchModal) and bool(app.screen.query("#error")), "the dialog")
    await pilot.pause()
    assert isinstance(app.screen, LaunchModal)
    return app.screen


def drive(app: LlmTuiApp, test: object, size: tuple[int, int] = (80, 24)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            app.runtime.resources = lambda: RESOURCES  # type: ignore[method-assign]
            await pilot.pause()
            await test(app, pilot)  # type: ignore[operator]

    run(main())


@pytest.fixture
def nothing_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """No engine's Python packages are importable (a fresh `pip install llm-tui`)."""
    monkeypatch.setattr(registry, "is_installed", lambda name: False)


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_no_usable_engine_says_what_to_install_and_survives_every_key(
    make_app: AppFactory, nothing_installed: None, size: tuple[int, int]
) -> None:
    """Was: InvalidSelectValueError 'Illegal select value False' from Select(id='engine'), and the app exited."""

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        modal = await opened(app, pilot, NOTHING_INSTALLED)
        engines = text(modal, "#launch-engines")
        assert "Cannot launch" in engines and "transformers: pip install 'llm-tui[transformers]'" in engines
        assert modal.query_one("#engine", Select).disabled and modal.query_one("#launch", Button).disabled
        await pilot.press("enter", "down", "enter")  # the focused Select (device) opens, moves, chooses
        for _ in range(12):
            await pilot.press("tab")
        while modal.focused is not modal.query_one("#n_ctx"):
            await pilot.press("tab")
        await pilot.press("enter")  # Enter in a field launches: here it explains instead
        assert app.screen is modal
        hint = "Install an engine first: pip install 'llm-tui[transformers]'"
        assert hint in text(modal, "#error")
        await pilot.press("down", "up", "home", "end", "1", "backspace", "ctrl+s")
        assert app.screen is modal and hint in text(modal, "#error")
        await pilot.press("escape")
        assert app.screen is not modal and app.is_running and app.return_code is None

    drive(make_app(launch=False), test, size)


def test_enter_enter_on_a_catalog_model_whose_engine_is_missing(
    make_app: AppFactory, models_dir: Path, nothing_installed: None
) -> None:
    """The keys of the report: F2, `/`, the model's name, Enter, Enter; the dialog explains instead of crashing."""

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = app.screen
        assert isinstance(screen, CatalogScreen)
        await until(pilot, lambda: screen.listing is not None, "the listing")
        await pilot.press("slash", *"finetune", "enter", "enter")  # a GGUF here; no engine for it installed
        modal = await opened(app, pilot)
        await pilot.press("enter", "ctrl+s")  # Enter on the first field (a Select) opens its list
        assert app.screen is modal and "pip install 'llm-tui[llama]'" in text(modal, "#error")
        await pilot.press("escape")  # the list closes
        assert app.screen is modal
        await pilot.press("escape")  # then the dialog
        assert app.screen is not modal and isinstance(app.screen, CatalogScreen) and app.is_running

    drive(make_app(screen="catalog", launch=False, listing=fixed_listing), test)


def test_markup_typed_into_a_field_is_shown_not_parsed(make_app: AppFactory) -> None:
    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        modal = await opened(
            app, pilot, LaunchTarget("x", "X [b]", "gguf", ("llama.cpp",), ModelShape(weights_bytes=GB))
        )
        modal.query_one("#n_ctx", Input).value = "[/b]"
        await pilot.pause()
        assert "Context: '[/b]' is not a whole number" in text(modal, "#error")
        assert "Launch X [b]" in str(modal.query_one(".dialog-title").render())

    drive(make_app(launch=False), test)


def test_the_catalogs_context_opens_the_dialog(make_app: AppFactory, models_dir: Path) -> None:
    """`+` on F2 doubles the fit check's context; Enter opens the dialog with that context, and launches with it."""

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = app.screen
        assert isinstance(screen, CatalogScreen)
        await until(pilot, lambda: screen.listing is not None, "the listing")
        base = app.runtime.config.n_ctx
        await pilot.press("slash", *"finetune", "enter", "plus")
        assert screen.n_ctx == 2 * base
        await pilot.press("enter")
        await opened(app, pilot)
        assert app.screen.query_one("#n_ctx", Input).value == str(2 * base)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.runtime.active is not None, "launched")
        assert app.runtime.launches[app.runtime.active.run_id].options.n_ctx == 2 * base  # type: ignore[union-attr]

    drive(make_app(screen="catalog", launch=False, listing=fixed_listing), test, (100, 30))


def test_template_choices_default_to_the_files_then_the_catalogs() -> None:
    with_own = LaunchTarget("x", "x", "gguf", has_chat_template=True, catalog_template="gemma3")
    assert template_options(with_own)[:2] == [("from the file", ""), ("Gemma", "gemma3")]
    without = LaunchTarget("x", "x", "gguf", has_chat_template=False, catalog_template="base-qa")
    assert template_options(without)[0] == ("plain Q/A", "base-qa")
    assert [v for _, v in template_options(without)] == ["base-qa", "chatml", "llama3", "gemma3"]
    unknown = LaunchTarget("x", "x", "gguf")
    assert template_options(unknown)[:2] == [("auto", ""), ("ChatML", "chatml")]


def test_a_gguf_without_a_template_launches_with_the_one_chosen(make_app: AppFactory, tmp_path: Path) -> None:
    """A Qwen GGUF with no template: the dialog offers ChatML (its family's) first; a choice reaches the engine."""
    model = write_gguf(tmp_path / "qwen-nameless.gguf", "qwen2", context_length=4096)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        target = launch_target(str(model), app.runtime)
        assert (target.has_chat_template, target.catalog_template) == (False, "chatml")
        modal = await opened(app, pilot, target)
        select = modal.query_one("#chat_template", Select)
        assert select.value == "chatml" and not select.disabled  # llama.cpp honours it
        while modal.focused is not select:
            await pilot.press("tab")
        await pilot.press("enter", "down", "enter")  # open the list, the next one (Llama 3), choose it
        assert select.value == "llama3"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.runtime.active is not None, "launched")
        options = app.runtime.launches[app.runtime.active.run_id].options  # type: ignore[union-attr]
        assert options is not None and options.chat_template == "llama3"

    drive(make_app(launch=False), test)


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_every_field_is_reachable_by_tab_and_visible_when_focused(make_app: AppFactory, size: tuple[int, int]) -> None:
    """Tab visits every enabled field, and each is on screen, whole, when it has focus."""
    target = LaunchTarget("x", "Qwen 2.5 7B Instruct", "gguf", ("llama.cpp",), ModelShape(weights_bytes=5 * GB))

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        modal = await opened(app, pilot, target)
        modal.query_one("#device", Select).value = "auto"  # GPU layers too
        await pilot.pause()
        wanted = {w.id for w in modal.query("#launch-grid > Input, #launch-grid > Select") if w.id and not w.disabled}
        seen: set[str] = set()
        for _ in range(len(wanted) + 4):
            focused = modal.focused
            assert focused is not None
            if focused.id is not None and focused.id in wanted:
                seen.add(focused.id)
                region = focused.region
                assert region.width > 0 and region.height > 0, focused.id
                assert modal.region.contains_region(region), f"{focused.id} is off screen: {region}"
                shown = modal.query_one("#launch-dialog").content_region
                assert shown.contains_region(region), f"{focused.id} is cut by the dialog: {region} vs {shown}"
            await pilot.press("tab")
        assert seen == wanted

    drive(make_app(launch=False), test, size)
