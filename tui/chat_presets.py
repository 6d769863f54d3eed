"""A preset applied to the open chat: its system prompt and parameters, and its model when it names one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engines.presets import preset_params

if TYPE_CHECKING:
    from tui.screens.chat import ChatScreen


def choose_preset(screen: ChatScreen) -> None:
    """Open the preset picker (F12); the one chosen is applied to the chat."""
    from tui.screens.modals.preset_picker import NO_PRESETS, PresetPickerModal

    presets = screen.runtime.config.presets
    if not presets:
        screen.notify(NO_PRESETS, timeout=8)
        return

    def done(name: str | None) -> None:
        if name is not None:
            apply_preset(screen, name)

    screen.app.push_screen(PresetPickerModal(presets), done)


def apply_preset(screen: ChatScreen, name: str) -> None:
    """Put preset `name`'s system prompt and parameters on the open chat (its tools stay); load its model."""
    preset = screen.runtime.config.presets.get(name)
    if preset is None or screen.session is None:
        screen.notify(f"No preset named {name}.", severity="warning")
        return
    session = screen.session
    params = preset_params(preset, session.params or screen.runtime.config.defaults)
    system = session.system_prompt if preset.system is None else (preset.system or None)  # "": no system prompt
    screen.session = screen.store.update_session(session.id, system_prompt=system, params=params)
    screen.open_session(screen.session)
    active = screen.runtime.active
    if preset.model and (active is None or preset.model != active.model_id):
        from engines.launch import default_options
        from engines.presets import preset_launch

        config = screen.runtime.config
        options = preset_launch(preset, default_options(config)) if preset.launch_keys else None
        screen.shell.launch_model(preset.model, options=options)
        screen.notify(f"Preset {name}: loading {preset.model}…")
    else:
        screen.notify(f"Preset {name} applied to this chat.")
