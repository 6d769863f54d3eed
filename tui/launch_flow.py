"""Pick a model, then the launch dialog: what `n` does on the instances screen and on the fleet's local box."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engines.errors import LlmTuiError
from tui.screen_list import CHAT

if TYPE_CHECKING:
    from tui.screens.app_screen import AppScreen


def pick_and_launch(screen: AppScreen) -> None:
    """Pick a model (catalog id, alias, GGUF path, or a running instance), then the launch dialog."""
    from tui.screens.modals.model_picker import ModelChoice, ModelPickerModal

    def done(choice: ModelChoice | None) -> None:
        if choice is None:
            return
        if choice.run_id is not None:
            screen.shell.set_active_instance(choice.run_id)
            screen.shell.switch_mode(CHAT.mode)
        elif choice.ref is not None:
            prepare_launch(screen, choice.ref)

    config = screen.runtime.config
    instances = screen.runtime.manager.instances()
    screen.app.push_screen(ModelPickerModal(instances, config.models_dir, dict(config.aliases)), done)


def prepare_launch(screen: AppScreen, ref: str) -> None:
    """Find what `ref` is (the catalog scan reads headers: off the UI thread), then open the dialog."""
    from tui.screens.modals.launch import launch_target

    app, shell, runtime = screen.app, screen.shell, screen.runtime

    def find() -> None:
        try:
            target = launch_target(ref, runtime)
        except LlmTuiError as exc:
            app.call_from_thread(app.notify, str(exc), title=f"Cannot launch {ref}", severity="error")
            return
        app.call_from_thread(shell.open_launch_dialog, target)

    screen.run_worker(find, thread=True, exclusive=True, group="prepare-launch")
