"""An evaluation run logged to MLflow (when the `mlflow` extra is installed): experiment "llm-tui-eval", the run's
settings as params, accuracy (overall and per subject) and items/s as metrics, the Markdown report as an artifact."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from engines import tracking
from engines.errors import LlmTuiError
from engines.evaluate.export import to_markdown
from engines.evaluate.types import EvalReport
from engines.tracking import mlflow_installed, tracking_uri

if TYPE_CHECKING:
    from engines.config.load import Config

EXPERIMENT = "llm-tui-eval"
ARTIFACT = "eval_report.md"
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. ]")
_STATUS = {"finished": "FINISHED", "cancelled": "KILLED", "failed": "FAILED"}


def metric_key(subject: str) -> str:
    """The metric key accuracy.<subject>, with the characters MLflow refuses in a key (and "/", a folder in its
    file store, where "accuracy" is already a file) made underscores."""
    return "accuracy." + _KEY_CHARS.sub("_", subject)[:200]


def eval_params(report: EvalReport) -> dict[str, str]:
    return {
        "model": report.model,
        "engine": report.engine,
        "data": report.data_name,
        "data_sha256": report.data_sha256,
        "method": report.method.value,
        "shots": str(report.shots),
        "limit": "all" if report.limit is None else str(report.limit),
    }


def eval_metrics(report: EvalReport) -> dict[str, float]:
    metrics = {"accuracy": report.overall.accuracy, "items_per_s": report.items_per_s}
    metrics.update({metric_key(s.subject): s.accuracy for s in report.subjects})
    return metrics


def log_eval(report: EvalReport, config: Config) -> str | None:
    """Log the run to MLflow at `tracking_uri(config)`; its MLflow run id, or None when MLflow is not installed.
    Raises LlmTuiError when MLflow refuses (the evaluation itself is kept either way)."""
    if not mlflow_installed():
        return None
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    try:
        client = tracking.client(tracking_uri(config))
        experiment = client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
        run = client.create_run(experiment_id, run_name=f"{report.model} on {report.data_name}")
        run_id: str = run.info.run_id
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, now, 0) for key, value in eval_metrics(report).items()],
            params=[Param(key, value) for key, value in eval_params(report).items()],
        )
        client.log_text(run_id, to_markdown(report), ARTIFACT)
        client.set_terminated(run_id, status=_STATUS.get(report.state, "FINISHED"))
    except (MlflowException, OSError) as exc:
        raise LlmTuiError(f"MLflow did not take the evaluation run: {exc}") from exc
    return run_id
