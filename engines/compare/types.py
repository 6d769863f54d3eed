"""Plain data of a comparison: what to compare, how it is planned, what each pane reports, what is saved.

Everything here crosses threads (the compare runner's thread and the instances' workers post these to the
UI) or modules (the store saves `CompareRun`), so it is frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from engines.errors import BadRequest
from engines.store.records import TurnMetrics
from engines.types import ChatMessage, Footprint, LaunchOptions, Params, StreamEvent

MIN_MODELS = 2
MAX_MODELS = 4
REMOTE_ENGINES = frozenset({"remote"})
"""Engines whose model runs on another machine: what their instance holds here is not the model's memory."""

Mode = Literal["parallel", "sequential"]
PaneState = Literal["waiting", "loading", "running", "done", "stopped", "error"]
FINAL_STATES: tuple[PaneState, ...] = ("done", "stopped", "error")


@dataclass(frozen=True, slots=True)
class CompareModel:
    """One side of a comparison: a running instance (`run_id`), or a model to launch (`ref`, engine, options)."""

    run_id: str | None = None
    ref: str | None = None
    engine: str | None = None
    """The engine to launch `ref` on (None: the first installed one that loads it)."""
    options: LaunchOptions | None = None
    """How to launch `ref` (None: the configuration's defaults)."""
    label: str = ""
    """What the pane shows before the run ("gemma-3-270m · llama.cpp"); the ref or run id when empty."""

    def __post_init__(self) -> None:
        if (self.run_id is None) == (self.ref is None):
            raise BadRequest("a compared model is either a running instance or a model to launch")

    @property
    def title(self) -> str:
        """The label, else what names the model."""
        return self.label or self.ref or self.run_id or "?"


@dataclass(frozen=True, slots=True)
class CompareRequest:
    """One prompt (with an optional system prompt and shared parameters) for two to four models."""

    prompt: str
    models: tuple[CompareModel, ...]
    system_prompt: str | None = None
    params: Params = field(default_factory=Params)

    def validate(self) -> None:
        """Raise BadRequest for a request that cannot run."""
        if not MIN_MODELS <= len(self.models) <= MAX_MODELS:
            raise BadRequest(f"compare {MIN_MODELS} to {MAX_MODELS} models ({len(self.models)} chosen)")
        if not self.prompt.strip():
            raise BadRequest("type a prompt to compare the models on")
        self.params.validate()

    def messages(self) -> list[ChatMessage]:
        """What every pane sends: the system prompt, if any, then the prompt."""
        system = [ChatMessage("system", self.system_prompt)] if self.system_prompt else []
        return [*system, ChatMessage("user", self.prompt)]


@dataclass(frozen=True, slots=True)
class PanePlan:
    """What the planner decided for one pane: the model it is, and an error that keeps it from running."""

    index: int
    model_id: str
    engine: str
    loads: bool
    """True when the run launches it (False: an instance the user already runs)."""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ComparePlan:
    """Run the panes at the same time or one after another, and why, in one line."""

    mode: Mode
    reason: str
    """The numbers behind the decision ("together they need 1.2 GB RAM + 256 MB margin; 800 MB free")."""
    panes: tuple[PanePlan, ...]

    @property
    def summary(self) -> str:
        """The status line: what will happen and why."""
        if self.mode == "parallel":
            return f"parallel — all at the same time: {self.reason}"
        return f"sequential — one after another (load, run, unload): {self.reason}"


@dataclass(frozen=True, slots=True)
class LiveMetrics:
    """A pane's numbers while it streams: first-token time and text so far (tokens are counted at the end)."""

    ttft_ms: float | None = None
    chars: int = 0
    decode_s: float = 0.0
    """Seconds since the first token."""

    @property
    def tokens_estimate(self) -> int:
        """About four characters a token (the exact count comes with the end of the reply)."""
        return round(self.chars / 4)

    @property
    def tokens_per_s_estimate(self) -> float | None:
        """Estimated decode speed so far, None before there is anything to divide."""
        if self.decode_s <= 0 or self.tokens_estimate < 2:
            return None
        return (self.tokens_estimate - 1) / self.decode_s


@dataclass(frozen=True, slots=True)
class PaneResult:
    """How one pane ended: its model, the reply, the metrics and the memory its instance held."""

    index: int
    model_id: str
    engine: str
    status: PaneState
    text: str = ""
    error: str | None = None
    metrics: TurnMetrics | None = None
    ram_bytes: int | None = None
    vram_bytes: int | None = None
    ref: str | None = None
    """The reference it was launched from (None for an instance the user ran)."""
    run_id: str | None = None
    """The user's instance it ran on (None when the run launched it)."""
    options: LaunchOptions | None = None
    unloaded: bool = False
    """The run stopped the instance it had launched for this pane (always so in sequential mode)."""


@dataclass(frozen=True, slots=True)
class CompareRun:
    """A comparison as saved: prompt, options, the plan's decision and every pane's result."""

    prompt: str
    panes: tuple[PaneResult, ...]
    system_prompt: str | None = None
    params: Params = field(default_factory=Params)
    mode: Mode = "parallel"
    reason: str = ""
    id: int | None = None
    """None until saved."""
    created_at: float = 0.0

    @property
    def title(self) -> str:
        """The prompt's first line, shortened: how lists name the run."""
        line = " ".join(self.prompt.split())
        return line if len(line) <= 48 else line[:47] + "…"


# -- events, from the runner to whoever shows the panes ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Planned:
    """The plan is made (models resolved, memory checked)."""

    plan: ComparePlan


@dataclass(frozen=True, slots=True)
class PaneStatus:
    """A pane changed state; `detail` is what its header says ("loading 2/3", "waiting · runs 3rd")."""

    index: int
    state: PaneState
    detail: str
    footprint: Footprint | None = None
    """The instance's RAM/VRAM, once it is loaded (None for a remote engine: its memory is not this machine's)."""
    error: str | None = None
    run_id: str | None = None
    """The instance the pane runs on, once it has one (the run's own launch, or the user's instance)."""


@dataclass(frozen=True, slots=True)
class PaneStream:
    """A streamed event of a pane's reply, with the numbers so far."""

    index: int
    event: StreamEvent
    live: LiveMetrics


@dataclass(frozen=True, slots=True)
class RunEnded:
    """The run is over (finished, stopped, or failed with `error`); the results are what Save keeps."""

    plan: ComparePlan | None
    results: tuple[PaneResult, ...]
    stopped: bool = False
    error: str | None = None


CompareEvent = Planned | PaneStatus | PaneStream | RunEnded


def rank(results: tuple[PaneResult, ...] | list[PaneResult]) -> str:
    """The summary row: finished panes by decode speed (fastest first) and by time to first token."""
    done = [r for r in results if r.status == "done" and r.metrics is not None]
    if not done:
        return ""
    parts = []
    speed = sorted((r for r in done if r.metrics and r.metrics.tokens_per_s), key=lambda r: -_tps(r))
    if speed:
        parts.append("tok/s: " + " › ".join(f"{_name(r)} {_tps(r):.1f}" for r in speed))
    first = sorted((r for r in done if r.metrics and r.metrics.ttft_ms is not None), key=_ttft)
    if first:
        parts.append("TTFT: " + " › ".join(f"{_name(r)} {_ttft(r):.0f} ms" for r in first))
    return " · ".join(parts)


def _tps(r: PaneResult) -> float:
    return (r.metrics.tokens_per_s or 0.0) if r.metrics else 0.0


def _ttft(r: PaneResult) -> float:
    return (r.metrics.ttft_ms or 0.0) if r.metrics else 0.0


def _name(r: PaneResult) -> str:
    model = r.model_id if len(r.model_id) <= 16 else r.model_id[:15] + "…"
    return f"{r.index + 1} {model}"
