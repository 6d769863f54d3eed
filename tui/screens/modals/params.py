"""A session's system prompt and sampling parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Switch, TextArea

from engines.errors import BadRequest
from engines.types import Params

_FIELDS: tuple[tuple[str, str, str], ...] = (
    # Hints fit a field at 80 columns (about 17 cells); labels fit their 15-cell column.
    ("temperature", "Temperature", "0–5; 0 = greedy"),
    ("top_p", "Top p", "0 to 1"),
    ("top_k", "Top k", "0 = off"),
    ("repetition_penalty", "Repeat penalty", "1 = off"),
    ("max_tokens", "Max tokens", "empty: no limit"),
    ("seed", "Seed", "empty = random"),
)
_INTS = {"top_k", "max_tokens", "seed"}


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What the dialog returns."""

    system_prompt: str | None
    params: Params


class ParamsModal(ModalScreen[SessionSettings | None]):
    """Edit the system prompt and sampling parameters; Ctrl+S or Save applies, Esc cancels."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]
    AUTO_FOCUS = ""  # on_mount focuses the system prompt without scrolling its label out of view

    def __init__(self, system_prompt: str | None, params: Params, *, no_json: str | None = None) -> None:
        """`no_json` names the active engine when it cannot follow a JSON schema."""
        super().__init__()
        self.system_prompt = system_prompt or ""
        self.params = params
        self.no_json = no_json

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="params-dialog"):
            yield Label("Chat settings", classes="dialog-title")
            with VerticalScroll(id="params-body", can_focus=False):
                yield Label("System prompt")
                yield TextArea(self.system_prompt, id="system", soft_wrap=True, tab_behavior="focus", compact=True)
                with Grid(id="param-grid"):
                    for name, label, hint in _FIELDS:
                        value = getattr(self.params, name)
                        yield Label(label)
                        yield Input("" if value is None else str(value), placeholder=hint, id=name, compact=True)
                    yield Label("Stop sequences")
                    stops = _stops_text(self.params.stop)
                    yield Input(stops, placeholder=r"comma-separated; \n for newline", id="stop", compact=True)
                with Horizontal(id="json-bar"):
                    on = self.params.json_schema is not None and self.no_json is None
                    yield Switch(on, id="json-mode", disabled=self.no_json is not None)
                    why = f" (the {self.no_json} engine cannot)" if self.no_json else ""
                    yield Label(f"JSON output: replies must follow this JSON Schema{why}")
                schema = self.params.json_schema or ""
                yield TextArea(schema, id="schema", language="json", tab_behavior="focus", compact=True)
            yield Label("", id="error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="save")
                yield Button("Cancel (esc)", id="cancel")
        yield Footer()  # the dialog's own keys, not those of the screen beneath

    def on_mount(self) -> None:
        self.query_one("#system", TextArea).focus(scroll_visible=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_save()

    def action_save(self) -> None:
        try:
            params = self._read()
        except BadRequest as exc:
            self.query_one("#error", Label).update(str(exc))
            return
        system = self.query_one("#system", TextArea).text.strip()
        self.dismiss(SessionSettings(system or None, params))

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _read(self) -> Params:
        values: dict[str, object] = {}
        for name, label, _ in _FIELDS:
            text = self.query_one(f"#{name}", Input).value.strip()
            if not text:
                values[name] = None
                continue
            try:
                values[name] = int(text) if name in _INTS else float(text)
            except ValueError:
                kind = "a whole number" if name in _INTS else "a number"
                raise BadRequest(f"{label}: {text!r} is not {kind}") from None
        stops = parse_stops(self.query_one("#stop", Input).value)
        schema = None
        if self.query_one("#json-mode", Switch).value:
            schema = self.query_one("#schema", TextArea).text.strip()
            if not schema:
                raise BadRequest("type a JSON Schema, or turn JSON output off")
        params = Params(stop=stops, json_schema=schema, **values)  # type: ignore[arg-type]
        params.validate()
        return params


def parse_stops(text: str) -> tuple[str, ...]:
    r"""Split comma-separated stop sequences; `\n`, `\t`, `\,` and `\\` are escapes."""
    escapes = {"n": "\n", "t": "\t", ",": "\0", "\\": "\\"}
    decoded = re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(0)), text)
    parts = [p.replace("\0", ",") for p in decoded.split(",")]
    return tuple(p for p in parts if p.strip(" "))  # a newline or tab is a stop people want; a stray space is not


def _stops_text(stops: tuple[str, ...]) -> str:
    return ",".join(
        s.replace("\\", "\\\\").replace(",", "\\,").replace("\n", "\\n").replace("\t", "\\t") for s in stops
    )
