"""The one list of the app's screens: key, mode name, label and how to build each.

The command line (`--screen`), the function-key bar, the app's modes and key bindings, and the command palette's
"Go to" entries all read this list, so a screen is added or renamed in one place. The module imports no Textual and
no screen: `llm-tui` parses `--screen` with it before anything else loads, and each screen's module (with its
catalog, telemetry or comparison code) loads when the screen is first opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from textual.screen import Screen

    from tui.screens.catalog import CatalogScreen
    from tui.screens.chat import ChatScreen
    from tui.screens.compare import CompareScreen
    from tui.screens.downloads import DownloadsScreen
    from tui.screens.embeddings import EmbeddingsScreen
    from tui.screens.evaluate import EvaluateScreen
    from tui.screens.fleet import FleetScreen
    from tui.screens.gauges import GaugesScreen
    from tui.screens.instances import InstancesScreen
    from tui.screens.settings import SettingsScreen
    from tui.screens.tune import TuneScreen

S = TypeVar("S", bound="Screen[None]")


@dataclass(frozen=True, slots=True)
class ScreenEntry(Generic[S]):
    """One screen: the key that opens it, its mode name (also `--screen`'s value) and its label in the bar."""

    key: str
    """Textual's key name ("f1"); shown upper-cased in the bar and the palette. "" for a screen without a key of
    its own (the palette, `--screen` and another screen's key open it; the bar shows it only while current)."""
    mode: str
    label: str
    load: Callable[[], type[S]]
    """The screen's class, imported on first use."""
    short: str = ""
    """The label when the bar is too narrow for all of them (80 columns); "" = the label."""

    def build(self) -> S:
        """A new screen (the app's mode factory)."""
        return self.load()()

    @property
    def palette_title(self) -> str:
        """The command palette's entry that opens this screen."""
        return f"Go to {self.label}"

    @property
    def palette_help(self) -> str:
        """The palette entry's help line."""
        return f"Open the {self.mode} screen ({self.key.upper()})" if self.key else f"Open the {self.mode} screen"


def _chat() -> type[ChatScreen]:
    from tui.screens.chat import ChatScreen

    return ChatScreen


def _catalog() -> type[CatalogScreen]:
    # The catalog's discovery and fit code load when the screen is first opened, not with the app.
    from tui.screens.catalog import CatalogScreen

    return CatalogScreen


def _downloads() -> type[DownloadsScreen]:
    from tui.screens.downloads import DownloadsScreen

    return DownloadsScreen


def _instances() -> type[InstancesScreen]:
    from tui.screens.instances import InstancesScreen

    return InstancesScreen


def _gauges() -> type[GaugesScreen]:
    # The telemetry widgets load when the screen is first opened, not with the app.
    from tui.screens.gauges import GaugesScreen

    return GaugesScreen


def _compare() -> type[CompareScreen]:
    from tui.screens.compare import CompareScreen

    return CompareScreen


def _embeddings() -> type[EmbeddingsScreen]:
    from tui.screens.embeddings import EmbeddingsScreen

    return EmbeddingsScreen


def _settings() -> type[SettingsScreen]:
    from tui.screens.settings import SettingsScreen

    return SettingsScreen


def _fleet() -> type[FleetScreen]:
    # The fleet poller (httpx, the Prometheus parser) loads when the screen is first opened.
    from tui.screens.fleet import FleetScreen

    return FleetScreen


def _tune() -> type[TuneScreen]:
    # The plot and the tune library load when the screen is first opened; torch and peft only in the child.
    from tui.screens.tune import TuneScreen

    return TuneScreen


def _evaluate() -> type[EvaluateScreen]:
    from tui.screens.evaluate import EvaluateScreen

    return EvaluateScreen


CHAT = ScreenEntry("f1", "chat", "Chat", _chat)
CATALOG = ScreenEntry("f2", "catalog", "Catalog", _catalog, "Cat")
DOWNLOADS = ScreenEntry("f3", "downloads", "Downloads", _downloads, "Down")
INSTANCES = ScreenEntry("f4", "instances", "Instances", _instances, "Inst")
GAUGES = ScreenEntry("f5", "gauges", "Gauges", _gauges, "Gauge")
COMPARE = ScreenEntry("f6", "compare", "Compare", _compare, "Comp")
EMBEDDINGS = ScreenEntry("f7", "embeddings", "Embed", _embeddings)
SETTINGS = ScreenEntry("f8", "settings", "Settings", _settings, "Set")
FLEET = ScreenEntry("f10", "fleet", "Fleet", _fleet)
TUNE = ScreenEntry("f11", "tune", "Tune", _tune)
EVALUATE = ScreenEntry("", "evaluate", "Evaluate", _evaluate, "Eval")
"""No function key is left (F9 and F12 are the chat's): the Tune screen's `e`, the palette and `--screen` open it."""

SCREENS: tuple[ScreenEntry[Any], ...] = (
    CHAT,
    CATALOG,
    DOWNLOADS,
    INSTANCES,
    GAUGES,
    COMPARE,
    EMBEDDINGS,
    SETTINGS,
    FLEET,
    TUNE,
    EVALUATE,
)
"""Every screen, in the order of their keys (the bar shows them so)."""
KEYED: tuple[ScreenEntry[Any], ...] = tuple(entry for entry in SCREENS if entry.key)
"""The screens with a function key of their own."""
MODE_NAMES: tuple[str, ...] = tuple(entry.mode for entry in SCREENS)
"""The screens' mode names: `--screen`'s choices."""
