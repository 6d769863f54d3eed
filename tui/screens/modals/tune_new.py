"""Set up a fine-tuning run: base model, data file, name and the main options; Validate reads the data file and shows
what it found, and Start is allowed only once a file without problems has been validated."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from engines.errors import LlmTuiError
from engines.tune.paths import check_name
from engines.tune.types import DataReport, TuneOptions
from tui.widgets.tune_runs import report_lines

MAX_REPORT_PROBLEMS = 3


@dataclass(frozen=True, slots=True)
class TuneRequest:
    """What the dialog hands back: everything TuneProcess.start needs, and the data report it was allowed on."""

    base: str
    data: Path
    name: str
    options: TuneOptions
    report: DataReport


def default_name(base: str, now: datetime) -> str:
    """The base model's last path part, made safe for a folder name, and the date: `gemma-3-270m-20260105-1432`."""
    stem = Path(base.rstrip("/")).name.removesuffix(".gguf") or "run"
    slug = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")[:40] or "run"
    return f"{slug}-{now:%Y%m%d-%H%M}"


def _int(text: str, what: str, *, optional: bool = False) -> int | None:
    text = text.strip()
    if not text and optional:
        return None
    try:
        value = int(text)
    except ValueError:
        raise LlmTuiError(f"{what} must be a whole number, not {text!r}") from None
    if value <= 0:
        raise LlmTuiError(f"{what} must be above 0")
    return value


def _float(text: str, what: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise LlmTuiError(f"{what} must be a number, not {text.strip()!r}") from None
    if not value > 0:
        raise LlmTuiError(f"{what} must be above 0")
    return value


class TuneNewModal(ModalScreen[TuneRequest | None]):
    """Returns the run to start, or None when backed out of (Esc)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+b", "pick_base", "Pick base"),
        Binding("ctrl+t", "validate", "Validate"),
        Binding("ctrl+s", "start", "Start"),
        Binding("escape", "cancel", "Cancel"),
    ]
    DEFAULT_CSS = """
    #tune-new { height: auto; scrollbar-size-vertical: 1; }
    #tune-grid { grid-size: 4; grid-columns: 14 1fr 14 1fr; grid-rows: 1; grid-gutter: 0 1; height: auto; }
    #tune-grid > Label { padding: 0 0 0 1; color: $text-muted; }
    #tune-grid > Input { border: none; height: 1; padding: 0 1; background: $boost; }
    #tune-grid > Input:focus { background: $surface-lighten-1; }
    #tune-grid > Input.wide { column-span: 3; }
    #tune-grid > Select { height: 1; }
    #tune-grid > Select > SelectCurrent { border: none; height: 1; padding: 0 1; }
    #tune-report { height: auto; margin-top: 1; }
    #error { height: auto; }
    #tune-report.-blocked { color: $text-warning; }
    """
    now: ClassVar[Callable[[], datetime]] = datetime.now
    """The date in the default run name (tests fix it)."""

    def __init__(self, models_dir: Path, aliases: dict[str, str], *, base: str = "", data: str = "") -> None:
        super().__init__()
        self.models_dir = models_dir
        self.aliases = aliases
        self.base = base
        self.data = data
        self.report: DataReport | None = None
        """The last validation's report, for the data path it was made of (None: not validated since)."""
        self._auto_name = ""

    def compose(self) -> ComposeResult:
        defaults = TuneOptions()
        with VerticalScroll(classes="dialog wide", id="tune-new", can_focus=False):
            yield Label("New fine-tuning run (LoRA)", classes="dialog-title")
            with Grid(id="tune-grid"):
                yield Label("Base model")
                yield Input(
                    self.base, id="base", placeholder="catalog id, alias or path (ctrl+b picks)", classes="wide"
                )
                yield Label("Data JSONL")
                yield Input(self.data, id="data", placeholder="path to a .jsonl file", classes="wide")
                yield Label("Run name")
                yield Input("", id="name", placeholder="letters, digits, . _ -", classes="wide")
                yield Label("Rank")
                yield Input(str(defaults.rank), id="rank")
                yield Label("Alpha")
                yield Input(str(defaults.alpha), id="alpha")
                yield Label("Learning rate")
                yield Input(f"{defaults.learning_rate:g}", id="learning_rate")
                yield Label("Epochs")
                yield Input(f"{defaults.epochs:g}", id="epochs")
                yield Label("Max steps")
                yield Input("", id="max_steps", placeholder="none")
                yield Label("Batch size")
                yield Input(str(defaults.batch_size), id="batch_size")
                yield Label("Max seq len")
                yield Input(str(defaults.max_seq_len), id="max_seq_len")
                yield Label("Merge at end")
                yield Select([("no", "no"), ("yes", "yes")], value="no", allow_blank=False, id="merge")
            yield Static("Validate (ctrl+t) reads the data file before Start.", id="tune-report", markup=False)
            yield Static("", id="error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Validate (ctrl+t)", id="validate", compact=True)
                yield Button("Start (ctrl+s)", variant="primary", id="start", disabled=True, compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)
        yield Footer()  # the dialog's own keys, not those of the screen beneath

    def on_mount(self) -> None:
        # Tighter than the app's .dialog (app CSS outranks DEFAULT_CSS): the report and the buttons fit at 80x24.
        self.query_one("#tune-new").styles.padding = (0, 1)
        self.query_one(".dialog-title").styles.margin = (0, 0)
        self.query_one(".dialog-buttons").styles.margin = (0, 0)
        self._name_from_base()
        self.query_one("#base" if not self.base else "#data", Input).focus()

    def value(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "base":
            self._name_from_base()
        elif event.input.id == "data":
            self._show_report(None)  # another file: validate again

    def _name_from_base(self) -> None:
        """The default name follows the base model until a name is typed."""
        name = self.query_one("#name", Input)
        if name.value and name.value != self._auto_name:
            return
        base = self.value("base").strip()
        self._auto_name = default_name(base, type(self).now()) if base else ""
        name.value = self._auto_name

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "validate":
            self.action_validate()
        elif event.button.id == "start":
            self.action_start()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_pick_base(self) -> None:
        from tui.screens.modals.model_picker import ModelChoice, ModelPickerModal

        def picked(choice: ModelChoice | None) -> None:
            if choice is not None and choice.ref:
                self.query_one("#base", Input).value = choice.ref
                self.query_one("#data", Input).focus()

        self.app.push_screen(ModelPickerModal([], self.models_dir, self.aliases), picked)

    def data_path(self) -> Path | None:
        text = self.value("data").strip()
        return Path(text).expanduser() if text else None

    def action_validate(self) -> None:
        path = self.data_path()
        if path is None:
            self._error("Type the path of a JSONL data file first.")
            return
        if not path.is_file():
            self._error(f"No file at {path}.")
            return
        self._error("")
        self.query_one("#tune-report", Static).update(f"Reading {path.name}…")
        self._validate(path)

    @work(thread=True, exclusive=True, group="tune-validate")
    def _validate(self, path: Path) -> None:
        from engines.tune.data import validate_data

        try:
            report = validate_data(path)
        except (LlmTuiError, OSError, ValueError) as exc:
            self.app.call_from_thread(self._validation_failed, path, str(exc))
            return
        self.app.call_from_thread(self._validated, path, report)

    def _validation_failed(self, path: Path, message: str) -> None:
        if path == self.data_path():
            self._show_report(None)
            self._error(f"Cannot read {path.name}: {message}")

    def _validated(self, path: Path, report: DataReport) -> None:
        if path == self.data_path():  # not a file typed over since
            self._show_report(report)

    def _show_report(self, report: DataReport | None) -> None:
        self.report = report
        shown = self.query_one("#tune-report", Static)
        if report is None:
            shown.update("Validate (ctrl+t) reads the data file before Start.")
            shown.set_class(False, "-blocked")
        else:
            shown.update("\n".join(report_lines(report, MAX_REPORT_PROBLEMS)))
            shown.set_class(not report.ok, "-blocked")
        self.query_one("#start", Button).disabled = report is None or not report.ok

    def _error(self, text: str) -> None:
        self.query_one("#error", Static).update(text)

    def action_start(self) -> None:
        report = self.report
        if report is None:
            self._error("Validate the data file first (ctrl+t).")
            return
        if not report.ok:
            self._error(f"{report.path.name} has problems: a run cannot start from it.")
            return
        try:
            request = self._request(report)
        except LlmTuiError as exc:
            self._error(str(exc))
            return
        self.dismiss(request)

    def _request(self, report: DataReport) -> TuneRequest:
        base = self.value("base").strip()
        if not base:
            raise LlmTuiError("Pick a base model (ctrl+b) or type its catalog id or path.")
        name = self.value("name").strip()
        check_name(name)
        rank = _int(self.value("rank"), "Rank")
        alpha = _int(self.value("alpha"), "Alpha")
        batch = _int(self.value("batch_size"), "Batch size")
        seq = _int(self.value("max_seq_len"), "Max seq len")
        assert rank is not None and alpha is not None and batch is not None and seq is not None
        options = TuneOptions(
            rank=rank,
            alpha=alpha,
            learning_rate=_float(self.value("learning_rate"), "Learning rate"),
            epochs=_float(self.value("epochs"), "Epochs"),
            max_steps=_int(self.value("max_steps"), "Max steps", optional=True),
            batch_size=batch,
            max_seq_len=seq,
            merge=self.query_one("#merge", Select).value == "yes",
        )
        return TuneRequest(base, report.path.resolve(), name, options, report)
