"""MLflow, when the `mlflow` extra is installed: where runs are logged. Tuning and evaluation log through it
(engines/tune, engines/evaluate); without MLflow they keep their runs in the store only."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from engines.config.load import Config

INSTALL_HINT = "pip install 'llm-tui[mlflow]'"


def mlflow_installed() -> bool:
    """True when `import mlflow` would work (without importing it: it is slow)."""
    return importlib.util.find_spec("mlflow") is not None


def tracking_uri(config: Config) -> str:
    """MLflow's own MLFLOW_TRACKING_URI when set, else a local folder beside the chat database (data_dir/mlruns)."""
    return config.env.get("MLFLOW_TRACKING_URI") or (config.data_dir / "mlruns").as_uri()


def client(uri: str) -> Any:
    """An MlflowClient for `uri` (import mlflow only when called). MLflow 3 refuses its file store unless
    MLFLOW_ALLOW_FILE_STORE is set, and mlflow-skinny has no SQL backend: a `file:` URI turns it on."""
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)
