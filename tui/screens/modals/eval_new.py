"""Start an evaluation: which running instance, which data (read first, in a worker, with its bad rows shown by
line), how many shots and how many items per subject."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from engines.errors import LlmTuiError
from engines.evaluate.types import EvalOptions, EvalSet
from engines.types import InstanceInfo

PROBLEMS_SHOWN = 20
"""Refused rows listed in the dialog (it scrolls; the count says how many more)."""
MAX_SHOTS = 25


@dataclass(frozen=True, slots=True)
class EvalRequest:
    """What the dialog returns: the instance, the data read, and the run's options."""

    run_id: str
    model: str
    path: Path
    data: EvalSet
    options: EvalOptions


def data_summary(data: EvalSet) -> str:
    """Counts, then the first refused rows with their file and line (markup escaped)."""
    dev = sum(len(items) for items in data.dev.values())
    subjects = data.subjects()
    lines = [
        f"{len(data.test)} test items in {len(subjects)} subject{'s' if len(subjects) != 1 else ''}"
        f" · {dev} dev items for shots",
        f"data {escape(data.name)} · sha256 {data.sha256[:12] or '–'}",
    ]
    if data.problems:
        lines.append(f"[b]{len(data.problems)} row{'s' if len(data.problems) != 1 else ''} refused:[/b]")
        for problem in data.problems[:PROBLEMS_SHOWN]:
            lines.append(f"  {escape(problem.source)}: {escape(problem.message)}")
        if len(data.problems) > PROBLEMS_SHOWN:
            lines.append(f"  … and {len(data.problems) - PROBLEMS_SHOWN} more")
    return "\n".join(lines)


def parse_options(shots: str, limit: str) -> EvalOptions | str:
    """The options typed, or what is wrong with them."""
    try:
        shot_count = int(shots.strip() or "0")
    except ValueError:
        return f"Shots must be a whole number from 0 to {MAX_SHOTS}, not {shots.strip()!r}."
    if not 0 <= shot_count <= MAX_SHOTS:
        return f"Shots must be from 0 to {MAX_SHOTS}, not {shot_count}."
    limit_count: int | None = None
    if limit.strip():
        try:
            limit_count = int(limit.strip())
        except ValueError:
            return f"The limit must be a whole number of items per subject, or blank for all, not {limit.strip()!r}."
        if limit_count < 1:
            return "The limit must be at least 1 item per subject (blank for all)."
    return EvalOptions(shots=shot_count, limit=limit_count)


class NewEvalModal(ModalScreen[EvalRequest | None]):
    """Enter on the data field (or ctrl+t) reads it; Start (ctrl+s, or Enter on shots or limit) starts; Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+t", "read", "Read data"),
        Binding("ctrl+s", "start", "Start"),
        Binding("escape", "cancel", "Cancel"),
    ]
    DEFAULT_CSS = """
    NewEvalModal .dialog { height: 90%; max-height: 24; }
    NewEvalModal .eval-row { height: auto; margin-bottom: 1; }
    NewEvalModal .eval-row Label { width: 20; }
    NewEvalModal .eval-row Input, NewEvalModal .eval-row Select { width: 1fr; }
    NewEvalModal .eval-row #eval-shots { width: 8; margin-right: 2; }
    NewEvalModal #eval-info-box { height: 1fr; }
    NewEvalModal #eval-info-box:focus { background: $foreground 6%; }
    NewEvalModal #eval-data-info { height: auto; color: $text-muted; }
    NewEvalModal #eval-error { width: 100%; }
    """

    def __init__(self, instances: Sequence[InstanceInfo], data_path: str = "", *, shots: int = 5) -> None:
        super().__init__()
        self.instances = tuple(instances)
        self.data_path = data_path
        self.shots = shots
        self.data: EvalSet | None = None
        self.loaded_path: Path | None = None
        self._start_after_load = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("New evaluation", classes="dialog-title")
            with Horizontal(classes="eval-row"):
                yield Label("Instance")
                options = [(f"{i.model_id} · {i.engine} ({i.run_id})", i.run_id) for i in self.instances]
                yield Select(
                    options, value=self.instances[0].run_id, allow_blank=False, id="eval-instance", compact=True
                )
            with Horizontal(classes="eval-row"):
                yield Label("Data (file/folder)")
                yield Input(self.data_path, placeholder="mmlu/ · set.csv · set.jsonl", id="eval-data", compact=True)
            with Horizontal(classes="eval-row"):
                yield Label("Shots")
                yield Input(str(self.shots), id="eval-shots", compact=True)
                yield Label("Limit per subject")
                yield Input("", placeholder="all", id="eval-limit", compact=True)
            with VerticalScroll(id="eval-info-box"):
                yield Static("Enter on the data field reads it (ctrl+t); ctrl+s starts.", id="eval-data-info")
            yield Static("", classes="dialog-error", id="eval-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Read (ctrl+t)", id="read", compact=True)
                yield Button("Start (ctrl+s)", variant="primary", id="start", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)
        yield Footer()  # the dialog's own keys, not those of the screen beneath

    def on_mount(self) -> None:
        self.query_one("#eval-data", Input).focus()

    # -- reading the data ---------------------------------------------------------------------------------------

    def _path(self) -> Path | None:
        text = self.query_one("#eval-data", Input).value.strip()
        if not text:
            self._error("Type the path of a CSV, a JSONL or a folder of CSVs (the MMLU or C-Eval layout).")
            return None
        path = Path(text).expanduser()
        if not path.exists():
            self._error(f"No such file or folder: {path}")
            return None
        return path

    def _error(self, message: str) -> None:
        self.query_one("#eval-error", Static).update(message)

    def load(self) -> None:
        """Read the data field's path in a worker; its counts and refused rows show when read."""
        path = self._path()
        if path is None:
            return
        self._error("")
        self.data = None
        self.query_one("#eval-data-info", Static).update(f"Reading {escape(str(path))}…")
        self._read(path)

    @work(thread=True, exclusive=True, group="eval-load")
    def _read(self, path: Path) -> None:
        from engines.evaluate.data import load_eval_set

        try:
            data = load_eval_set(path)
        except (LlmTuiError, OSError) as exc:
            self.app.call_from_thread(self._read_failed, path, str(exc))
            return
        self.app.call_from_thread(self._read_done, path, data)

    def _read_done(self, path: Path, data: EvalSet) -> None:
        self.data, self.loaded_path = data, path
        self.query_one("#eval-data-info", Static).update(data_summary(data))
        if self._start_after_load:
            self._start_after_load = False
            self.start()

    def _read_failed(self, path: Path, message: str) -> None:
        self._start_after_load = False
        self.query_one("#eval-data-info", Static).update("")
        self._error(f"Cannot read {path}: {message}")

    # -- starting -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Return the request, reading the data first when the path changed since it was read."""
        options = parse_options(self.query_one("#eval-shots", Input).value, self.query_one("#eval-limit", Input).value)
        if isinstance(options, str):
            self._error(options)
            return
        path = self._path()
        if path is None:
            return
        if self.data is None or path != self.loaded_path:
            self._start_after_load = True
            self.load()
            return
        if not self.data.test:
            self._error("The data has no test item to evaluate.")
            return
        run_id = self.query_one("#eval-instance", Select).value
        instance = next((i for i in self.instances if i.run_id == run_id), None)
        if instance is None:
            self._error("Choose the instance to evaluate.")
            return
        self.dismiss(EvalRequest(instance.run_id, instance.model_id, path, self.data, options))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "eval-data":
            self.load()
        else:
            self.start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.start()
        elif event.button.id == "read":
            self.load()
        else:
            self.dismiss(None)

    def action_read(self) -> None:
        self.load()

    def action_start(self) -> None:
        self.start()

    def action_cancel(self) -> None:
        self.dismiss(None)
