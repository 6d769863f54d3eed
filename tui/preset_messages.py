"""Messages about presets ([presets.NAME] of config.toml) that travel between the palette, dialogs and screens."""

from __future__ import annotations

from textual.message import Message


class PresetChosen(Message):
    """The user chose preset `name` (in the command palette): the chat applies it to the current chat."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
