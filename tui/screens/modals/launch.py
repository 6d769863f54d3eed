"""The launch dialog: engine, device, context, chat template, GPU layers, threads, dtype, quantization, LoRA, idle
unload.

Only engines that can load the model's format are offered; those not installed
are listed with the extra that installs them, and with none installed the
dialog says so and cannot launch. Fields the chosen engine does not honour are
disabled. The fit check follows every change. Everything fits at 80x24.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from engines.adapters import registry
from engines.catalog.fit import ModelShape, Resources, fit
from engines.config.values import MAX_PARALLEL, SPECULATIVE_MODES
from engines.errors import BadRequest, ModelNotFound
from engines.templates.chat import CHOOSABLE, family_template
from engines.types import LaunchOptions

if TYPE_CHECKING:
    from engines.catalog.listing import CatalogRow
    from tui.runtime import Runtime

DTYPES = ("auto", "float16", "bfloat16", "float32")
QUANTIZATIONS = ("none", "8bit", "4bit")
OPTIONAL_FIELDS = (
    "n_gpu_layers",
    "n_threads",
    "dtype",
    "quantization",
    "lora_path",
    "idle_unload_s",
    "chat_template",
    "parallel",
    "speculative",
)
"""LaunchOptions fields some engines ignore: their widgets are disabled unless the chosen engine honours them."""
_UNIT_SPACE = re.compile(r"(?<=\d) (?=[KMGT]i?B\b|tokens\b|%)")


@dataclass(frozen=True, slots=True)
class LaunchTarget:
    """What is being launched: the reference to load, what it is, and its memory shape if known."""

    ref: str
    name: str
    format: str
    engines: tuple[str, ...] = ()
    shape: ModelShape | None = None
    context_length: int | None = None
    n_ctx: int | None = None
    """The context the user chose where the launch began (the catalog's fit check), else the configured one."""
    has_chat_template: bool | None = None
    """Whether the GGUF carries a chat template (None: not known, e.g. not downloaded yet)."""
    catalog_template: str | None = None
    """The built-in template the catalog or the model's family names ("gemma3"), if any."""
    n_gpu_layers: int | None = None
    """The GPU layers a fit check chose where the launch began (-1 all, 0 none: CPU); None: the configured ones."""


@dataclass(frozen=True, slots=True)
class LaunchChoice:
    """What the dialog returns."""

    ref: str
    engine: str
    options: LaunchOptions


@dataclass(frozen=True, slots=True)
class EngineOption:
    name: str
    usable: bool
    note: str
    """Why it cannot be used ("pip install 'llm-tui[llama]'", "not built yet"), or ""."""


def launch_target(ref: str, runtime: Runtime) -> LaunchTarget:
    """What `ref` (catalog id, alias, or a model file or folder) is, with its shape. Blocking: scans the catalog.

    Raises ModelNotFound naming what was looked for.
    """
    from engines.catalog.builtin import entry_for_file
    from engines.catalog.gguf_header import read_gguf_header
    from engines.catalog.listing import find_row
    from engines.catalog.resolve import follow_aliases

    target = follow_aliases(ref, runtime.config.aliases)
    row = find_row(runtime.catalog_listing(), target)
    if row is not None:
        return target_for_row(row)
    path = Path(target).expanduser()
    if path.is_file():
        header = read_gguf_header(path)  # BadModelFile says what is wrong with it
        shape = ModelShape.from_gguf_header(header)
        entry = entry_for_file(path.name)
        template = (entry.chat_template if entry else None) or family_template(header.architecture)
        return LaunchTarget(
            str(path),
            path.stem,
            "gguf",
            ("llama.cpp",),
            shape,
            header.context_length,
            has_chat_template=header.has_chat_template,
            catalog_template=template,
        )
    if path.is_dir():
        return LaunchTarget(str(path), path.name, "hf", ("transformers",))
    raise ModelNotFound(f"{ref!r} is not a catalog id, an alias, or a model file or folder")


def target_for_row(row: CatalogRow, n_ctx: int | None = None) -> LaunchTarget:
    """What launching a catalog row loads, with the context chosen for the catalog's fit check (`n_ctx`)."""
    from engines.catalog.builtin import find_entry
    from engines.catalog.listing import row_shape

    entry = find_entry(row.catalog_id) if row.catalog_id else None
    template = (entry.chat_template if entry else None) or family_template(row.family, row.architecture)
    return LaunchTarget(
        str(row.path) if row.path and row.source != "catalog" else row.id,
        row.name,
        row.format,
        row.engines,
        row_shape(row),
        row.context_length,
        n_ctx=n_ctx,
        has_chat_template=row.has_chat_template,
        catalog_template=template,
    )


def template_options(target: LaunchTarget) -> list[tuple[str, str]]:
    """(label, value) for the chat template list, the sensible default first: the file's own, else the catalog's.

    The value "" means the file's own template (else the catalog's); others name a built-in template.
    """
    out: list[tuple[str, str]] = []
    if target.has_chat_template:
        out.append(("from the file", ""))
    elif target.has_chat_template is None:
        out.append(("auto", ""))  # the file's own if it has one, else the catalog's, decided at load
    known = target.catalog_template if target.catalog_template in CHOOSABLE else None
    if known is not None:
        out.append((CHOOSABLE[known], known))  # first: the default when the file has none (no note: 80x24)
    out += [(label, name) for name, label in CHOOSABLE.items() if name != known]
    return out


def engine_options(target: LaunchTarget) -> list[EngineOption]:
    """Registered engines that load the format (installed first), then the catalog's engines not built yet."""
    out = []
    for name in registry.engines_for_format(target.format):
        entry = registry.entry(name)
        installed = registry.is_installed(name)
        out.append(EngineOption(name, installed, "" if installed else entry.install_hint))
    known = {o.name for o in out}
    out += [EngineOption(e, False, "not built yet") for e in target.engines if e not in known and e != "fake"]
    return sorted(out, key=lambda o: not o.usable)


def devices(resources: Resources) -> list[tuple[str, str]]:
    """(label, value) for the device list: CPU, auto, and each GPU telemetry sees."""
    out = [("CPU only", "cpu"), ("auto (GPU if any)", "auto")]
    out += [(f"GPU {g.index} ({g.free_bytes / 1e9:.1f} GB free)", f"cuda:{g.index}") for g in resources.gpus]
    return out


def read_options(values: Mapping[str, str], base: LaunchOptions, allowed: Sequence[str]) -> LaunchOptions:
    """LaunchOptions from the dialog's texts; BadRequest names the field and what it takes."""

    def whole(name: str, label: str, low: int, high: int) -> int | None:
        text = values.get(name, "").strip()
        if not text:
            return None
        try:
            value = int(text.replace(",", "").replace("_", ""))
        except ValueError:
            raise BadRequest(f"{label}: {text!r} is not a whole number") from None
        if not low <= value <= high:
            raise BadRequest(f"{label}: {value} is outside {low}…{high}")
        return value

    n_ctx = whole("n_ctx", "Context", 256, 1 << 20) or base.n_ctx
    layers = whole("n_gpu_layers", "GPU layers", -1, 10_000)
    threads = whole("n_threads", "Threads", 1, 1024)
    idle_min = whole("idle_unload_min", "Idle unload (minutes)", 1, 7 * 24 * 60)
    parallel = whole("parallel", "Parallel", 1, MAX_PARALLEL) or base.parallel
    speculative = values.get("speculative", "off")
    template = values.get("chat_template", "")
    lora_text = values.get("lora_path", "").strip()
    lora = Path(lora_text).expanduser() if lora_text and "lora_path" in allowed else None
    if lora is not None and not (lora.is_file() or (lora / "adapter_config.json").is_file()):
        what = "no PEFT adapter folder (adapter_config.json)" if lora.is_dir() else "no such file or folder"
        raise BadRequest(f"LoRA adapter: {what}: {lora}")
    device = values.get("device", base.device) or "cpu"
    gpu_layers = 0 if device == "cpu" else (layers if layers is not None else base.n_gpu_layers or -1)
    dtype = values.get("dtype", "auto")
    quant = values.get("quantization", "none")
    if quant != "none" and "quantization" in allowed and device == "cpu":
        raise BadRequest("Quantization: 4/8-bit loading needs a CUDA GPU (bitsandbytes); choose a GPU device")
    return replace(
        base,
        n_ctx=n_ctx,
        device=device,
        n_gpu_layers=gpu_layers if "n_gpu_layers" in allowed else 0,
        n_threads=threads if "n_threads" in allowed else None,
        dtype=None if dtype == "auto" or "dtype" not in allowed else dtype,
        quantization=None if quant == "none" or "quantization" not in allowed else quant,
        lora_path=lora,
        idle_unload_s=None if idle_min is None else idle_min * 60.0,
        chat_template=template if template and "chat_template" in allowed else None,
        parallel=parallel if "parallel" in allowed else 1,
        speculative=speculative if speculative in SPECULATIVE_MODES and "speculative" in allowed else None,
    )


class LaunchModal(ModalScreen[LaunchChoice | None]):
    """Choose how to load a model; Enter or ctrl+s launches, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "launch", "Launch"),
    ]
    DEFAULT_CSS = """
    #launch-dialog { height: auto; scrollbar-size-vertical: 1; }
    #launch-grid { grid-size: 4; grid-columns: 14 1fr 15 1fr; grid-rows: 1; grid-gutter: 0 1; height: auto; }
    #launch-grid > Label { padding: 0 0 0 1; color: $text-muted; }
    #launch-grid > Input { border: none; height: 1; padding: 0 1; background: $boost; }
    #launch-grid > Input:focus { background: $surface-lighten-1; }
    #launch-grid > Select { height: 1; }
    #launch-grid > Select > SelectCurrent { border: none; height: 1; padding: 0 1; }
    #launch-engines { margin-top: 1; height: auto; color: $text-muted; }
    #launch-engines.-blocked { color: $text-warning; }
    #launch-fit { margin-top: 1; height: auto; }
    #error { height: auto; }
    """

    def __init__(self, target: LaunchTarget, base: LaunchOptions, resources: Resources) -> None:
        super().__init__()
        self.target = target
        self.base = replace(base, n_ctx=target.n_ctx) if target.n_ctx else base
        if target.n_gpu_layers is not None:  # the fit's split: CPU for none, else a GPU device
            device = "cpu" if target.n_gpu_layers == 0 else ("auto" if base.device == "cpu" else base.device)
            self.base = replace(self.base, n_gpu_layers=target.n_gpu_layers, device=device)
        self.resources = resources
        self.engines = engine_options(target)
        self._ready = False
        """Set once mounted: the Selects announce their first values while the dialog is still being built."""

    def compose(self) -> ComposeResult:
        usable = [o for o in self.engines if o.usable]
        device_list = devices(self.resources)
        device = self.base.device if self.base.device in {v for _, v in device_list} else "auto"
        # Not a Tab stop of its own: focusing a field scrolls it into view (an invisible stop confused Tab).
        with VerticalScroll(classes="dialog wide", id="launch-dialog", can_focus=False):
            yield Label(f"Launch {self.target.name}", classes="dialog-title", markup=False)
            with Grid(id="launch-grid"):
                yield Label("Engine")
                # Select.NULL (not Select.BLANK, which is False in Textual 8) is "no selection".
                yield Select(
                    [(o.name, o.name) for o in usable],
                    value=usable[0].name if usable else Select.NULL,
                    allow_blank=not usable,
                    prompt="none installed",
                    disabled=not usable,
                    id="engine",
                )
                yield Label("Device")
                yield Select(device_list, value=device, allow_blank=False, id="device")
                yield Label("Context")
                yield Input(str(self.base.n_ctx), id="n_ctx", placeholder="tokens")
                yield Label("Chat template")
                yield Select(template_options(self.target), allow_blank=False, id="chat_template")
                yield Label("GPU layers")
                yield Input(str(self.base.n_gpu_layers or ""), id="n_gpu_layers", placeholder="-1 = all")
                yield Label("Threads")
                yield Input(str(self.base.n_threads or ""), id="n_threads", placeholder="empty = auto")
                yield Label("Dtype")
                yield Select([(d, d) for d in DTYPES], value="auto", allow_blank=False, id="dtype")
                yield Label("Quantization")
                yield Select([(q, q) for q in QUANTIZATIONS], value="none", allow_blank=False, id="quantization")
                yield Label("LoRA adapter")
                yield Input("", id="lora_path", placeholder="file or folder")
                yield Label("Idle unload")
                yield Input("", id="idle_unload_min", placeholder="minutes, or none")
                yield Label("Parallel")
                yield Input(str(self.base.parallel), id="parallel", placeholder="requests at once")
                yield Label("Speculative")
                yield Select(
                    [("off", "off"), ("prompt lookup", "prompt-lookup")],
                    value=self.base.speculative or "off",
                    allow_blank=False,
                    id="speculative",
                )
            # markup=False: install hints hold brackets ('llm-tui[llama]') that markup would eat.
            engines_text = self._engines_text()
            engines = Static(engines_text, id="launch-engines", markup=False, classes="" if usable else "-blocked")
            engines.display = bool(engines_text)
            yield engines
            yield Static("", id="launch-fit")
            yield Static("", id="error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Launch (ctrl+s)", variant="primary", id="launch", disabled=not usable)
                yield Button("Cancel (esc)", id="cancel")
        yield Footer()  # the dialog's own keys, not those of the screen beneath

    def _engines_text(self) -> str:
        """The engines that cannot be used and what installs them; with none usable, that it cannot launch."""
        unusable = [o for o in self.engines if not o.usable]
        if any(o.usable for o in self.engines):
            return "Other engines · " + " · ".join(f"{o.name}: {o.note}" for o in unusable) if unusable else ""
        hints = [f"  {o.name}: {o.note}" for o in unusable if o.note != "not built yet"]
        if not hints:
            return f"Cannot launch: no engine in llm-tui loads {self.target.format} models yet."
        return "\n".join(["Cannot launch: no engine for this model is installed.", *hints])

    def _blocked_text(self) -> str:
        """Why Launch does nothing, naming the extra to install."""
        hints = [o.note for o in self.engines if o.note and o.note != "not built yet"]
        if not hints:
            return f"Cannot launch: no engine in llm-tui loads {self.target.format} models yet."
        return f"Install an engine first: {hints[0]}"

    def on_mount(self) -> None:
        self._ready = True
        self._update()

    @on(Select.Changed)
    @on(Input.Changed)
    def _changed(self) -> None:
        if self._ready and self.is_attached:  # not while composing, nor after the dialog closed
            self._update()

    def _values(self) -> dict[str, str]:
        values = {i.id or "": i.value for i in self.query(Input)}
        for select in self.query(Select):
            values[select.id or ""] = "" if select.is_blank() else str(select.value)
        return values

    def _allowed(self) -> tuple[str, ...]:
        engine = self._values().get("engine", "")
        return registry.entry(engine).options if engine else ()

    def _show_error(self, text: str) -> None:
        error = self.query_one("#error", Static)
        error.update(text)
        error.display = bool(text)

    def _update(self) -> None:
        """Enable the fields the engine honours, and show the fit for the current values."""
        allowed = self._allowed()
        for field in OPTIONAL_FIELDS:
            widget_id = "idle_unload_min" if field == "idle_unload_s" else field
            self.query_one(f"#{widget_id}").disabled = field not in allowed
        fit_view = self.query_one("#launch-fit", Static)
        try:
            options = read_options(self._values(), self.base, allowed)
        except BadRequest as exc:
            self._show_error(str(exc))
            fit_view.update("")
            return
        self._show_error("")
        self.query_one("#n_gpu_layers").disabled = "n_gpu_layers" not in allowed or options.device == "cpu"
        fit_view.update(self._fit_text(options))

    def _fit_text(self, options: LaunchOptions) -> str:
        if self.target.shape is None:
            return "[dim]Fit: this model's size is not known here; nothing to check.[/dim]"
        resources = self.resources
        if options.device == "cpu":
            resources = replace(resources, gpus=())
        elif options.device.startswith("cuda:"):
            index = int(options.device.removeprefix("cuda:"))
            resources = replace(resources, gpus=tuple(g for g in resources.gpus if g.index == index))
        result = fit(self.target.shape, resources, n_ctx=options.n_ctx, slots=options.parallel)
        colour = "$text-success" if result.fits else "$text-warning"
        # One clause a line, a number never parted from its unit: the summary wraps where it means to.
        summary = _UNIT_SPACE.sub("\u00a0", result.summary).replace("; ", "\n")
        lines = [f"[b]Fit[/b] [{colour}]{'✓' if result.fits else '✗'} {result.verdict}[/]", summary]
        if options.parallel > 1:  # the KV cache above holds every slot's context
            lines.append(f"{options.parallel} slots × {options.n_ctx:,}\u00a0tokens each")
        if self.target.context_length and options.n_ctx > self.target.context_length:
            lines.append(f"[$text-warning]trained for {self.target.context_length:,} tokens at most[/]")
        return "\n".join(lines)

    @on(Button.Pressed, "#launch")
    def _launch_pressed(self) -> None:
        self.action_launch()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def on_input_submitted(self) -> None:
        self.action_launch()

    def action_launch(self) -> None:
        values = self._values()
        if not values.get("engine"):
            self._show_error(self._blocked_text())
            return
        try:
            options = read_options(values, self.base, self._allowed())
        except BadRequest as exc:
            self._show_error(str(exc))
            return
        self.dismiss(LaunchChoice(self.target.ref, values["engine"], options))

    def action_cancel(self) -> None:
        self.dismiss(None)
