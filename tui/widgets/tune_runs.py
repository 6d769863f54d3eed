"""What the Tune screen knows of each run (the store's record and what its live process said since), as table rows
and as the status line under them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from rich.text import Text

from engines.catalog.fit import human_bytes, human_duration
from engines.tune.types import (
    Checkpointed,
    DataReport,
    Failed,
    Finished,
    Started,
    Status,
    StepDone,
    Stopped,
    TuneEvent,
    TuneRun,
    Validated,
)

COLUMNS = ("Run", "Model", "State", "Step", "Loss", "Val")
"""Model is the base model (the column shortened first when the table is narrow)."""
NARROW_DROPS = ("Val",)
STATE_COLOUR = {"running": "accent", "finished": "success", "failed": "error", "stopped": "warning"}
"""Theme colour of each state ("interrupted" uses the default text colour)."""
RESUMABLE = ("stopped", "interrupted")


@dataclass
class RunView:
    """One run as the screen shows it: changed on the UI thread only."""

    run: TuneRun
    steps: list[StepDone] = field(default_factory=list)
    validations: list[Validated] = field(default_factory=list)
    total: int | None = None
    """Optimizer steps of the whole run (its Started event), when known."""
    device: str | None = None
    state: str = ""
    live: bool = False
    """A process started from this screen is running it."""
    stopping: bool = False
    status: str = ""
    """The child's last Status line (loading, tokenizing…) before training starts."""
    report: DataReport | None = None
    """The data report, when the run was set up from this screen."""
    loaded_at: float | None = None
    """The record's updated_at when its metrics were read (None: not read yet)."""

    def __post_init__(self) -> None:
        self.state = self.state or self.run.state

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def error(self) -> str | None:
        return self.run.error

    def apply(self, event: TuneEvent) -> None:
        """What a live event changes."""
        run = self.run
        if isinstance(event, Started):
            self.total, self.device, self.state, self.status = event.total_steps, event.device, "running", ""
            # A resumed run goes on from its checkpoint: the steps after it are trained again.
            self.steps = [s for s in self.steps if s.step <= event.resumed_from]
            self.validations = [v for v in self.validations if v.step <= event.resumed_from]
        elif isinstance(event, Status):
            self.status = event.message
        elif isinstance(event, StepDone):  # a step seen again (read from the store meanwhile) replaces itself
            self.steps = sorted([s for s in self.steps if s.step != event.step] + [event], key=lambda s: s.step)
        elif isinstance(event, Validated):
            self.validations = sorted(
                [v for v in self.validations if v.step != event.step] + [event], key=lambda v: v.step
            )
        elif isinstance(event, Checkpointed):
            self.status = f"checkpoint at step {event.step}"
        elif isinstance(event, Finished):
            self.state, self.live, self.stopping, self.status = "finished", False, False, ""
            self.run = _with(run, adapter_path=event.adapter_dir, merged_path=event.merged_dir)
        elif isinstance(event, Stopped):
            self.state, self.live, self.stopping = "stopped", False, False
            self.status = f"stopped at step {event.step}; r resumes"
        elif isinstance(event, Failed):
            self.state, self.live, self.stopping, self.status = "failed", False, False, ""
            self.run = _with(run, error=event.message)

    def fail(self, message: str) -> None:
        """The process could not start, or its child died without a word."""
        self.state, self.live, self.stopping, self.status = "failed", False, False, ""
        self.run = _with(self.run, error=message)

    def cells(self, colours: dict[str, str]) -> tuple[str | Text, ...]:
        last = self.steps[-1] if self.steps else None
        val = self.validations[-1] if self.validations else None
        state = "stopping…" if self.stopping else self.state
        step = "-" if last is None else f"{last.step}/{self.total}" if self.total else str(last.step)
        return (
            self.name,
            self.run.base,
            Text(state, style=colours.get(STATE_COLOUR.get(self.state, ""), "")),
            step,
            f"{last.loss:.3f}" if last else "-",
            f"{val.val_loss:.3f}" if val else "-",
        )

    def status_line(self) -> str:
        """Step/total, epoch, speed, ETA, memory and device of the last step; or the error, or the state."""
        if self.state == "failed":
            return f"{self.name} failed: {self.error or 'the training process ended without saying why'}"
        if self.state == "interrupted" and self.error:
            return f"{self.name} interrupted: {self.error} · r resumes from its last checkpoint"
        last = self.steps[-1] if self.steps else None
        if self.stopping:
            head = f"{self.name} stopping (saving a checkpoint)…"
        elif self.status and (self.state != "running" or last is None):
            head = f"{self.name}: {self.status}"
        else:
            head = f"{self.name} {self.state}"
        if last is None:
            return head
        parts = [head, f"step {last.step}/{self.total}" if self.total else f"step {last.step}"]
        parts.append(f"epoch {last.epoch:.2f}")
        if self.live:
            rate = last.tokens_per_s
            parts.append(f"{rate:.1f} tok/s" if rate < 10 else f"{rate:,.0f} tok/s")
            if last.eta_s is not None:
                parts.append(f"ETA {human_duration(last.eta_s)}")
            parts.append(human_bytes(last.memory_bytes))
        else:
            parts.append(f"loss {last.loss:.3f}")
            if self.validations:
                parts.append(f"val {self.validations[-1].val_loss:.3f}")
        if self.device:
            parts.append(self.device)
        return " · ".join(parts)

    def detail_line(self) -> str:
        """The data report while the run is being set up; afterwards where its adapter (or merged model) is."""
        if self.live and not self.steps and self.report is not None:
            return report_summary(self.report)
        if self.run.merged_path:
            return f"adapter {self.run.adapter_path} · merged model {self.run.merged_path}"
        if self.run.adapter_path:
            return f"adapter {self.run.adapter_path}"
        return f"data {self.run.data_path}"


def report_summary(report: DataReport) -> str:
    """Rows by shape, train/val split and problems, in one line."""
    shapes = ", ".join(f"{n} {shape}" for shape, n in sorted(report.shapes.items()) if n)
    text = f"{report.rows} usable row{'s' if report.rows != 1 else ''}"
    if shapes:
        text += f" ({shapes})"
    if report.train_rows or report.val_rows:
        text += f" · train {report.train_rows} / val {report.val_rows}"
    count = len(report.problems)
    text += f" · {count} problem{'s' if count != 1 else ''}" if count else " · no problems"
    return text


def report_lines(report: DataReport, shown: int = 3) -> list[str]:
    """The summary, the first problems with their line numbers, and whether a run can start from this file."""
    lines = [report_summary(report)]
    lines += [f"  line {p.line}: {p.message}" for p in report.problems[:shown]]
    lines += [f"  {note}" for note in report.notes]
    if len(report.problems) > shown:
        lines.append(f"  …and {len(report.problems) - shown} more")
    if report.problems:
        lines.append("Cannot start: fix or remove the rows above.")
    elif not report.rows:
        lines.append("Cannot start: the file has no usable row.")
    else:
        lines.append("Ready: ctrl+s starts the run.")
    return lines


def _with(run: TuneRun, **changes: object) -> TuneRun:
    return replace(run, **changes)  # type: ignore[arg-type]
