"""What crosses the fine-tuning's boundaries: the options of a run, the data report, and the events the training
child process sends its parent (one JSON object a line) — to the Tune screen, the CLI and the store."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DataShape(enum.StrEnum):
    """The JSONL row layouts people have."""

    CHAT = "chat"
    """{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}"""
    INSTRUCTION = "instruction"
    """{"instruction": "...", "input": "..." (optional), "output": "..."}"""
    TEXT = "text"
    """{"text": "..."}: every token is learned."""


class Schedule(enum.StrEnum):
    COSINE = "cosine"
    LINEAR = "linear"
    CONSTANT = "constant"


@dataclass(frozen=True, slots=True)
class TuneOptions:
    """Everything that shapes a run; saved with it, so a resumed run trains the same way."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ()
    """Empty: the architecture's default (attention and MLP projections), see engines.tune.modules."""
    learning_rate: float = 2e-4
    schedule: Schedule = Schedule.COSINE
    warmup_steps: int = 0
    epochs: float = 1.0
    max_steps: int | None = None
    """When set, the run ends after this many optimizer steps whatever `epochs` says."""
    batch_size: int = 4
    grad_accum: int = 1
    max_seq_len: int = 512
    seed: int = 0
    val_fraction: float = 0.1
    val_file: Path | None = None
    """A JSONL file of validation rows; when set, `val_fraction` is ignored."""
    eval_every: int = 10
    """Optimizer steps between validation losses (and one at the end)."""
    save_every: int = 50
    """Optimizer steps between checkpoints (and one on stop and at the end)."""
    quantize: str | None = None
    """"4bit" for QLoRA (CUDA and bitsandbytes only; refused on CPU with the reason)."""
    device: str = "auto"
    dtype: str | None = None
    """None: bfloat16 on CUDA where supported, else float32."""
    merge: bool = False
    """Also write a merged safetensors model into models_dir at the end."""

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["schedule"] = self.schedule.value
        data["target_modules"] = list(self.target_modules)
        data["val_file"] = str(self.val_file) if self.val_file else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TuneOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["schedule"] = Schedule(values.get("schedule", "cosine"))
        values["target_modules"] = tuple(values.get("target_modules") or ())
        values["val_file"] = Path(values["val_file"]) if values.get("val_file") else None
        return cls(**values)


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row refused by validation; line is 1-based."""

    line: int
    message: str


@dataclass(frozen=True, slots=True)
class LengthStats:
    """Token counts of the rows after the chat template (the model's tokenizer)."""

    count: int
    minimum: int
    median: int
    p95: int
    maximum: int
    over_max: int
    """Rows longer than max_seq_len (they are cut to it, and say so)."""


@dataclass(frozen=True, slots=True)
class DataReport:
    """What validation found, before any model weights load."""

    path: Path
    rows: int
    """Usable rows."""
    shapes: dict[str, int]
    """Usable rows by DataShape value."""
    problems: tuple[RowProblem, ...]
    sha256: str
    """Of the file's bytes."""
    train_rows: int = 0
    val_rows: int = 0
    lengths: LengthStats | None = None
    """Filled once the tokenizer is known."""
    notes: tuple[str, ...] = ()
    """What the user should know that is not a refused row (no validation split with one row, an empty file)."""

    @property
    def ok(self) -> bool:
        """At least one usable row and no refused one."""
        return self.rows > 0 and not self.problems


# -- events: the child process writes one a line as {"event": "<kind>", ...the fields} -----------------------------


@dataclass(frozen=True, slots=True)
class Started:
    """The model and data are loaded and training begins (or resumes)."""

    total_steps: int
    resumed_from: int = 0
    """The checkpoint's step a resumed run starts after (0 for a new run)."""
    train_rows: int = 0
    val_rows: int = 0
    trainable_params: int = 0
    total_params: int = 0
    device: str = "cpu"


@dataclass(frozen=True, slots=True)
class Status:
    """A line of what the child is doing before training (hashing, converting, loading, tokenizing)."""

    message: str


@dataclass(frozen=True, slots=True)
class StepDone:
    """One optimizer step finished."""

    step: int
    epoch: float
    loss: float
    learning_rate: float
    tokens_per_s: float
    """Trained tokens (labels not masked out) over the last step's wall time."""
    memory_bytes: int
    """RSS of the child, plus CUDA memory allocated where on a GPU."""
    elapsed_s: float
    eta_s: float | None


@dataclass(frozen=True, slots=True)
class Validated:
    """A validation loss (mean over the validation rows' learned tokens)."""

    step: int
    val_loss: float


@dataclass(frozen=True, slots=True)
class Checkpointed:
    step: int
    path: Path


@dataclass(frozen=True, slots=True)
class Finished:
    adapter_dir: Path
    merged_dir: Path | None = None
    final_loss: float | None = None
    val_loss: float | None = None


@dataclass(frozen=True, slots=True)
class Stopped:
    """Stopped on request after saving a checkpoint; `resume` goes on from it."""

    step: int
    checkpoint: Path | None


@dataclass(frozen=True, slots=True)
class Failed:
    message: str


TuneEvent = Started | Status | StepDone | Validated | Checkpointed | Finished | Stopped | Failed

EVENT_TYPES: dict[str, type[Any]] = {
    "started": Started,
    "status": Status,
    "step": StepDone,
    "validated": Validated,
    "checkpoint": Checkpointed,
    "finished": Finished,
    "stopped": Stopped,
    "failed": Failed,
}


@dataclass(frozen=True, slots=True)
class TuneRun:
    """A run as the store keeps it (table tune_runs), with its metrics when asked for."""

    name: str
    base: str
    data_path: Path
    data_sha256: str
    options: TuneOptions
    state: str
    """"running", "stopped", "finished", "failed" or "interrupted" (its process died: resumable)."""
    run_dir: Path
    adapter_path: Path | None = None
    merged_path: Path | None = None
    mlflow_run_id: str | None = None
    error: str | None = None
    id: int | None = None
    created_at: float | None = None
    updated_at: float | None = None
    steps: tuple[StepDone, ...] = field(default=())
    validations: tuple[Validated, ...] = field(default=())
