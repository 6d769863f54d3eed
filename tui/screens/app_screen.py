"""What every llm-tui screen shares: typed access to the app and its runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from tui.app import LlmTuiApp
    from tui.runtime import Runtime


class AppScreen(Screen[None]):
    """A full screen of the app (chat, catalog, instances, gauges, …)."""

    @property
    def llm_app(self) -> LlmTuiApp:
        """The app, typed."""
        return cast("LlmTuiApp", self.app)

    @property
    def runtime(self) -> Runtime:
        """Config, engine manager, store, telemetry and the active instance."""
        return self.llm_app.runtime
