"""A preset for the compare screen's run: the picker, and the system prompt and parameters it gives every pane."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engines.presets import Preset, preset_params
from engines.types import Params

if TYPE_CHECKING:
    from tui.screens.app_screen import AppScreen

PRESET_KEY = "F12"
"""The key that opens the preset picker, on the compare screen as in the chat."""


@dataclass(frozen=True, slots=True)
class PresetApplied:
    """A preset chosen for the run: its name and what it set, to tell when Ctrl+G has changed that since."""

    name: str
    system_prompt: str | None
    params: Params

    def label(self, system_prompt: str | None, params: Params) -> str:
        """`preset NAME`, with "(edited)" once the options no longer are the preset's."""
        edited = (system_prompt, params) != (self.system_prompt, self.params)
        return f"preset {self.name} (edited)" if edited else f"preset {self.name}"


def applied(preset: Preset, system_prompt: str | None, defaults: Params) -> PresetApplied:
    """What choosing `preset` gives every pane: its parameters over the config's [defaults] (not over an earlier
    preset's), and its system prompt ("" none; when it has no `system`, the prompt set before stays)."""
    system = system_prompt if preset.system is None else preset.system or None
    return PresetApplied(preset.name, system, preset_params(preset, defaults))


def pick_preset(screen: AppScreen, current: str | None, choose: Callable[[Preset], None]) -> None:
    """Open the preset picker over `screen`; `choose` receives the preset picked. With none in the config, say how
    to add one instead."""
    from tui.screens.modals.preset_picker import NO_PRESETS, PresetPickerModal

    presets = screen.runtime.config.presets
    if not presets:
        screen.notify(NO_PRESETS, title="Presets", severity="warning")
        return

    def done(name: str | None) -> None:
        preset = presets.get(name) if name is not None else None
        if preset is not None:
            choose(preset)

    screen.app.push_screen(PresetPickerModal(presets, current), done)
