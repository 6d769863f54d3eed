"""TuneProcess without a real training run: what start refuses before spawning, a child that fails, resume without
a checkpoint, reconcile of runs whose parent died, and the checkpoint / data-order rules the loop relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engines.config.load import Config
from engines.errors import BadRequest, ModelNotFound
from engines.store.sessions import Store
from engines.tune import checkpoint
from engines.tune.checkpoint import TrainState
from engines.tune.events import to_line
from engines.tune.paths import CHILD_LOG, CHILD_PID, EVENTS, run_dir
from engines.tune.process import TuneProcess, reconcile
from engines.tune.train_loop import epoch_order, total_steps
from engines.tune.types import Failed, Finished, Started, StepDone, TuneOptions, TuneRun, Validated
from tests.engines.tune.conftest import Events, chat_row, secret_data


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(models_dir=tmp_path / "models", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return secret_data(tmp_path / "files", train_rows=8)[0]


def _no_run(config: Config, name: str) -> None:
    assert not run_dir(config, name).exists()
    with Store(config.db_path) as store:
        assert store.tunes.list() == []


def test_qlora_on_a_machine_without_cuda_is_refused_before_spawning(
    config: Config, gemma_path: Path, data: Path
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: QLoRA is allowed here")
    with pytest.raises(BadRequest, match=r"QLoRA.*needs a CUDA GPU"):
        TuneProcess.start(config, str(gemma_path), data, "q", TuneOptions(quantize="4bit"), Events())
    _no_run(config, "q")


def test_a_missing_base_is_refused(config: Config, data: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        TuneProcess.start(config, str(tmp_path / "nope.gguf"), data, "m", TuneOptions(), Events())
    with pytest.raises(ModelNotFound):
        TuneProcess.start(config, "no-such-model-anywhere", data, "m", TuneOptions(), Events())
    _no_run(config, "m")


def test_data_with_problems_is_refused_with_line_numbers(config: Config, gemma_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(chat_row("q", "a")) + "\n{not json\n" + json.dumps({"messages": "x"}) + "\n")
    with pytest.raises(BadRequest, match=r"2 bad row\(s\).*line 2.*line 3"):
        TuneProcess.start(config, str(gemma_path), bad, "d", TuneOptions(), Events())
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(BadRequest, match="no usable rows"):
        TuneProcess.start(config, str(gemma_path), empty, "d", TuneOptions(), Events())
    with pytest.raises(BadRequest, match="data file not found"):
        TuneProcess.start(config, str(gemma_path), tmp_path / "absent.jsonl", "d", TuneOptions(), Events())
    _no_run(config, "d")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("../up", TuneOptions(), "run name"),
        ("", TuneOptions(), "run name"),
        ("ok", TuneOptions(rank=0), "rank 0"),
        ("ok", TuneOptions(learning_rate=0.0), "learning rate"),
        ("ok", TuneOptions(batch_size=0), "batch size"),
        ("ok", TuneOptions(max_steps=0), "max steps"),
        ("ok", TuneOptions(val_fraction=1.0), "validation fraction"),
        ("ok", TuneOptions(device="tpu"), "device"),
    ],
)
def test_bad_names_and_options_are_refused(
    config: Config, gemma_path: Path, data: Path, name: str, options: TuneOptions, message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        TuneProcess.start(config, str(gemma_path), data, name, options, Events())


def test_a_taken_name_is_refused(config: Config, gemma_path: Path, data: Path) -> None:
    with Store(config.db_path) as store:
        store.tunes.create(TuneRun("taken", "b", data, "0" * 64, TuneOptions(), "finished", run_dir(config, "taken")))
    with pytest.raises(BadRequest, match="taken"):
        TuneProcess.start(config, str(gemma_path), data, "taken", TuneOptions(), Events())


def test_a_merge_over_an_existing_model_is_refused(config: Config, gemma_path: Path, data: Path) -> None:
    (config.models_dir / "mine").mkdir(parents=True)
    with pytest.raises(BadRequest, match="merged model needs another run name"):
        TuneProcess.start(config, str(gemma_path), data, "mine", TuneOptions(merge=True), Events())
    _no_run(config, "mine")


def test_a_child_that_fails_records_the_reason(config: Config, data: Path, tmp_path: Path) -> None:
    """A model folder without weights: the child sends Failed with the loader's reason and exits 1."""
    folder = tmp_path / "empty-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gemma3_text"}')
    events = Events()
    proc = TuneProcess.start(config, str(folder), data, "f", TuneOptions(), events)
    assert proc.wait(timeout=120) == 1
    failed = events.of(Failed)
    assert len(failed) == 1 and "no weights" in failed[0].message
    with Store(config.db_path) as store:
        run = store.tunes.get("f")
    assert run.state == "failed" and run.error is not None and "no weights" in run.error
    assert "Traceback" in (proc.run_dir / CHILD_LOG).read_text()
    with pytest.raises(BadRequest, match="no complete checkpoint"):
        TuneProcess.resume(config, "f", Events())


def _dead_pid() -> tuple[int, float]:
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, started


def _running_run(config: Config, name: str, data: Path, events: list[object]) -> Path:
    folder = run_dir(config, name)
    folder.mkdir(parents=True)
    with Store(config.db_path) as store:
        store.tunes.create(TuneRun(name, "b", data, "0" * 64, TuneOptions(), "running", folder))
    pid, started = _dead_pid()
    (folder / CHILD_PID).write_text(json.dumps({"pid": pid, "started": started}))
    (folder / EVENTS).write_text("".join(to_line(e) + "\n" for e in events))  # type: ignore[arg-type]
    (folder / CHILD_LOG).write_text("loading\nKilled\n")
    return folder


def _step(n: int, loss: float) -> StepDone:
    return StepDone(n, n / 4, loss, 1e-4, 10.0, 1 << 30, float(n), None)


def test_reconcile_replays_what_a_dead_parent_missed(config: Config, data: Path) -> None:
    """Runs left "running" by a dead app: the events after the last Started are stored; a final event gives the
    state, none gives "interrupted" with the child's last log lines. A run whose child lives is left alone."""
    _running_run(config, "cut", data, [Started(10), _step(1, 2.0), _step(2, 1.5), Validated(2, 1.7)])
    _running_run(
        config,
        "done",
        data,
        [Started(3), _step(1, 9.0), Started(3, resumed_from=0), _step(1, 2.0), Finished(Path("/x/adapter"))],
    )
    live = _running_run(config, "live", data, [Started(3)])
    import psutil

    me = psutil.Process()
    (live / CHILD_PID).write_text(json.dumps({"pid": me.pid, "started": me.create_time()}))

    assert sorted(reconcile(config)) == ["cut", "done"]
    with Store(config.db_path) as store:
        cut, done, alive = store.tunes.get("cut"), store.tunes.get("done"), store.tunes.get("live")
    assert cut.state == "interrupted" and cut.error is not None and "Killed" in cut.error
    assert [(s.step, s.loss) for s in cut.steps] == [(1, 2.0), (2, 1.5)]
    assert [(v.step, v.val_loss) for v in cut.validations] == [(2, 1.7)]
    assert done.state == "finished" and done.adapter_path == Path("/x/adapter")
    assert [(s.step, s.loss) for s in done.steps] == [(1, 2.0)]  # only what followed the last Started
    assert alive.state == "running"
    assert reconcile(config) == []


def test_the_newest_complete_checkpoint_is_picked(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        (root / f"step-{step}").mkdir(parents=True)
    (root / "step-2" / "state.json").write_text(json.dumps({"step": 2, "epoch": 0, "position": 2}))
    (root / "step-4" / "state.json").write_text(json.dumps({"step": 4, "epoch": 1, "position": 0}))
    (root / "step-6" / "state.json").write_text('{"step": 6, "epo')  # torn: never picked
    (root / ".step-8.123.tmp").mkdir()
    found = checkpoint.latest(tmp_path)
    assert found == (root / "step-4", TrainState(4, 1, 0))
    assert checkpoint.latest(tmp_path / "elsewhere") is None


def test_the_data_order_depends_only_on_seed_and_epoch() -> None:
    first = epoch_order(50, seed=3, epoch=1)
    assert first == epoch_order(50, seed=3, epoch=1) and sorted(first) == list(range(50))
    assert first != epoch_order(50, seed=3, epoch=2) and first != epoch_order(50, seed=4, epoch=1)


def test_total_steps() -> None:
    assert total_steps(TuneOptions(epochs=2, batch_size=4, grad_accum=2), 30) == 8  # 8 batches an epoch, 4 steps
    assert total_steps(TuneOptions(epochs=0.5, batch_size=4), 30) == 4
    assert total_steps(TuneOptions(epochs=3, max_steps=5), 1000) == 5
