"""The app's entries in the command palette (Ctrl+P)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from tui.widgets.screen_bar import SCREEN_KEYS

if TYPE_CHECKING:
    from tui.app import LlmTuiApp


def app_commands(app: LlmTuiApp) -> Iterable[SystemCommand]:
    """Screen switches and the chat's main actions."""
    for key, mode, label in SCREEN_KEYS:
        yield SystemCommand(
            f"Go to {label}", f"Open the {mode} screen ({key.upper()})", lambda m=mode: app.switch_mode(m)
        )
    yield SystemCommand("New chat", "Start a new chat session", app.action_new_chat)
    yield SystemCommand("Launch model", "Pick a running instance or load a model", app.action_pick_model)
    yield SystemCommand("Stop generation", "Stop the reply that is streaming", app.action_stop_generation)
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
    yield SystemCommand("Toggle dark mode", "Switch between the light and dark theme", app.action_toggle_dark)
