"""The app's entries in the command palette (Ctrl+P).

An entry that acts on a screen names the screen's method in code (`lambda s: s.action_run()`, typed by the screen
list's entry), never as a string: renaming the method fails mypy here instead of leaving a palette entry that does
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from textual.app import SystemCommand
from textual.screen import Screen

from tui.preset_messages import PresetChosen
from tui.screen_list import CATALOG, CHAT, COMPARE, SCREENS, SETTINGS, ScreenEntry

if TYPE_CHECKING:
    from tui.app import LlmTuiApp
    from tui.screens.catalog import CatalogScreen
    from tui.screens.chat import ChatScreen
    from tui.screens.compare import CompareScreen
    from tui.screens.settings import SettingsScreen

S = TypeVar("S", bound=Screen[None])


@dataclass(frozen=True, slots=True)
class ScreenCommand(Generic[S]):
    """A palette entry that opens a screen and runs one of its actions there."""

    title: str
    help: str
    run: Callable[[S], object]


SETTINGS_COMMANDS: tuple[ScreenCommand[SettingsScreen], ...] = (
    ScreenCommand(
        "Settings: save", "Write every changed setting to config.toml (comments kept)", lambda s: s.action_save()
    ),
    ScreenCommand(
        "Settings: discard unsaved changes", "Put every field back as the file has it", lambda s: s.action_revert_all()
    ),
    ScreenCommand(
        "Add remote endpoint", "An OpenAI-compatible server for the catalog and chat", lambda s: s.action_add_endpoint()
    ),
    ScreenCommand(
        "Test remote endpoint",
        "List the selected endpoint's models, or say why it cannot",
        lambda s: s.action_test_endpoint(),
    ),
    ScreenCommand("Add alias", "A short name for a model reference", lambda s: s.action_add_alias()),
)
"""Run on the settings screen."""
COMPARE_COMMANDS: tuple[ScreenCommand[CompareScreen], ...] = (
    ScreenCommand(
        "Compare: add a model", "A running instance or a model to launch, 2 to 4 in all", lambda s: s.action_add_model()
    ),
    ScreenCommand(
        "Compare: remove a model", "Take the selected pane out of the comparison", lambda s: s.action_remove_model()
    ),
    ScreenCommand("Compare: system prompt and parameters", "Shared by every pane", lambda s: s.action_options()),
    ScreenCommand(
        "Compare: use a preset", "A preset's system prompt and parameters for every pane", lambda s: s.action_preset()
    ),
    ScreenCommand("Compare: run", "One prompt to every model, side by side", lambda s: s.action_run()),
    ScreenCommand("Compare: stop", "Stop every pane", lambda s: s.action_stop()),
    ScreenCommand("Compare: save the run", "Keep the prompt, models, replies and metrics", lambda s: s.action_save()),
    ScreenCommand("Compare: open a saved run", "Show a saved comparison again", lambda s: s.action_open()),
    ScreenCommand("Compare: export to Markdown", "Write the comparison to a .md file", lambda s: s.action_export()),
)
"""Run on the compare screen."""
CHAT_COMMANDS: tuple[ScreenCommand[ChatScreen], ...] = (
    ScreenCommand("New chat", "Start a new chat session", lambda s: s.action_new_session()),
    ScreenCommand("Launch model", "Pick a running instance or load a model", lambda s: s.action_pick_model()),
    ScreenCommand("Stop generation", "Stop the reply that is streaming", lambda s: s.action_stop()),
)
"""Run on the chat screen, listed before the instances' stops."""
CHAT_COPY_COMMANDS: tuple[ScreenCommand[ChatScreen], ...] = (
    ScreenCommand("Copy last reply", "Copy the selected or last message (OSC 52)", lambda s: s.action_copy_message()),
    ScreenCommand(
        "Copy last code block", "Copy the last code block of the reply (OSC 52)", lambda s: s.action_copy_code()
    ),
)
"""Run on the chat screen, listed after the instances' stops."""
CHAT_EXPORT: ScreenCommand[ChatScreen] = ScreenCommand(
    "Export chat", "Save the chat as Markdown or JSON", lambda s: s.action_export()
)
CATALOG_COMMANDS: tuple[ScreenCommand[CatalogScreen], ...] = (
    ScreenCommand(
        "Search the Hugging Face Hub",
        "Find a model on the Hub and check each file's fit before downloading (h on the catalog)",
        lambda s: s.action_hub_search(),
    ),
)
"""Run on the catalog screen."""


def run_on(app: LlmTuiApp, entry: ScreenEntry[S], run: Callable[[S], object]) -> None:
    """Open `entry`'s screen and run `run` on it; nothing runs while a dialog is open over that screen."""
    app.switch_mode(entry.mode)
    screen = app.screen
    if isinstance(screen, entry.load()):
        run(screen)


def _screen_commands(
    app: LlmTuiApp, entry: ScreenEntry[S], commands: Iterable[ScreenCommand[S]]
) -> Iterable[SystemCommand]:
    for command in commands:
        yield SystemCommand(command.title, command.help, lambda run=command.run: run_on(app, entry, run))


def _instance_commands(app: LlmTuiApp) -> Iterable[SystemCommand]:
    """Stop (unload) each instance that is loaded or loading, as F4's `s` does."""
    active = app.runtime.active
    for info in app.runtime.manager.instances():
        if info.state.value in ("stopping", "stopped"):
            continue
        chat = " (the chat's model)" if active is not None and active.run_id == info.run_id else ""
        yield SystemCommand(
            f"Stop instance {info.run_id} {info.model_id}",
            f"Unload {info.model_id} on {info.engine}, {info.state.value}{chat}",
            lambda run_id=info.run_id: _stop(app, run_id),
        )


def _preset_commands(app: LlmTuiApp) -> Iterable[SystemCommand]:
    """One "Preset: NAME" per [presets.NAME] of the config: the chat hears PresetChosen and applies it."""
    for name, preset in app.runtime.config.presets.items():
        about = preset.description or f"{name}'s system prompt and parameters"
        yield SystemCommand(
            f"Preset: {name}",
            f"{about} (for the current chat)",
            lambda name=name: run_on(app, CHAT, lambda s: s.post_message(PresetChosen(name))),
        )


def _stop(app: LlmTuiApp, run_id: str) -> None:
    app.notify(f"Stopping {run_id}…", title="Stop")
    app.stop_instance(run_id)


def app_commands(app: LlmTuiApp) -> Iterable[SystemCommand]:
    """Screen switches, the chat's main actions, the presets, the instances' stops, the API, the Hub search, compare
    and settings actions."""
    for entry in SCREENS:
        yield SystemCommand(entry.palette_title, entry.palette_help, lambda mode=entry.mode: app.switch_mode(mode))
    yield from _screen_commands(app, CHAT, CHAT_COMMANDS)
    yield from _preset_commands(app)
    yield from _instance_commands(app)
    yield from _screen_commands(app, CHAT, CHAT_COPY_COMMANDS)
    api = app.runtime.api
    if api is None:
        yield SystemCommand(
            "Start API server", "Serve the running models over an OpenAI-compatible API", app.action_toggle_api
        )
    else:
        yield SystemCommand("Stop API server", f"Stop serving at {api.url}", app.action_toggle_api)
    yield from _screen_commands(app, CHAT, (CHAT_EXPORT,))
    yield from _screen_commands(app, CATALOG, CATALOG_COMMANDS)
    yield from _screen_commands(app, COMPARE, COMPARE_COMMANDS)
    yield from _screen_commands(app, SETTINGS, SETTINGS_COMMANDS)
    yield SystemCommand("Toggle dark mode", "Switch between the light and dark theme", app.action_toggle_dark)
