"""An evaluation logged to MLflow (file: store in tmp): params, metrics per subject, the Markdown artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.config.load import load_config
from engines.evaluate import mlflow_log
from engines.evaluate.mlflow_log import ARTIFACT, EXPERIMENT, log_eval, metric_key
from tests.engines.evaluate.test_export import make_report

pytest.importorskip("mlflow")


def test_log_eval_writes_params_metrics_and_report(isolated_dirs: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = (isolated_dirs / "mlruns").as_uri()
    config = load_config(None, env={"MLFLOW_TRACKING_URI": uri})
    report = make_report()
    run_id = log_eval(report, config)
    assert run_id is not None
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.data.params == {
        "model": "gemma-3-270m",
        "engine": "llama.cpp",
        "data": "mmlu",
        "data_sha256": "ab" * 32,
        "method": "loglik",
        "shots": "5",
        "limit": "10",
    }
    assert run.data.metrics["accuracy"] == pytest.approx(1 / 3)
    assert run.data.metrics["accuracy.astronomy"] == pytest.approx(0.5)
    assert run.data.metrics["accuracy.law_ civil"] == 0.0
    assert run.data.metrics["items_per_s"] == 12.5
    assert run.info.status == "FINISHED"
    local = Path(client.download_artifacts(run_id, ARTIFACT, str(isolated_dirs)))
    assert local.read_text().startswith("# Evaluation of gemma-3-270m on mmlu")
    assert log_eval(report, config) != run_id  # a second run, same experiment
    assert metric_key("a:b/c") == "accuracy.a_b_c"


def test_without_mlflow_nothing_is_logged(isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mlflow_log, "mlflow_installed", lambda: False)
    config = load_config(None, env={"MLFLOW_TRACKING_URI": (isolated_dirs / "mlruns").as_uri()})
    assert log_eval(make_report(), config) is None
    assert not (isolated_dirs / "mlruns").exists()
