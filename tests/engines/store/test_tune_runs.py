"""Tuning runs in the store (schema 8): create / get / list / update / delete, metrics recorded by step and
replaced when a resumed run trains a step again, and the names that must be unique."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines.errors import BadRequest
from engines.store.sessions import Store
from engines.store.tune_runs import TuneRunNotFound
from engines.tune.types import Checkpointed, Schedule, StepDone, TuneOptions, TuneRun, Validated


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "llm-tui.db") as s:
        yield s


def new_run(name: str = "greet", **changes: object) -> TuneRun:
    options = TuneOptions(rank=4, target_modules=("q_proj", "v_proj"), schedule=Schedule.LINEAR,
                          val_file=Path("/d/val.jsonl"), max_steps=30)  # fmt: skip
    values: dict[str, object] = {
        "name": name,
        "base": "gemma-3-270m",
        "data_path": Path("/d/train.jsonl"),
        "data_sha256": "ab" * 32,
        "options": options,
        "state": "running",
        "run_dir": Path(f"/data/tune/{name}"),
    }
    values.update(changes)
    return TuneRun(**values)  # type: ignore[arg-type]


def step(n: int, loss: float) -> StepDone:
    return StepDone(step=n, epoch=n / 10, loss=loss, learning_rate=1e-4 * n, tokens_per_s=100.0 + n,
                    memory_bytes=1000 * n, elapsed_s=0.0, eta_s=3.0)  # fmt: skip


def test_create_then_get_gives_the_same_run(store: Store) -> None:
    made = store.tunes.create(new_run())
    assert made.id is not None and made.created_at is not None and made.updated_at == made.created_at
    got = store.tunes.get("greet")
    assert got == made
    assert got.options.target_modules == ("q_proj", "v_proj") and got.options.val_file == Path("/d/val.jsonl")


def test_names_are_unique_and_states_checked(store: Store) -> None:
    store.tunes.create(new_run())
    with pytest.raises(BadRequest, match="named 'greet' exists"):
        store.tunes.create(new_run(base="other"))
    with pytest.raises(BadRequest, match="unknown tuning run state"):
        store.tunes.create(new_run("x", state="paused"))
    with pytest.raises(BadRequest, match="unknown tuning run state"):
        store.tunes.update("greet", state="paused")
    assert [r.name for r in store.tunes.list()] == ["greet"]


def test_missing_runs_are_named(store: Store) -> None:
    for call in (
        lambda: store.tunes.get("nope"),
        lambda: store.tunes.update("nope", state="failed"),
        lambda: store.tunes.record("nope", step(1, 1.0)),
        lambda: store.tunes.truncate_after("nope", 1),
        lambda: store.tunes.delete("nope"),
    ):
        with pytest.raises(TuneRunNotFound, match="'nope' does not exist"):
            call()


def test_list_is_newest_first_without_metrics(store: Store) -> None:
    for name in ("a", "b", "c"):
        store.tunes.create(new_run(name))
    store.tunes.record("a", step(1, 2.0))
    runs = store.tunes.list()
    assert [r.name for r in runs] == ["c", "b", "a"]
    assert runs[2].steps == () and store.tunes.get("a", metrics=False).steps == ()
    assert len(store.tunes.get("a").steps) == 1


def test_update_sets_only_what_is_given(store: Store) -> None:
    store.tunes.create(new_run())
    store.tunes.update("greet", state="failed", error="out of memory")
    store.tunes.update("greet", mlflow_run_id="abc123")
    run = store.tunes.get("greet")
    assert (run.state, run.error, run.mlflow_run_id, run.adapter_path) == ("failed", "out of memory", "abc123", None)
    assert run.updated_at is not None and run.created_at is not None and run.updated_at >= run.created_at
    store.tunes.update("greet", state="running")  # resumed: the old error goes
    store.tunes.update("greet", state="finished", adapter_path=Path("/r/adapter"), merged_path=Path("/m/greet"))
    run = store.tunes.get("greet")
    assert (run.state, run.error, run.adapter_path, run.merged_path) == (
        "finished",
        None,
        Path("/r/adapter"),
        Path("/m/greet"),
    )
    assert run.mlflow_run_id == "abc123"


def test_metrics_by_step_with_validations_and_replays(store: Store) -> None:
    store.tunes.create(new_run())
    store.tunes.record("greet", Validated(0, 3.0))  # before any step
    for n, loss in ((1, 2.5), (2, 2.0), (3, 1.5), (4, 1.2)):
        store.tunes.record("greet", step(n, loss))
    store.tunes.record("greet", Validated(2, 1.9))
    store.tunes.record("greet", Validated(4, 1.1))
    store.tunes.record("greet", Checkpointed(2, Path("/c")))  # not a metric: ignored
    run = store.tunes.get("greet")
    assert [(s.step, s.loss) for s in run.steps] == [(1, 2.5), (2, 2.0), (3, 1.5), (4, 1.2)]
    assert run.steps[2] == StepDone(3, 0.3, 1.5, 1e-4 * 3, 103.0, 3000, run.steps[2].elapsed_s, None)
    assert [(v.step, v.val_loss) for v in run.validations] == [(0, 3.0), (2, 1.9), (4, 1.1)]
    # Killed after step 4, resumed from the checkpoint at step 2: steps 3 and 4 are trained again.
    store.tunes.truncate_after("greet", 2)
    assert [s.step for s in store.tunes.get("greet").steps] == [1, 2]
    store.tunes.record("greet", step(3, 1.4))
    store.tunes.record("greet", step(3, 1.45))  # the same step seen twice keeps the last
    run = store.tunes.get("greet")
    assert [(s.step, s.loss) for s in run.steps] == [(1, 2.5), (2, 2.0), (3, 1.45)]
    assert [(v.step, v.val_loss) for v in run.validations] == [(0, 3.0), (2, 1.9)]


def test_a_step_after_its_validation_keeps_the_validation(store: Store) -> None:
    store.tunes.create(new_run())
    store.tunes.record("greet", Validated(5, 0.9))
    store.tunes.record("greet", step(5, 1.0))
    run = store.tunes.get("greet")
    assert [(s.step, s.loss) for s in run.steps] == [(5, 1.0)] and run.validations == (Validated(5, 0.9),)


def test_a_nan_loss_is_kept_as_a_step(store: Store) -> None:
    store.tunes.create(new_run())
    store.tunes.record("greet", step(1, math.nan))
    (only,) = store.tunes.get("greet").steps
    assert only.step == 1 and math.isnan(only.loss)


def test_delete_removes_the_metrics_too(store: Store, tmp_path: Path) -> None:
    store.tunes.create(new_run())
    store.tunes.record("greet", step(1, 2.0))
    store.tunes.delete("greet")
    with pytest.raises(TuneRunNotFound):
        store.tunes.get("greet")
    store.tunes.create(new_run())  # the name is free again, and no old metric comes back with it
    assert store.tunes.get("greet").steps == ()
    store.close()
    import sqlite3

    with sqlite3.connect(tmp_path / "llm-tui.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM tune_metrics").fetchone() == (0,)
