"""A tuning run logged to MLflow (when the `mlflow` extra is installed): experiment "llm-tui-tune", the run's options,
base model and data hash as params, loss / learning rate / tokens per second / validation loss per step as metrics,
the adapter folder as artifacts when it finishes. A resumed run goes on in the same MLflow run.

MLflow is a guest here: its calls run on the tracker's own thread (a server that is down may retry for minutes, and
the training's event reader must never wait on it), and the first error it raises logs one warning and ends the
tracking for this run; the training and the store's record go on as if nothing happened.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engines import tracking
from engines.tracking import mlflow_installed, tracking_uri
from engines.tune.types import Failed, Finished, Started, StepDone, Stopped, TuneEvent, TuneRun, Validated

if TYPE_CHECKING:
    from engines.config.load import Config

log = logging.getLogger(__name__)

EXPERIMENT = "llm-tui-tune"
ADAPTER_ARTIFACTS = "adapter"
"""The artifact folder the adapter's files go to."""
MAX_PENDING = 10_000
"""Events waiting for MLflow; past this the tracking gives up rather than hold memory."""
_MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


class TuneTracker:
    """Logs one run's events to MLflow on a thread of its own; without MLflow every method does nothing."""

    def __init__(self, config: Config, run: TuneRun, *, on_run_id: Callable[[str], None] | None = None) -> None:
        """A run that already has `run.mlflow_run_id` goes on in that MLflow run; a new MLflow run's id is kept in
        the store's row of the run (so a resume finds it) and given to `on_run_id`, both on the tracker's thread."""
        self._run = run
        self._db_path = config.db_path
        self._uri = tracking_uri(config)
        self._on_run_id = on_run_id
        self._run_id: str | None = run.mlflow_run_id
        self._client: Any = None
        self._queue: queue.Queue[TuneEvent | None] = queue.Queue(maxsize=MAX_PENDING)  # None: stop
        self._pending = 0
        self._idle = threading.Condition()
        self._enabled = mlflow_installed()
        self._thread: threading.Thread | None = None

    @property
    def run_id(self) -> str | None:
        """The MLflow run's id once it exists (set on the tracker's thread: see flush)."""
        return self._run_id

    @property
    def enabled(self) -> bool:
        """False without MLflow, or once MLflow has failed for this run."""
        return self._enabled

    def event(self, event: TuneEvent) -> None:
        """Queue an event for MLflow; never blocks and never raises."""
        if not self._enabled:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=f"mlflow {self._run.name}", daemon=True)
            self._thread.start()
        with self._idle:
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self._give_up(f"more than {MAX_PENDING} events wait for it")
                return
            self._pending += 1

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event has been sent (or dropped); False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Send what is queued and end the tracker's thread; False if `timeout` passed first (it is a daemon)."""
        if self._thread is None:
            return True
        sent = self.flush(timeout)
        self._enabled = False
        if sent:
            self._queue.put(None)
            self._thread.join(timeout)
        return sent

    # -- the tracker's thread -------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._enabled:
                    self._send(item)
            except Exception as exc:  # any MLflow failure ends tracking, never training
                self._give_up((str(exc) or type(exc).__name__)[:300])
            finally:
                if item is not None:
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()

    def _give_up(self, why: str) -> None:
        if self._enabled:
            self._enabled = False
            log.warning("MLflow tracking of tuning run %r at %s stopped: %s", self._run.name, self._uri, why)

    def _send(self, event: TuneEvent) -> None:
        from mlflow.entities import Metric

        if isinstance(event, Started):
            self._begin(event)
            return
        run_id = self._run_id
        if run_id is None:
            return  # no Started seen (a resumed run whose MLflow run is gone): nothing to log into
        client = self._client
        now = int(time.time() * 1000)
        if isinstance(event, StepDone):
            metrics = {"loss": event.loss, "learning_rate": event.learning_rate, "tokens_per_s": event.tokens_per_s}
            client.log_batch(run_id, metrics=[Metric(k, float(v), now, event.step) for k, v in metrics.items()])
        elif isinstance(event, Validated):
            client.log_batch(run_id, metrics=[Metric("val_loss", float(event.val_loss), now, event.step)])
        elif isinstance(event, Finished):
            if event.adapter_dir.is_dir():
                client.log_artifacts(run_id, str(event.adapter_dir), ADAPTER_ARTIFACTS)
            if event.merged_dir is not None:
                client.set_tag(run_id, "merged_dir", str(event.merged_dir))
            client.set_terminated(run_id, status="FINISHED")
        elif isinstance(event, Stopped):
            client.set_terminated(run_id, status="KILLED")  # stopped on request: resumable, so not FAILED
        elif isinstance(event, Failed):
            client.set_tag(run_id, "error", event.message[:_MAX_PARAM_CHARS])
            client.set_terminated(run_id, status="FAILED")

    def _begin(self, event: Started) -> None:
        """Open the MLflow run: a new one with the params, or the run's own one again when it resumes."""
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        if self._client is None:
            self._client = tracking.client(self._uri)
        client = self._client
        if self._run_id is not None:
            try:
                client.update_run(self._run_id, status="RUNNING")
                return
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                log.warning(
                    "MLflow run %s of tuning run %r is gone: logging to a new one", self._run_id, self._run.name
                )
        experiment = client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
        created = client.create_run(experiment_id, run_name=self._run.name, tags={"llm-tui.run": self._run.name})
        run_id: str = created.info.run_id
        params = {key: _param_text(value) for key, value in self._run.options.to_json().items()}
        params.update(
            base=self._run.base,
            data_path=str(self._run.data_path),
            data_sha256=self._run.data_sha256,
            train_rows=str(event.train_rows),
            val_rows=str(event.val_rows),
            trainable_params=str(event.trainable_params),
            total_params=str(event.total_params),
            device=event.device,
        )
        client.log_batch(run_id, params=[Param(key, value) for key, value in params.items()])
        self._run_id = run_id
        try:
            from engines.store.sessions import Store

            with Store(self._db_path) as store:
                store.tunes.update(self._run.name, mlflow_run_id=run_id)
        except Exception as exc:  # the store failing is no reason to stop tracking
            log.warning(
                "keeping MLflow run id %s of tuning run %r in the store failed: %s", run_id, self._run.name, exc
            )
        if self._on_run_id is not None:
            try:
                self._on_run_id(run_id)
            except Exception:
                log.exception("the MLflow run id handler of tuning run %r failed", self._run.name)


def _param_text(value: object) -> str:
    text = (",".join(str(v) for v in value) or "default") if isinstance(value, list | tuple) else str(value)
    return text[:_MAX_PARAM_CHARS]
