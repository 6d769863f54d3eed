"""What every llm-tui screen shares: the app as a typed shell, its runtime, and the app's hooks into the screen."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from engines.downloads.tasks import DownloadTask
    from tui.runtime import Runtime
    from tui.shell import Shell


class AppScreen(Screen[None]):
    """A full screen of the app (chat, catalog, instances, gauges, …)."""

    @property
    def shell(self) -> Shell:
        """What this screen may ask of the app (the app is checked against the Protocol where it is defined)."""
        return cast("Shell", self.app)

    @property
    def runtime(self) -> Runtime:
        """Config, engine manager, store, telemetry and the active instance."""
        return self.shell.runtime

    # -- the app's hooks: called on the screen shown when an app-wide event happens ------------------------------

    def api_changed(self) -> None:
        """The API server started, stopped or failed to start (a screen that shows it redraws it)."""

    def download_finished(self, task: DownloadTask) -> None:
        """A download ended, completed or failed (a screen that lists local models rescans)."""
