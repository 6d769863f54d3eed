"""Choose the model the chat talks to: a running instance, or one to launch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, OptionList
from textual.widgets.option_list import Option

from engines.catalog.builtin import builtin_catalog
from engines.catalog.packaged import package_installed
from engines.types import InstanceInfo


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """Either a running instance (run_id) or a model reference to launch."""

    run_id: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class _Row:
    key: str
    label: str
    choice: ModelChoice


class ModelPickerModal(ModalScreen[ModelChoice | None]):
    """Type to filter; Enter picks the highlighted row, or launches what was typed."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("down", "focus_list", "List", show=False),
    ]

    def __init__(self, instances: list[InstanceInfo], models_dir: Path, aliases: dict[str, str]) -> None:
        super().__init__()
        self.rows = _rows(instances, models_dir, aliases)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Model — a running instance, or one to launch", classes="dialog-title")
            yield Input(placeholder="catalog id, alias or path to a GGUF file", id="model-query")
            yield OptionList(id="model-options")
            yield Label("Enter picks · Esc cancels", classes="dialog-hint")
        yield Footer()  # the dialog's own keys, not those of the screen beneath

    def on_mount(self) -> None:
        self._show("")

    def on_input_changed(self, event: Input.Changed) -> None:
        self._show(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        options = self.query_one(OptionList)
        typed = event.value.strip()
        if options.option_count and options.highlighted is not None and not _exact_path(typed):
            self._pick(options.get_option_at_index(options.highlighted).id)
        elif typed:
            self.dismiss(ModelChoice(ref=typed))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._pick(event.option.id)

    def action_focus_list(self) -> None:
        self.query_one(OptionList).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _pick(self, key: str | None) -> None:
        row = next((r for r in self.rows if r.key == key), None)
        if row is not None:
            self.dismiss(row.choice)

    def _show(self, query: str) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        words = query.lower().split()
        shown = [r for r in self.rows if all(w in r.label.lower() for w in words)]
        options.add_options([Option(r.label, id=r.key) for r in shown])
        if shown:
            options.highlighted = 0


def _rows(instances: list[InstanceInfo], models_dir: Path, aliases: dict[str, str]) -> list[_Row]:
    rows = [
        _Row(
            f"run:{i.run_id}",
            f"● {i.model_id}  [{i.engine}, {i.state.value}]  running as {i.run_id}",
            ModelChoice(run_id=i.run_id),
        )
        for i in instances
    ]
    rows += [
        _Row(f"alias:{name}", f"  {name}  → {target}  (alias)", ModelChoice(ref=name))
        for name, target in aliases.items()
    ]
    known_files = set()
    for entry in builtin_catalog():
        known_files.add(entry.file)
        # Only what can load now: downloaded, or shipped by an installed package (the catalog
        # screen lists the rest, to download).
        if entry.file and (models_dir / entry.file).is_file():
            where = "downloaded"
        elif package_installed(entry):
            where = f"from the {entry.pypi_package} package"
        else:
            continue
        rows.append(
            _Row(
                f"cat:{entry.id}",
                f"  {entry.id}  {entry.name}, {entry.quantization or ''} ({where})",
                ModelChoice(ref=entry.id),
            )
        )
    if models_dir.is_dir():
        for path in sorted(models_dir.glob("*.gguf")):
            if path.name not in known_files:
                rows.append(_Row(f"file:{path}", f"  {path.name}  (local file)", ModelChoice(ref=str(path))))
    return rows


def _exact_path(text: str) -> bool:
    return bool(text) and ("/" in text or text.endswith(".gguf"))
