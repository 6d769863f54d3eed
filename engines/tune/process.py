"""A fine-tuning run in its own process: start, resume, stop, kill, and the parent's side of the child's events.

The child (`python -m engines.tune.child RUN_DIR`, its own process group, so a Ctrl-C in a terminal or a crash of
the app never reaches it half-way) writes one JSON event a line; a reader thread here parses them, records them in
the store and MLflow, sets the run's state and hands each to `on_event`. A child that ends without a final event
(killed, crashed) leaves its run "interrupted": resumable from its newest checkpoint. `reconcile` does the same at
app start for runs whose parent died while they ran.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from engines.atomic import atomic_write
from engines.catalog.resolve import resolve_model
from engines.config.load import Config
from engines.errors import BadRequest, ModelNotFound
from engines.store.sessions import Store
from engines.tune import checkpoint
from engines.tune.paths import CHILD_LOG, CHILD_PID, EVENTS, RunFile, check_name, run_dir, write_run_file
from engines.tune.types import (
    Failed,
    Finished,
    Started,
    StepDone,
    Stopped,
    TuneEvent,
    TuneOptions,
    TuneRun,
    Validated,
)

log = logging.getLogger(__name__)

OnEvent = Callable[[TuneEvent], None]
_LINE_LIMIT = 64 * 1024
_LOG_TAIL_BYTES = 4096
_LOG_TAIL_LINES = 6
_PROBLEMS_SHOWN = 5


class TuneProcess:
    """One running training child; build it with `start` or `resume`."""

    def __init__(self, config: Config, run: TuneRun, popen: subprocess.Popen[bytes], on_event: OnEvent) -> None:
        self.name = run.name
        self.run_dir = run.run_dir
        self._config = config
        self._run = run
        self._popen = popen
        self._on_event = on_event
        self._final: TuneEvent | None = None
        self._reader = threading.Thread(target=self._read, name=f"tune-{run.name}", daemon=True)
        self._reader.start()

    # -- life cycle ---------------------------------------------------------------------------------------------

    @classmethod
    def start(
        cls, config: Config, base: str, data: Path, name: str, options: TuneOptions, on_event: OnEvent
    ) -> TuneProcess:
        """Check everything that can be checked without loading the model, create the run, spawn the child.

        Raises BadRequest (a bad name or option, a taken name, bad data, QLoRA without CUDA) or ModelNotFound.
        """
        from engines.tune.data import validate_data

        folder = run_dir(config, check_name(name))
        check_options(options)
        refusal = qlora_refusal(options.quantize)
        if refusal:
            raise BadRequest(refusal)
        spec = resolve_model(base, models_dir=config.models_dir, aliases=config.aliases)
        if spec.format not in ("gguf", "hf") or spec.path is None:
            raise BadRequest(
                f"{base}: fine-tuning needs a local safetensors folder or GGUF file, not a {spec.format} model"
            )
        if not Path(spec.path).exists():
            raise ModelNotFound(f"model not found: {spec.path}")
        data = data.expanduser().resolve()
        if not data.is_file():
            raise BadRequest(f"data file not found: {data}")
        report = validate_data(data, val_file=options.val_file, val_fraction=options.val_fraction, seed=options.seed)
        if not report.ok:
            raise BadRequest(data_refusal(data, report.rows, report.problems))
        if folder.exists():
            raise BadRequest(f"a run named {name!r} already has a folder ({folder}); pick another name")
        if options.merge and (config.models_dir / name).exists():
            raise BadRequest(f"{config.models_dir / name} exists: the merged model needs another run name")
        store = Store(config.db_path)
        try:
            run = store.tunes.create(
                TuneRun(
                    name=name,
                    base=base,
                    data_path=data,
                    data_sha256=report.sha256,
                    options=options,
                    state="running",
                    run_dir=folder,
                )
            )
            folder.mkdir(parents=True)
            spec_file = RunFile(
                name=name,
                base=base,
                base_path=Path(spec.path).resolve(),
                base_format=spec.format,
                data_path=data,
                data_sha256=report.sha256,
                options=options,
                cache_dir=config.cache_dir / "transformers",
                models_dir=config.models_dir,
                chat_template=spec.chat_template,
                n_threads=config.n_threads,
            )
            write_run_file(folder, spec_file)
            try:
                popen = spawn(folder)
            except OSError as exc:
                store.tunes.update(name, state="failed", error=f"cannot start the training process: {exc}")
                raise BadRequest(f"cannot start the training process: {exc}") from None
            return cls(config, run, popen, on_event)
        finally:
            store.close()

    @classmethod
    def resume(cls, config: Config, name: str, on_event: OnEvent) -> TuneProcess:
        """Go on from the run's newest checkpoint; the store's curve is cut back to that step. BadRequest when the
        run is finished, still running, or has no checkpoint."""
        store = Store(config.db_path)
        try:
            run = store.tunes.get(name, metrics=False)
            if run.state == "finished":
                raise BadRequest(f"run {name!r} has finished: nothing to resume")
            if run.state == "running" and child_alive(run.run_dir):
                raise BadRequest(f"run {name!r} is still running")
            found = checkpoint.latest(run.run_dir)
            if found is None:
                raise BadRequest(f"run {name!r} has no complete checkpoint to resume from")
            store.tunes.truncate_after(name, found[1].step)
            store.tunes.update(name, state="running")
            return cls(config, run, spawn(run.run_dir), on_event)
        finally:
            store.close()

    @property
    def running(self) -> bool:
        return self._popen.poll() is None

    @property
    def pid(self) -> int:
        return self._popen.pid

    def stop(self) -> None:
        """Ask the child to save a checkpoint and stop (it ends "stopped"); no-op once it has exited."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._popen.pid, signal.SIGTERM)

    def kill(self) -> None:
        """End the child at once (its process group); the run ends "interrupted", resumable from a checkpoint."""
        if self.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int | None:
        """The child's exit status once it has exited and its events are all handled (state set); None on timeout."""
        self._reader.join(timeout)
        if self._reader.is_alive():
            return None
        return self._popen.returncode

    # -- the reader thread --------------------------------------------------------------------------------------

    def _read(self) -> None:
        from engines.tune.events import from_line

        store = Store(self._config.db_path)
        tracker = _tracker(self._config, self._run)
        stream = self._popen.stdout
        assert stream is not None
        try:
            for line in _lines(stream):
                event = from_line(line)
                if event is not None:
                    self._handle(event, store, tracker)
            code = self._popen.wait()
            if self._final is None:
                store.tunes.update(self.name, state="interrupted", error=ended_without_result(self.run_dir, code))
        except Exception:
            log.exception("tune run %s: handling the child's events failed", self.name)
            with contextlib.suppress(Exception):
                self._popen.wait()
        finally:
            stream.close()
            store.close()
            if tracker is not None:
                with contextlib.suppress(Exception):
                    tracker.close(timeout=30)  # the adapter artifact reaches MLflow before a CLI exits

    def _handle(self, event: TuneEvent, store: Store, tracker: Any) -> None:
        if isinstance(event, StepDone | Validated):
            store.tunes.record(self.name, event)
        if tracker is not None:
            try:
                tracker.event(event)  # sent on the tracker's own thread; it stores the MLflow run id itself
            except Exception:
                log.warning("tune run %s: MLflow logging failed", self.name, exc_info=True)
        if isinstance(event, Finished | Stopped | Failed):
            self._final = event
            set_final_state(store, self.name, event)
        try:
            self._on_event(event)
        except Exception:
            log.exception("tune run %s: the event handler failed", self.name)


def spawn(folder: Path) -> subprocess.Popen[bytes]:
    """Start `python -m engines.tune.child folder` in its own session, stderr to child.log; record its pid."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    with open(folder / CHILD_LOG, "ab") as err:
        popen = subprocess.Popen(
            [sys.executable, "-m", "engines.tune.child", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            start_new_session=True,
        )
    started = _create_time(popen.pid)
    atomic_write(folder / CHILD_PID, json.dumps({"pid": popen.pid, "started": started}).encode(), private=False)
    return popen


def set_final_state(store: Store, name: str, event: TuneEvent) -> None:
    if isinstance(event, Finished):
        store.tunes.update(name, state="finished", adapter_path=event.adapter_dir, merged_path=event.merged_dir)
    elif isinstance(event, Stopped):
        store.tunes.update(name, state="stopped")
    elif isinstance(event, Failed):
        store.tunes.update(name, state="failed", error=event.message or "training failed")


def reconcile(config: Config) -> list[str]:
    """Runs marked "running" whose child is gone: their events.jsonl is replayed into the store (what a dead parent
    missed) and they take the state of their final event, or "interrupted" without one. Returns their names."""
    from engines.tune.events import read_events

    changed: list[str] = []
    store = Store(config.db_path)
    try:
        for run in store.tunes.list():
            if run.state != "running" or child_alive(run.run_dir):
                continue
            events = read_events(run.run_dir / EVENTS)
            starts = [i for i, e in enumerate(events) if isinstance(e, Started)]
            final: TuneEvent | None = None
            for event in events[starts[-1] :] if starts else []:
                if isinstance(event, StepDone | Validated):
                    store.tunes.record(run.name, event)
                elif isinstance(event, Finished | Stopped | Failed):
                    final = event
            if final is not None:
                set_final_state(store, run.name, final)
            else:
                store.tunes.update(run.name, state="interrupted", error=ended_without_result(run.run_dir, None))
            changed.append(run.name)
    finally:
        store.close()
    return changed


def child_alive(folder: Path) -> bool:
    """Whether the child recorded in folder/child.pid still runs (the same process: its start time matches)."""
    import psutil

    try:
        data = json.loads((folder / CHILD_PID).read_text()[:4096])
        proc = psutil.Process(int(data["pid"]))
        if abs(proc.create_time() - float(data["started"])) > 1.0:
            return False
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except (OSError, ValueError, TypeError, KeyError, psutil.Error):
        return False


def ended_without_result(folder: Path, code: int | None) -> str:
    """The error of an interrupted run: how the child ended, and the last lines of child.log."""
    if code is None:
        how = "the training process is gone"
    elif code < 0:
        how = f"the training process was killed by signal {-code}"
    else:
        how = f"the training process exited with status {code} without a result"
    tail = log_tail(folder / CHILD_LOG)
    return f"{how}; resume goes on from the last checkpoint" + (f"\n{tail}" if tail else "")


def log_tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - _LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def check_options(options: TuneOptions) -> None:
    """BadRequest for an option no run could use."""
    checks = [
        (options.rank >= 1, f"rank {options.rank}: at least 1"),
        (options.alpha >= 1, f"alpha {options.alpha}: at least 1"),
        (0.0 <= options.dropout < 1.0, f"dropout {options.dropout}: from 0 to below 1"),
        (math.isfinite(options.learning_rate) and options.learning_rate > 0, "the learning rate must be above 0"),
        (options.warmup_steps >= 0, "warmup steps cannot be negative"),
        (math.isfinite(options.epochs) and options.epochs > 0, f"epochs {options.epochs}: above 0"),
        (options.max_steps is None or options.max_steps >= 1, f"max steps {options.max_steps}: at least 1"),
        (options.batch_size >= 1, f"batch size {options.batch_size}: at least 1"),
        (options.grad_accum >= 1, f"gradient accumulation {options.grad_accum}: at least 1"),
        (options.max_seq_len >= 8, f"max sequence length {options.max_seq_len}: at least 8"),
        (0.0 <= options.val_fraction < 1.0, f"validation fraction {options.val_fraction}: from 0 to below 1"),
        (options.eval_every >= 1, f"eval every {options.eval_every}: at least 1"),
        (options.save_every >= 1, f"save every {options.save_every}: at least 1"),
        (
            options.device == "auto" or options.device == "cpu" or options.device.startswith("cuda"),
            f"device {options.device!r}: 'auto', 'cpu', 'cuda' or 'cuda:N'",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise BadRequest(message)


def qlora_refusal(quantize: str | None) -> str | None:
    """Why QLoRA cannot run on this machine (None when it can, or none is asked for)."""
    from engines.tune.child import quantization_refusal

    return quantization_refusal(quantize)


def data_refusal(path: Path, rows: int, problems: Any) -> str:
    if not problems:
        return f"{path}: no usable rows"
    shown = "; ".join(f"line {p.line}: {p.message}" for p in list(problems)[:_PROBLEMS_SHOWN])
    more = len(problems) - _PROBLEMS_SHOWN
    return f"{path}: {len(problems)} bad row(s) ({rows} usable): {shown}" + (f"; and {more} more" if more > 0 else "")


def _tracker(config: Config, run: TuneRun) -> Any:
    try:
        from engines.tune.mlflow_log import TuneTracker

        return TuneTracker(config, run)
    except Exception:
        log.warning("tune run %s: MLflow tracking unavailable", run.name, exc_info=True)
        return None


def _lines(stream: IO[bytes]) -> Any:
    """The child's stdout as text lines; an overlong line is skipped whole."""
    while True:
        raw = stream.readline(_LINE_LIMIT + 1)
        if not raw:
            return
        if not raw.endswith(b"\n") and len(raw) > _LINE_LIMIT:
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(_LINE_LIMIT + 1)
            continue
        yield raw.decode("utf-8", "replace").rstrip("\r\n")


def _create_time(pid: int) -> float:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return 0.0
