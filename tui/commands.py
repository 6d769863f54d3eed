"""The app's entries in the command palette (Ctrl+P)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from tui.widgets.screen_bar import SCREEN_KEYS

if TYPE_CHECKING:
    from tui.app import LlmTuiApp


SETTINGS_ACTIONS = (
    ("Settings: save", "Write every changed setting to config.toml (comments kept)", "save"),
    ("Settings: discard unsaved changes", "Put every field back as the file has it", "revert_all"),
    ("Add remote endpoint", "An OpenAI-compatible server for the catalog and chat", "add_endpoint"),
    ("Test remote endpoint", "List the selected endpoint's models, or say why it cannot", "test_endpoint"),
    ("Add alias", "A short name for a model reference", "add_alias"),
)
"""(title, help, action) run on the settings screen."""
COMPARE_ACTIONS = (
    ("Compare: add a model", "A running instance or a model to launch, 2 to 4 in all", "add_model"),
    ("Compare: remove a model", "Take the selected pane out of the comparison", "remove_model"),
    ("Compare: system prompt and parameters", "Shared by every pane", "options"),
    ("Compare: run", "One prompt to every model, side by side", "run"),
    ("Compare: stop", "Stop every pane", "stop"),
    ("Compare: save the run", "Keep the prompt, models, replies and metrics", "save"),
    ("Compare: open a saved run", "Show a saved comparison again", "open"),
    ("Compare: export to Markdown", "Write the comparison to a .md file", "export"),
)
"""(title, help, action) run on the compare screen."""


def _screen_commands(app: LlmTuiApp, mode: str, actions: tuple[tuple[str, str, str], ...]) -> Iterable[SystemCommand]:
    for title, help_text, action in actions:
        yield SystemCommand(title, help_text, lambda a=action: app.run_on_screen(mode, a))


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


def _stop(app: LlmTuiApp, run_id: str) -> None:
    app.notify(f"Stopping {run_id}…", title="Stop")
    app.stop_instance(run_id)


def app_commands(app: LlmTuiApp) -> Iterable[SystemCommand]:
    """Screen switches and the chat's main actions."""
    for key, mode, label in SCREEN_KEYS:
        yield SystemCommand(
            f"Go to {label}", f"Open the {mode} screen ({key.upper()})", lambda m=mode: app.switch_mode(m)
        )
    yield SystemCommand("New chat", "Start a new chat session", app.action_new_chat)
    yield SystemCommand("Launch model", "Pick a running instance or load a model", app.action_pick_model)
    yield SystemCommand("Stop generation", "Stop the reply that is streaming", app.action_stop_generation)
    yield from _instance_commands(app)
    yield SystemCommand("Copy last reply", "Copy the selected or last message (OSC 52)", app.action_copy_reply)
    yield SystemCommand("Copy last code block", "Copy the last code block of the reply (OSC 52)", app.action_copy_code)
    api = app.runtime.api
    if api is None:
        yield SystemCommand(
            "Start API server", "Serve the running models over an OpenAI-compatible API", app.action_toggle_api
        )
    else:
        yield SystemCommand("Stop API server", f"Stop serving at {api.url}", app.action_toggle_api)
    yield SystemCommand("Export chat", "Save the chat as Markdown or JSON", app.action_export_chat)
    yield from _screen_commands(app, "compare", COMPARE_ACTIONS)
    yield from _screen_commands(app, "settings", SETTINGS_ACTIONS)
    yield SystemCommand("Toggle dark mode", "Switch between the light and dark theme", app.action_toggle_dark)
