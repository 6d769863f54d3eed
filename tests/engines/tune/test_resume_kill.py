"""kill -9 during training, then resume: the app (a stand-in parent process) and the training child are both
killed after a checkpoint; reconcile marks the run interrupted; resume goes on from the checkpoint with the same data
order and RNG, so the curve continues (no gap, no duplicate step, the same loss at the same step). Then Stop saves a
checkpoint and the run ends "stopped", and a second resume finishes it. Real model: Gemma 3 270M, converted."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from engines.config.load import Config
from engines.store.sessions import Store
from engines.tune import checkpoint
from engines.tune.events import from_line
from engines.tune.paths import CHILD_PID, run_dir
from engines.tune.process import TuneProcess, reconcile
from engines.tune.provenance import read_provenance
from engines.tune.types import Checkpointed, Finished, Started, StepDone, Stopped, TuneEvent, TuneOptions
from tests.engines.tune.conftest import Events, make_config, secret_data

PARENT = Path(__file__).with_name("tune_parent.py")
OPTIONS = TuneOptions(
    rank=4,
    alpha=8,
    dropout=0.1,  # dropout draws random numbers: the restored RNG state matters
    learning_rate=5e-4,
    max_steps=6,
    batch_size=1,
    grad_accum=2,
    max_seq_len=48,
    val_fraction=0.2,
    eval_every=3,
    save_every=2,
    seed=3,
    merge=True,
)


def _read_lines(stream: object, out: queue.Queue[TuneEvent | None]) -> None:
    for raw in stream:  # type: ignore[attr-defined]
        event = from_line(raw.decode().strip())
        if event is not None:
            out.put(event)
    out.put(None)


def _until(events: queue.Queue[TuneEvent | None], seen: list[TuneEvent], step: int, timeout: float) -> None:
    while True:
        event = events.get(timeout=timeout)
        assert event is not None, f"the parent ended before step {step}: {seen[-3:]}"
        seen.append(event)
        if isinstance(event, StepDone) and event.step == step:
            return


@pytest.fixture
def config(tmp_path: Path, shared_xdg_cache: Path, transformers_cache: Path, gemma_path: Path) -> Config:
    from engines.adapters.transformers_convert import ensure_converted

    ensure_converted(gemma_path, transformers_cache)  # the shared conversion, made once
    return make_config(tmp_path, shared_xdg_cache)


def test_kill_9_then_reconcile_resume_stop_and_resume(config: Config, gemma_path: Path, tmp_path: Path) -> None:
    data = secret_data(tmp_path / "files", train_rows=10)[0]
    spec = {
        "models_dir": str(config.models_dir),
        "data_dir": str(config.data_dir),
        "cache_dir": str(config.cache_dir),
        "base": str(gemma_path),
        "data": str(data),
        "name": "k",
        "options": json.dumps(OPTIONS.to_json()),
    }
    parent = subprocess.Popen([sys.executable, str(PARENT), json.dumps(spec)], stdout=subprocess.PIPE)
    lines: queue.Queue[TuneEvent | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(parent.stdout, lines), daemon=True).start()
    killed_run: list[TuneEvent] = []
    try:
        _until(lines, killed_run, 3, timeout=300)  # step 3 done: the newest checkpoint is step 2
    finally:
        parent.kill()  # the app dies first (SIGKILL), then its training child
        parent.wait()
    folder = run_dir(config, "k")
    child = psutil.Process(json.loads((folder / CHILD_PID).read_text())["pid"])
    child.kill()
    child.wait(timeout=30)
    assert [e.step for e in killed_run if isinstance(e, Checkpointed)] == [2]

    with Store(config.db_path) as store:
        assert store.tunes.get("k", metrics=False).state == "running"  # nobody saw it die
    assert reconcile(config) == ["k"]
    with Store(config.db_path) as store:
        run = store.tunes.get("k")
    assert run.state == "interrupted" and run.error is not None and "resume" in run.error
    assert [s.step for s in run.steps] == [1, 2, 3]
    found = checkpoint.latest(folder)
    assert found is not None and found[1].step == 2

    events = Events()
    stop_after_first = threading.Event()

    def on_event(event: TuneEvent) -> None:
        events(event)
        if isinstance(event, StepDone):
            stop_after_first.set()

    proc = TuneProcess.resume(config, "k", on_event)
    assert stop_after_first.wait(timeout=300), events.items[-3:]
    proc.stop()
    assert proc.wait(timeout=300) == 0
    started = events.of(Started)
    assert len(started) == 1 and started[0].resumed_from == 2 and started[0].total_steps == 6
    resumed_steps = events.of(StepDone)
    assert resumed_steps[0].step == 3
    before = next(e for e in killed_run if isinstance(e, StepDone) and e.step == 3)
    assert resumed_steps[0].loss == pytest.approx(before.loss, rel=1e-4)  # same batch, weights and dropout
    assert resumed_steps[0].learning_rate == pytest.approx(before.learning_rate)
    stopped = events.of(Stopped)
    assert len(stopped) == 1 and stopped[0].checkpoint is not None
    stop_step = stopped[0].step
    assert stop_step >= 3 and checkpoint.read_state(stopped[0].checkpoint) is not None
    with Store(config.db_path) as store:
        assert store.tunes.get("k", metrics=False).state == "stopped"

    events = Events()
    proc = TuneProcess.resume(config, "k", events)
    assert proc.wait(timeout=300) == 0, events.items[-3:]
    assert events.of(Started)[0].resumed_from == stop_step
    finished = events.items[-1]
    assert isinstance(finished, Finished) and finished.merged_dir == config.models_dir / "k"
    provenance = read_provenance(config.models_dir / "k")
    assert provenance is not None and provenance.run == "k" and provenance.base == str(gemma_path)
    with Store(config.db_path) as store:
        run = store.tunes.get("k")
    assert run.state == "finished" and run.merged_path == config.models_dir / "k"
    assert [s.step for s in run.steps] == [1, 2, 3, 4, 5, 6]  # no gap, no duplicate across two resumes
    assert [v.step for v in run.validations] == [3, 6]
    assert (folder / "adapter" / "adapter_config.json").is_file()
    kept = sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert len(kept) == 2 and "step-6" in kept  # the newest two
