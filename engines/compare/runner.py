"""The compare runner: one prompt on two to four models, at the same time when they fit, else one at a time.

It runs on its own thread. It resolves the models and plans (engines/compare/plan.py), then:

- parallel: launches what is not running yet (one load at a time, so each load's memory is measured on its
  own), then submits every pane's request at once;
- sequential: for each pane in turn, launch, run, and stop the instance it launched before the next loads,
  so at most one of its models is in memory.

Each pane's events come through a sink on the request, the path the chat uses (`EngineManager.submit(...,
sink=...)`), and go on to the caller's sink as `PaneStream`s, with `PaneStatus` for every change of state.
Stop cancels the running requests, abandons loads, marks every pane not finished as stopped and ends the
run. Instances the user had running are never stopped; those the run launched are stopped when it ends.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from engines.compare.plan import EngineFor, Resolve, Target, admission_of, plan_compare, resolve_targets
from engines.compare.types import (
    FINAL_STATES,
    REMOTE_ENGINES,
    CompareEvent,
    ComparePlan,
    CompareRequest,
    LiveMetrics,
    PaneResult,
    PaneState,
    PaneStatus,
    PaneStream,
    Planned,
    RunEnded,
)
from engines.config.load import Config
from engines.errors import InstanceNotFound, InstanceNotReady, LlmTuiError
from engines.launch import SnapshotSource
from engines.manager import EngineManager
from engines.requests import RequestHandle
from engines.store.records import TurnMetrics
from engines.telemetry.snapshot import Snapshot
from engines.types import Delta, Done, Final, Footprint, InstanceState, Reasoning, StreamEvent, ToolCallDelta

log = logging.getLogger(__name__)

_ALIVE = (InstanceState.LOADING, InstanceState.READY, InstanceState.BUSY, InstanceState.ERROR)

CompareSink = Callable[[CompareEvent], None]
"""Receives the run's events on the runner's and the instances' threads; must not block (e.g. post_message)."""


@dataclass(eq=False)
class _Pane:
    """A pane's progress, owned by the runner (changed under its lock)."""

    target: Target
    state: PaneState = "waiting"
    run_id: str | None = None
    launched: bool = False
    unloaded: bool = False
    handle: RequestHandle | None = None
    parts: list[str] = field(default_factory=list)
    chars: int = 0
    submitted_at: float = 0.0
    first_at: float | None = None
    footprint: Footprint | None = None
    metrics: TurnMetrics | None = None
    error: str | None = None

    @property
    def index(self) -> int:
        return self.target.index


class CompareRunner:
    """Runs one comparison; `start()` it on its own thread or call `run()`, and `stop()` it from any thread."""

    def __init__(
        self,
        manager: EngineManager,
        request: CompareRequest,
        sink: CompareSink,
        *,
        config: Config,
        snapshot: SnapshotSource | None = None,
        engine_for: EngineFor | None = None,
        resolve: Resolve | None = None,
        clock: Callable[[], float] = time.perf_counter,
        poll_s: float = 0.02,
        stop_timeout_s: float = 60.0,
    ) -> None:
        """`snapshot` gives free memory for the plan and for each launch (None: no memory checks).

        Raises BadRequest for a request that cannot run (no prompt, fewer than two or more than four models).
        """
        request.validate()
        self.request = request
        self._manager = manager
        self._sink = sink
        self._config = config
        self._snapshot = snapshot
        self._engine_for = engine_for
        self._resolve = resolve
        self._clock = clock
        self._poll_s = poll_s
        self._stop_timeout_s = stop_timeout_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._panes: list[_Pane] = []
        self._thread: threading.Thread | None = None
        self.plan: ComparePlan | None = None
        self.results: tuple[PaneResult, ...] = ()
        """Every pane's result, once the run has ended."""

    # -- control ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run on a new thread."""
        self._thread = threading.Thread(target=self.run, name="compare-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the run: cancel the requests in flight; loads are abandoned and what the run launched is stopped."""
        self._stopping.set()
        with self._lock:
            handles = [p.handle for p in self._panes if p.handle is not None]
        for handle in handles:
            handle.cancel()

    @property
    def stopping(self) -> bool:
        """Whether stop() was called."""
        return self._stopping.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when it has ended (or was never started)."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # -- the run ----------------------------------------------------------------------------------------------

    def run(self) -> tuple[PaneResult, ...]:
        """Plan, run every pane, clean up; returns the results (also in `results` and the RunEnded event)."""
        error: str | None = None
        try:
            for index in range(len(self.request.models)):
                self._emit(PaneStatus(index, "waiting", "preparing…"))
            targets = resolve_targets(
                self.request, self._manager, self._config, engine_for=self._engine_for, resolve=self._resolve
            )
            with self._lock:
                self._panes = [_Pane(t) for t in targets]
            plan = plan_compare(
                targets, self._sample(), self._manager.instances(), gpu_fraction=self._config.gpu_memory_fraction
            )
            self.plan = plan
            self._emit(Planned(plan))
            for pane, planned in zip(self._panes, plan.panes, strict=True):
                if planned.error is not None:
                    self._fail(pane, planned.error)
            runnable = [p for p in self._panes if p.state != "error"]
            if not self.stopping:
                if plan.mode == "parallel":
                    self._parallel(runnable)
                else:
                    self._sequential(runnable)
        except Exception as exc:  # a bug must end the run with a message, not leave its panes spinning
            log.exception("compare run failed")
            error = str(exc) if isinstance(exc, LlmTuiError) else f"{type(exc).__name__}: {exc}"
        finally:
            self._clean_up(error)
            self.results = tuple(self._result(p) for p in self._panes)
            self._emit(RunEnded(self.plan, self.results, stopped=self.stopping, error=error))
        return self.results

    def _parallel(self, panes: Sequence[_Pane]) -> None:
        loads = [p for p in panes if p.target.loads]
        for pane in panes:
            self._status(pane, "waiting", "waiting for the loads" if loads else "waiting")
        for n, pane in enumerate(loads, start=1):
            if self.stopping:
                return
            if self._launch(pane, f"loading {n}/{len(loads)}"):
                self._status(pane, "waiting", "loaded · waiting for the others")
        ready = [p for p in panes if p.state == "waiting"]
        if self.stopping:
            return
        for pane in ready:  # all at once: the comparison is fair only if they contend alike
            self._submit(pane)
        self._wait(ready)

    def _sequential(self, panes: Sequence[_Pane]) -> None:
        count = len(panes)
        for n, pane in enumerate(panes, start=1):
            self._status(pane, "waiting", f"waiting · runs {n}/{count}")
        for n, pane in enumerate(panes, start=1):
            if self.stopping:
                return
            if pane.target.loads and not self._launch(pane, f"loading {n}/{count}"):
                continue
            self._submit(pane)
            self._wait([pane])
            if pane.launched:
                self._unload(pane)  # before the next model loads: one model in memory at a time

    # -- steps ------------------------------------------------------------------------------------------------

    def _launch(self, pane: _Pane, detail: str) -> bool:
        """Check memory now, start the instance and wait for its load (or for Stop); False when it cannot run."""
        target = pane.target
        assert target.spec is not None and target.engine is not None
        self._status(pane, "loading", detail)
        admission = admission_of(
            target, self._sample(), self._manager.instances(), gpu_fraction=self._config.gpu_memory_fraction
        )
        if admission is not None and not admission.admitted:
            self._fail(pane, admission.reason)
            return False
        try:
            run_id = self._manager.start(target.spec, target.options, target.engine, wait=False)
        except LlmTuiError as exc:
            self._fail(pane, str(exc))
            return False
        with self._lock:
            pane.run_id, pane.launched = run_id, True
        while not self.stopping:
            try:
                info = self._manager.wait_ready(run_id, self._poll_s)
            except InstanceNotReady:
                # Still loading; or it became ready (or failed) just after the wait timed out: look again.
                if self._state_of(run_id) in _ALIVE:
                    continue
                self._fail(pane, f"instance {run_id} was stopped while it loaded")
                return False
            except Exception as exc:  # the load failed: this pane errors, the others go on
                self._fail(pane, str(exc) if isinstance(exc, LlmTuiError) else f"{type(exc).__name__}: {exc}")
                return False
            with self._lock:
                pane.footprint = info.footprint
            return True
        return False

    def _submit(self, pane: _Pane) -> None:
        run_id = pane.run_id or pane.target.model.run_id
        assert run_id is not None
        if pane.footprint is None:
            with contextlib.suppress(LlmTuiError):
                pane.footprint = self._manager.info(run_id).footprint
        with self._lock:
            pane.run_id = run_id
            pane.submitted_at = self._clock()
        self._status(pane, "running", "running")
        try:
            handle = self._manager.submit(
                run_id, self.request.messages(), self.request.params, sink=self._sink_of(pane)
            )
        except LlmTuiError as exc:
            self._fail(pane, str(exc))
            return
        with self._lock:
            pane.handle = handle
        if self.stopping:  # Stop came between the submit and the handle being known to it
            handle.cancel()

    def _wait(self, panes: Sequence[_Pane]) -> None:
        for pane in panes:
            handle = pane.handle
            if handle is None:
                continue
            while not handle.wait(self._poll_s):
                if self.stopping:
                    handle.cancel()

    def _unload(self, pane: _Pane) -> None:
        if pane.run_id is None or pane.unloaded:
            return
        self._status(pane, pane.state, f"{pane.state} · unloading")
        with contextlib.suppress(InstanceNotFound):  # already gone (stopped from the instances screen)
            self._manager.stop(pane.run_id, timeout=self._stop_timeout_s, reason="compare run finished with it")
        with self._lock:
            pane.unloaded = True
        self._status(pane, pane.state, f"{pane.state} · unloaded")

    def _clean_up(self, error: str | None) -> None:
        """Mark the panes left unfinished (stopped, or failed with the run), then stop what the run launched."""
        for pane in self._panes:
            if pane.state not in FINAL_STATES:
                if self.stopping:
                    with self._lock:
                        pane.state = "stopped"
                    self._status(pane, "stopped", "stopped")
                else:
                    self._fail(pane, error or "the run ended before this pane ran")
        for pane in self._panes:
            if pane.launched and not pane.unloaded:
                self._unload(pane)

    # -- events -----------------------------------------------------------------------------------------------

    def _sink_of(self, pane: _Pane) -> Callable[[StreamEvent], None]:
        def sink(event: StreamEvent) -> None:  # on the instance's worker thread
            now = self._clock()
            with self._lock:
                if isinstance(event, Delta):
                    pane.parts.append(event.text)
                    pane.chars += len(event.text)
                    if pane.first_at is None:
                        pane.first_at = now
                elif isinstance(event, Reasoning | ToolCallDelta):  # thinking is a token too (time to first token)
                    if pane.first_at is None:
                        pane.first_at = now
                elif isinstance(event, Done):
                    pane.metrics = TurnMetrics.from_done(event)
                    pane.state = "stopped" if event.finish_reason == "cancelled" else "done"
                else:
                    pane.error = event.message
                    pane.state = "stopped" if event.kind == "stopped" or self.stopping else "error"
                ttft = None if pane.first_at is None else (pane.first_at - pane.submitted_at) * 1000.0
                decode = 0.0 if pane.first_at is None else now - pane.first_at
                live = LiveMetrics(ttft, pane.chars, decode)
                state = pane.state
            self._emit(PaneStream(pane.index, event, live))
            if isinstance(event, Final):
                self._status(pane, state, state)

        return sink

    def _status(self, pane: _Pane, state: PaneState, detail: str) -> None:
        with self._lock:
            pane.state = state
            footprint, error, run_id = _local(pane), pane.error, pane.run_id or pane.target.model.run_id
        self._emit(PaneStatus(pane.index, state, detail, footprint, error if state == "error" else None, run_id))

    def _fail(self, pane: _Pane, message: str) -> None:
        with self._lock:
            pane.error = message
        self._status(pane, "error", "error")

    def _emit(self, event: CompareEvent) -> None:
        try:
            self._sink(event)
        except Exception:  # a broken receiver must not end the run (or an instance's worker)
            log.exception("compare sink failed")

    # -- helpers ----------------------------------------------------------------------------------------------

    def _sample(self) -> Snapshot | None:
        if self._snapshot is None:
            return None
        try:
            return self._snapshot()
        except Exception:  # no telemetry: admission then admits on trust, and says so
            log.exception("telemetry sample failed")
            return None

    def _state_of(self, run_id: str) -> InstanceState | None:
        try:
            return self._manager.info(run_id).state
        except InstanceNotFound:
            return None

    def _result(self, pane: _Pane) -> PaneResult:
        target, footprint = pane.target, _local(pane) or Footprint()
        return PaneResult(
            index=pane.index,
            model_id=target.model_id,
            engine=target.engine_name,
            status=pane.state,
            text="".join(pane.parts),
            error=pane.error if pane.state == "error" else None,
            metrics=pane.metrics,
            ram_bytes=footprint.ram_bytes,
            vram_bytes=footprint.vram_bytes,
            ref=target.model.ref,
            run_id=target.model.run_id,
            options=target.options,
            unloaded=pane.unloaded,
        )


def _local(pane: _Pane) -> Footprint | None:
    """The pane's footprint when it is memory on this machine; None for a remote engine (the few KB its client
    grew by while "loading" are not the model's RAM)."""
    return None if pane.target.engine_name in REMOTE_ENGINES else pane.footprint
