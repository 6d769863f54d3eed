"""`llm-tui tune BASE DATA.jsonl --out NAME`: LoRA fine-tuning from the command line.

The data is validated first (counts by shape; refused rows with their line numbers, exit 2). Training runs in a
child process (engines.tune.process); this command shows its progress on one redrawn terminal line, or with
`--json` prints each event as one JSON object a line on stdout. Ctrl+C asks the child to save a checkpoint and
stop (a second Ctrl+C kills it); `llm-tui tune --resume NAME` goes on from that checkpoint.

Exit status: 0 finished, 1 failed, 2 bad data, 130 stopped.
"""

from __future__ import annotations

import argparse
import queue
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from engines.catalog.fit import human_bytes, human_duration
from engines.config.load import Config
from engines.errors import BadRequest
from engines.tune.types import (
    Checkpointed,
    DataReport,
    Failed,
    Finished,
    Schedule,
    Started,
    Status,
    StepDone,
    Stopped,
    TuneEvent,
    TuneOptions,
    Validated,
)

if TYPE_CHECKING:
    from engines.tune.process import TuneProcess

MAX_PROBLEMS_SHOWN = 20
REDRAW_S = 0.2
EXIT_BAD_DATA = 2
EXIT_STOPPED = 130


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[..., object]) -> None:
    """Register `llm-tui tune`."""
    defaults = TuneOptions()
    tune = sub.add_parser(
        "tune",
        help="fine-tune a model with LoRA on a JSONL file (chat, instruction or text rows)",
        description="Fine-tune BASE with LoRA on DATA.jsonl into the run NAME. Exit 0 finished, 1 failed, "
        "2 bad data, 130 stopped (resume with --resume NAME).",
    )
    common(tune)
    tune.add_argument("base", nargs="?", metavar="BASE", help="the base model: catalog id, alias or path")
    tune.add_argument("data", nargs="?", metavar="DATA.jsonl", type=Path, help="the training rows, one JSON a line")
    tune.add_argument("--out", metavar="NAME", help="the run's name (its folder, adapter and merged model)")
    tune.add_argument("--resume", metavar="NAME", help="go on with a stopped or interrupted run from its checkpoint")
    tune.add_argument("--json", action="store_true", help="one JSON object a line per event on stdout")
    lora = tune.add_argument_group("LoRA")
    lora.add_argument("--rank", type=int, default=defaults.rank, help=f"LoRA rank (default {defaults.rank})")
    lora.add_argument("--alpha", type=int, default=defaults.alpha, help=f"LoRA alpha (default {defaults.alpha})")
    lora.add_argument("--dropout", type=float, default=defaults.dropout, help=f"default {defaults.dropout}")
    lora.add_argument(
        "--targets",
        metavar="MODULES",
        help="comma-separated module names, e.g. q_proj,v_proj (default: attention and MLP projections)",
    )
    train = tune.add_argument_group("training")
    train.add_argument("--lr", type=float, default=defaults.learning_rate, help="learning rate (default 2e-4)")
    train.add_argument("--schedule", choices=[s.value for s in Schedule], default=defaults.schedule.value)
    train.add_argument("--warmup", type=int, default=defaults.warmup_steps, metavar="STEPS", help="warm-up steps")
    train.add_argument("--epochs", type=float, default=defaults.epochs, help=f"default {defaults.epochs:g}")
    train.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size, help=f"default {defaults.batch_size}")
    train.add_argument("--grad-accum", type=int, default=defaults.grad_accum, metavar="N", help="batches per step")
    train.add_argument("--max-seq-len", type=int, default=defaults.max_seq_len, metavar="TOKENS")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--val-fraction", type=float, default=defaults.val_fraction, metavar="F")
    train.add_argument("--val-file", type=Path, metavar="PATH", help="validation rows (instead of a split)")
    train.add_argument("--eval-every", type=int, default=defaults.eval_every, metavar="STEPS")
    train.add_argument("--save-every", type=int, default=defaults.save_every, metavar="STEPS")
    train.add_argument("--qlora", action="store_true", help="load the base in 4 bits (CUDA and bitsandbytes only)")
    train.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N (default auto)")
    train.add_argument("--merge", action="store_true", help="also write a merged model into the models folder")


def options_from(args: argparse.Namespace) -> TuneOptions:
    """The run's TuneOptions from the command line."""
    targets = tuple(t.strip() for t in (args.targets or "").split(",") if t.strip())
    return TuneOptions(
        rank=args.rank,
        alpha=args.alpha,
        dropout=args.dropout,
        target_modules=targets,
        learning_rate=args.lr,
        schedule=Schedule(args.schedule),
        warmup_steps=args.warmup,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_seq_len=args.max_seq_len,
        seed=args.seed,
        val_fraction=args.val_fraction,
        val_file=args.val_file,
        eval_every=args.eval_every,
        save_every=args.save_every,
        quantize="4bit" if args.qlora else None,
        device=args.device,
        merge=args.merge,
    )


def run_tune(args: argparse.Namespace, config: Config, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Validate the data, then train (or resume) and follow the run to its end; the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    from engines.tune.process import TuneProcess

    events: queue.Queue[TuneEvent] = queue.Queue()
    if args.resume:
        if args.base or args.data or args.out:
            raise BadRequest("--resume NAME takes no BASE, DATA or --out: the run keeps its own")
        process = TuneProcess.resume(config, args.resume, events.put)
    else:
        if not (args.base and args.data and args.out):
            raise BadRequest("usage: llm-tui tune BASE DATA.jsonl --out NAME (or llm-tui tune --resume NAME)")
        options = options_from(args)
        report = _validate(args.data, options)
        print_report(report, err)
        if not report.ok:
            return EXIT_BAD_DATA
        process = TuneProcess.start(config, args.base, args.data, args.out, options, events.put)
    return _follow(process, events, bool(args.json), out, err)


def _validate(data: Path, options: TuneOptions) -> DataReport:
    from engines.tune.data import validate_data

    return validate_data(data, val_file=options.val_file, val_fraction=options.val_fraction, seed=options.seed)


def print_report(report: DataReport, err: TextIO) -> None:
    """Counts by shape, the split, and the refused rows (the first MAX_PROBLEMS_SHOWN with line numbers)."""
    shapes = ", ".join(f"{count} {shape}" for shape, count in sorted(report.shapes.items())) or "none"
    err.write(f"{report.path.name}: {report.rows} usable rows ({shapes}); ")
    err.write(f"{report.train_rows} to train, {report.val_rows} to validate\n")
    for note in getattr(report, "notes", ()):
        err.write(f"note: {note}\n")
    for problem in report.problems[:MAX_PROBLEMS_SHOWN]:
        err.write(f"line {problem.line}: {problem.message}\n")
    if report.problems:
        more = len(report.problems) - MAX_PROBLEMS_SHOWN
        shown = f" (first {MAX_PROBLEMS_SHOWN} shown, {more} more)" if more > 0 else ""
        err.write(f"{len(report.problems)} refused rows{shown}: fix them or remove them, then run again\n")
    elif report.rows == 0:
        err.write("no usable rows: nothing to train on\n")
    err.flush()


def _follow(process: TuneProcess, events: queue.Queue[TuneEvent], as_json: bool, out: TextIO, err: TextIO) -> int:
    """Show events until the run ends; Ctrl+C asks for a checkpoint and a stop, a second one kills."""
    view = JsonView(out) if as_json else LineView(err)
    stopping = False
    end: TuneEvent | None = None
    while True:
        try:
            try:
                event = events.get(timeout=0.25)
            except queue.Empty:
                if not process.running and events.empty():
                    break
                continue
            view.show(event)
            if isinstance(event, (Finished, Failed, Stopped)):
                end = event
                break
        except KeyboardInterrupt:
            if stopping:
                process.kill()
                err.write(f"\nkilled; resume from the last checkpoint with: llm-tui tune --resume {process.name}\n")
                return EXIT_STOPPED
            stopping = True
            err.write("\nstopping: saving a checkpoint (Ctrl+C again to kill)\n")
            err.flush()
            process.stop()
    process.wait(timeout=30)
    view.close()
    return _ending(process, end, err, out)


def _ending(process: TuneProcess, end: TuneEvent | None, err: TextIO, out: TextIO) -> int:
    if isinstance(end, Finished):
        err.write(f"finished: adapter in {end.adapter_dir}\n")
        if end.merged_dir is not None:
            err.write(f"merged model in {end.merged_dir}\n")
        return 0
    if isinstance(end, Stopped):
        err.write(f"stopped at step {end.step}; resume with: llm-tui tune --resume {process.name}\n")
        return EXIT_STOPPED
    if isinstance(end, Failed):
        err.write(f"failed: {end.message}\n")
    else:
        err.write(f"the training process ended without a result; see {process.run_dir / 'child.log'}\n")
    return 1


class JsonView:
    """Each event as one JSON line on stdout."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def show(self, event: TuneEvent) -> None:
        from engines.tune.events import to_line

        self.out.write(to_line(event) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class LineView:
    """A redrawn progress line on a terminal; plain lines for the milestones (and every line off a terminal)."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.live = err.isatty()
        self.total = 0
        self.val_loss: float | None = None
        self.last_draw = 0.0
        self.drawn = False

    def show(self, event: TuneEvent) -> None:
        if isinstance(event, StepDone):
            self._step(event)
            return
        if isinstance(event, Started):
            self.total = event.total_steps
            where = f", resuming after step {event.resumed_from}" if event.resumed_from else ""
            text = (
                f"training {event.trainable_params:,} of {event.total_params:,} parameters on {event.device}: "
                f"{event.train_rows} rows, {event.val_rows} to validate, {event.total_steps} steps{where}"
            )
        elif isinstance(event, Status):
            text = event.message
        elif isinstance(event, Validated):
            self.val_loss = event.val_loss
            text = f"step {event.step}: validation loss {event.val_loss:.4f}"
        elif isinstance(event, Checkpointed):
            text = f"step {event.step}: checkpoint saved"
        else:
            return  # the end is said by run_tune
        self._line(text)

    def _step(self, event: StepDone) -> None:
        text = progress_text(event, self.total, self.val_loss)
        if not self.live:
            return
        now = time.monotonic()
        if now - self.last_draw < REDRAW_S and event.step != self.total:
            return
        self.last_draw = now
        width = shutil.get_terminal_size((100, 24)).columns - 1
        self.err.write("\r" + text[:width].ljust(width))
        self.err.flush()
        self.drawn = True

    def _line(self, text: str) -> None:
        if self.drawn:
            self.err.write("\n")
            self.drawn = False
        self.err.write(text + "\n")
        self.err.flush()

    def close(self) -> None:
        if self.drawn:
            self.err.write("\n")
            self.drawn = False
        self.err.flush()


def progress_text(event: StepDone, total: int, val_loss: float | None) -> str:
    """`step 12/100  loss 1.234  val 1.456  lr 2.0e-04  1,234 tok/s  ETA 3 min  mem 1.2 GB`."""
    parts = [f"step {event.step}/{total or '?'}", f"loss {event.loss:.4f}"]
    parts += [f"val {val_loss:.4f}"] if val_loss is not None else []
    parts += [f"lr {event.learning_rate:.1e}", f"{event.tokens_per_s:,.0f} tok/s"]
    parts += [f"ETA {human_duration(event.eta_s)}"] if event.eta_s is not None else []
    parts += [f"mem {human_bytes(event.memory_bytes)}"] if event.memory_bytes else []
    return "  ".join(parts)
