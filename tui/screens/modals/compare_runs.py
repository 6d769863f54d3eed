"""Choose a saved comparison to reopen; Delete removes one (after asking)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option

from engines.compare.types import CompareRun


def run_label(run: CompareRun) -> str:
    """`#3 05-01 12:00 · Name three colors. · gemma-3-270m vs tiny (sequential)`."""
    when = datetime.fromtimestamp(run.created_at).strftime("%m-%d %H:%M") if run.created_at else "unsaved"
    models = " vs ".join(p.model_id for p in run.panes)
    return f"#{run.id} {when} · {run.title} · {models} ({run.mode})"


class CompareRunsModal(ModalScreen[int | None]):
    """The saved comparisons, newest first; Enter reopens the highlighted one, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("delete,x", "delete", "Delete"),
    ]

    def __init__(self, runs: list[CompareRun], delete: Callable[[int], None]) -> None:
        """`delete` removes a run from the store (asked first)."""
        super().__init__()
        self.runs = runs
        self.delete = delete

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Saved comparisons", classes="dialog-title")
            yield OptionList(*self._options(), id="compare-runs")
            hint = "Enter reopens · Delete removes · Esc cancels" if self.runs else "Nothing saved yet (Ctrl+S saves)."
            yield Label(hint, classes="dialog-hint")
        yield Footer()  # the dialog's own keys, not those of the screen beneath

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        if self.runs:
            options.highlighted = 0
        options.focus()

    def _options(self) -> list[Option]:
        return [Option(run_label(r), id=str(r.id)) for r in self.runs]

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.dismiss(int(event.option.id))

    def action_delete(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is None or not self.runs:
            return
        run = self.runs[options.highlighted]
        from tui.screens.modals.confirm import ConfirmModal

        def done(yes: bool | None) -> None:
            if yes and run.id is not None:
                self.delete(run.id)
                self.runs = [r for r in self.runs if r.id != run.id]
                options.clear_options()
                options.add_options(self._options())
                if self.runs:
                    options.highlighted = 0

        self.app.push_screen(ConfirmModal(f"Delete the saved comparison “{run.title}”?"), done)

    def action_cancel(self) -> None:
        self.dismiss(None)
