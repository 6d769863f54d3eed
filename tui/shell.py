"""What a screen may ask of the app: the shell's side of the contract between the app and its screens.

Screens see the app only through this Protocol (`AppScreen.shell`), so a screen can be read, and tested, knowing
what it can ask for, and renaming one of these methods in the app fails mypy where a screen calls it. The other way,
the app tells screens of app-wide events through `AppScreen`'s hook methods (`api_changed`, `download_finished`),
never by looking a method up by its name.

These stay methods rather than messages: each has one receiver (the app), the screen wants its effect in order
(`set_active_instance`, then `switch_mode`), and the slow ones (`launch_model`, `stop_instance`, `toggle_api`)
already run in the app's workers and report back with the typed messages of `tui.messages`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from textual.widget import AwaitMount
    from textual.worker import Worker

    from engines.types import LaunchOptions
    from tui.runtime import Runtime
    from tui.screens.modals.launch import LaunchTarget


class Shell(Protocol):
    """The app as its screens see it."""

    @property
    def runtime(self) -> Runtime:
        """Config, engine manager, store, telemetry and the active instance."""
        ...

    @property
    def status_text(self) -> str:
        """Active model · engine · state (and the API's address), as the header shows it."""
        ...

    def launch_model(
        self, ref: str, engine: str | None = None, options: LaunchOptions | None = None, unload: Sequence[str] = ()
    ) -> Worker[None]:
        """Load a model in a worker (after the memory check) and make it the chat's instance."""
        ...

    def open_launch_dialog(self, target: LaunchTarget) -> None:
        """Ask how to launch `target` (engine, device, context…), then launch it and open the chat."""
        ...

    def set_active_instance(self, run_id: str) -> None:
        """Point the chat at an instance that is already running."""
        ...

    def stop_instance(self, run_id: str) -> Worker[None]:
        """Stop an instance in a worker; a failure is said, and the chat moves to another ready instance."""
        ...

    def toggle_api(self) -> Worker[None]:
        """Start the OpenAI-compatible API server over the running instances, or stop it."""
        ...

    def refresh_status(self) -> None:
        """Show the active instance's model, engine and state in the header."""
        ...

    def switch_mode(self, mode: str) -> AwaitMount:
        """Show the screen of `mode` (a `tui.screen_list` mode name)."""
        ...
