"""Choose a preset ([presets.NAME] of config.toml): its name, description, model and key parameters per row."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group
from rich.padding import Padding
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option

from engines.presets import Preset, preset_summary

NO_PRESETS = "No presets yet: add a [presets.NAME] table to config.toml (system, temperature, model...)."


def preset_lines(preset: Preset, current: bool = False) -> tuple[Text, Text]:
    """The name and description, then its model and key values."""
    head = Text()
    head.append(preset.name, style="bold")
    if current:
        head.append("  (in use)", style="italic")
    if preset.description:
        head.append(f"  {preset.description}")
    details = [f"model {preset.model}"] if preset.model else []
    if summary := preset_summary(preset):
        details.append(summary)
    if preset.launch is not None and "n_ctx" in preset.launch_keys:
        details.append(f"context {preset.launch.n_ctx}")
    return head, Text(" · ".join(details) or "the model's own defaults", style="dim")


def preset_row(preset: Preset, current: bool = False) -> Group:
    """One option of the list: the details under the name, indented, wrapped at words under themselves."""
    head, details = preset_lines(preset, current)
    return Group(head, Padding(details, (0, 0, 0, 2)))


class PresetPickerModal(ModalScreen[str | None]):
    """The presets, one row each; Enter returns the highlighted one's name, Esc None."""

    DEFAULT_CSS = """
    PresetPickerModal .dialog { max-height: 90%; }
    PresetPickerModal OptionList { height: auto; max-height: 16; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, presets: Mapping[str, Preset], current: str | None = None) -> None:
        super().__init__()
        self.presets = dict(presets)
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Preset — a system prompt and parameters", classes="dialog-title")
            if self.presets:
                rows = [Option(preset_row(p, name == self.current), id=name) for name, p in self.presets.items()]
                yield OptionList(*rows, id="preset-options")
                yield Label("Enter picks · Esc cancels", classes="dialog-hint")
            else:
                yield Label(NO_PRESETS, id="no-presets")
                yield Label("Esc closes", classes="dialog-hint")
        yield Footer()  # the dialog's own keys, not those of the screen beneath

    def on_mount(self) -> None:
        if self.presets:
            options = self.query_one(OptionList)
            names = list(self.presets)
            options.highlighted = names.index(self.current) if self.current in names else 0
            options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
