"""Pick a model to launch on another host: the models its status document lists (what it has on disk)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, OptionList
from textual.widgets.option_list import Option


class HostModelsModal(ModalScreen[str | None]):
    """Type to filter; Enter launches the highlighted model; Esc cancels."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("down", "focus_list", "List", show=False),
    ]

    def __init__(self, host: str, models: Sequence[str]) -> None:
        super().__init__()
        self.host = host
        self.models = tuple(models)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(f"Launch on {self.host} — a model it has on disk", classes="dialog-title")
            yield Input(placeholder="filter", id="host-model-query")
            yield OptionList(id="host-model-options")
            yield Label("Enter launches · Esc cancels · needs a key with the admin scope", classes="dialog-hint")
        yield Footer()

    def on_mount(self) -> None:
        self._show("")

    def on_input_changed(self, event: Input.Changed) -> None:
        self._show(event.value)

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        options = self.query_one(OptionList)
        if options.option_count and options.highlighted is not None:
            self.dismiss(options.get_option_at_index(options.highlighted).id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_focus_list(self) -> None:
        self.query_one(OptionList).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _show(self, query: str) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        words = query.lower().split()
        shown = [m for m in self.models if all(w in m.lower() for w in words)]
        options.add_options([Option(m, id=m) for m in shown])
        if shown:
            options.highlighted = 0
