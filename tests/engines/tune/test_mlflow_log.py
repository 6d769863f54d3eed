"""A tuning run logged to MLflow (file: store in tmp), read back with MLflow's own client: params at Started,
metrics by step, the adapter's files as artifacts at Finished, a resumed run in the same MLflow run; MLflow being
down ends the tracking with one warning and never an error."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from engines.config.load import load_config
from engines.store.sessions import Store
from engines.tune import mlflow_log
from engines.tune.mlflow_log import EXPERIMENT, TuneTracker
from engines.tune.types import (
    Checkpointed,
    Failed,
    Finished,
    Started,
    Status,
    StepDone,
    Stopped,
    TuneEvent,
    TuneOptions,
    TuneRun,
    Validated,
)

pytest.importorskip("mlflow")


def make_run(tmp: Path, mlflow_run_id: str | None = None) -> TuneRun:
    return TuneRun(
        name="greet",
        base="gemma-3-270m",
        data_path=tmp / "train.jsonl",
        data_sha256="cd" * 32,
        options=TuneOptions(rank=4, alpha=8, target_modules=("q_proj", "v_proj"), max_steps=3),
        state="running",
        run_dir=tmp / "tune" / "greet",
        mlflow_run_id=mlflow_run_id,
    )


def step(n: int, loss: float) -> StepDone:
    return StepDone(step=n, epoch=n / 4, loss=loss, learning_rate=1e-3 / n, tokens_per_s=50.0 * n,
                    memory_bytes=1, elapsed_s=n, eta_s=None)  # fmt: skip


def test_a_run_resumed_and_finished_in_one_mlflow_run(isolated_dirs: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = (isolated_dirs / "mlruns").as_uri()
    config = load_config(None, env={"MLFLOW_TRACKING_URI": uri})
    with Store(config.db_path) as store:
        store.tunes.create(make_run(isolated_dirs))
    seen: list[str] = []
    first = TuneTracker(config, make_run(isolated_dirs), on_run_id=seen.append)
    for event in (Status("loading"), Started(total_steps=3, train_rows=9, val_rows=1, device="cpu"), step(1, 2.0)):
        first.event(event)
    first.event(Validated(1, 2.5))
    first.event(step(2, 1.5))
    first.event(Stopped(2, None))
    assert first.close(timeout=60)
    run_id = first.run_id
    assert run_id is not None and seen == [run_id]
    with Store(config.db_path) as store:
        assert store.tunes.get("greet").mlflow_run_id == run_id  # kept for a resume
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.info.run_name == "greet"
    params = run.data.params
    assert params["base"] == "gemma-3-270m" and params["data_sha256"] == "cd" * 32
    assert (params["rank"], params["alpha"], params["target_modules"], params["max_steps"]) == (
        "4",
        "8",
        "q_proj,v_proj",
        "3",
    )
    assert (params["train_rows"], params["val_rows"], params["schedule"]) == ("9", "1", "cosine")

    # Resumed (as TuneProcess.resume does, with the id the store kept): the same MLflow run goes on.
    adapter = isolated_dirs / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 4}', encoding="utf-8")
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    second = TuneTracker(config, make_run(isolated_dirs, run_id), on_run_id=seen.append)
    second.event(Started(total_steps=3, resumed_from=2, train_rows=9, val_rows=1))
    assert second.flush(timeout=60)
    assert client.get_run(run_id).info.status == "RUNNING"
    later: list[TuneEvent] = [
        step(3, 1.0),
        Validated(3, 1.25),
        Checkpointed(3, adapter),
        Finished(adapter, None, 1.0, 1.25),
    ]
    for later_event in later:
        second.event(later_event)
    assert second.close(timeout=60)
    assert second.run_id == run_id and seen == [run_id]  # no new run
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    history = {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)] for key in run.data.metrics}
    assert history["loss"] == [(1, 2.0), (2, 1.5), (3, 1.0)]
    assert history["val_loss"] == [(1, 2.5), (3, 1.25)]
    assert history["learning_rate"] == [(1, 1e-3), (2, 1e-3 / 2), (3, 1e-3 / 3)]
    assert history["tokens_per_s"] == [(1, 50.0), (2, 100.0), (3, 150.0)]
    files = sorted(a.path for a in client.list_artifacts(run_id, "adapter"))
    assert files == ["adapter/adapter_config.json", "adapter/adapter_model.safetensors"]
    local = Path(client.download_artifacts(run_id, "adapter/adapter_config.json", str(isolated_dirs / "dl")))
    assert local.read_text(encoding="utf-8") == '{"r": 4}'


def test_a_failed_run_is_marked_failed_with_its_error(isolated_dirs: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = (isolated_dirs / "mlruns").as_uri()
    tracker = TuneTracker(load_config(None, env={"MLFLOW_TRACKING_URI": uri}), make_run(isolated_dirs))
    tracker.event(Started(total_steps=3))
    tracker.event(Failed("CUDA out of memory"))
    assert tracker.close(timeout=60) and tracker.run_id is not None
    run = MlflowClient(tracking_uri=uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED" and run.data.tags["error"] == "CUDA out of memory"


def test_a_server_that_is_down_ends_tracking_with_one_warning(
    isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = load_config(None, env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})
    tracker = TuneTracker(config, make_run(isolated_dirs))
    with caplog.at_level(logging.WARNING, logger="engines.tune.mlflow_log"):
        tracker.event(Started(total_steps=3))
        for n in range(1, 4):
            tracker.event(step(n, 1.0))  # never raises, never waits
        assert tracker.flush(timeout=60)
        tracker.event(Finished(isolated_dirs))
        assert tracker.close(timeout=60)
    assert not tracker.enabled and tracker.run_id is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "MLflow tracking of tuning run 'greet'" in warnings[0].getMessage()


def test_without_mlflow_nothing_happens(isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mlflow_log, "mlflow_installed", lambda: False)
    config = load_config(None, env={"MLFLOW_TRACKING_URI": (isolated_dirs / "mlruns").as_uri()})
    tracker = TuneTracker(config, make_run(isolated_dirs))
    tracker.event(Started(total_steps=1))
    assert tracker.close() and tracker.run_id is None and not tracker.enabled
    assert not (isolated_dirs / "mlruns").exists()
