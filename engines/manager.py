"""EngineManager: models loaded on engines, each served by its own worker thread.

The token path: the engine's generator runs on the instance's worker thread;
the worker hands the first token on at once (time to first token is what a
user feels), then coalesces deltas for ~30 ms or ~512 characters so a fast
engine does not flood the UI with one message per token.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from engines.adapters import registry
from engines.adapters.base import Engine
from engines.errors import InstanceNotFound, InstanceNotReady, LlmTuiError
from engines.requests import EventSink, RequestHandle
from engines.types import (
    ChatMessage,
    Delta,
    Done,
    Error,
    Footprint,
    InstanceInfo,
    InstanceState,
    LaunchOptions,
    Metrics,
    ModelSpec,
    Params,
    StreamEvent,
    Usage,
)

_STOP = object()


@dataclass(frozen=True, slots=True)
class Coalescing:
    """How the worker batches deltas before handing them on."""

    interval_s: float = 0.030
    max_chars: int = 512


class Instance:
    """A model loaded on an engine, with a request queue and one worker thread."""

    def __init__(
        self,
        run_id: str,
        spec: ModelSpec,
        options: LaunchOptions,
        engine: Engine,
        coalescing: Coalescing,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.run_id = run_id
        self.clock = clock
        self.spec = spec
        self.options = options
        self.engine = engine
        self.coalescing = coalescing
        self.state = InstanceState.LOADING
        self.error: str | None = None
        self.load_exception: BaseException | None = None
        self.requests_served = 0
        self.last_tokens_per_s: float | None = None
        self.last_used = time.monotonic()
        self.started_at = time.time()
        self.footprint = Footprint()
        self.current: RequestHandle | None = None
        self.ready = threading.Event()
        self._queue: queue.SimpleQueue[RequestHandle | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"instance-{run_id}", daemon=True)

    def start(self) -> None:
        """Start the worker, which loads the model first."""
        self._thread.start()

    def info(self) -> InstanceInfo:
        """A consistent snapshot for listings."""
        with self._lock:
            return InstanceInfo(
                run_id=self.run_id,
                model_id=self.spec.id,
                engine=self.engine.name,
                device=self.options.device,
                state=self.state,
                error=self.error,
                requests_served=self.requests_served,
                last_tokens_per_s=self.last_tokens_per_s,
                started_at=self.started_at,
                footprint=self.footprint,
            )

    def submit(self, handle: RequestHandle) -> None:
        """Queue a request; it runs after those before it."""
        with self._lock:
            if self.state in (InstanceState.ERROR, InstanceState.STOPPING, InstanceState.STOPPED):
                raise InstanceNotReady(f"instance {self.run_id} is {self.state.value}" + _detail(self.error))
        self._queue.put(handle)

    def stop(self, timeout: float | None) -> None:
        """Cancel current and queued requests, unload the model, end the worker."""
        with self._lock:
            if self.state is InstanceState.STOPPED:
                return
            self.state = InstanceState.STOPPING
            current = self.current
        if current is not None:
            current.cancel()
        self._queue.put(_STOP)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _set_state(self, state: InstanceState) -> None:
        with self._lock:
            if self.state is not InstanceState.STOPPING or state is InstanceState.STOPPED:
                self.state = state

    def _run(self) -> None:
        try:
            self._load()
            if self.state is InstanceState.READY:
                self._serve()
        finally:
            self._drain("instance stopped")
            try:
                self.engine.unload()
            finally:
                with self._lock:
                    if self.state is not InstanceState.ERROR:
                        self.state = InstanceState.STOPPED
                self.ready.set()

    def _load(self) -> None:
        rss_before = _rss()
        try:
            self.engine.load(self.spec, self.options)
        except BaseException as exc:  # the worker must report every failure, not die silently
            with self._lock:
                self.state = InstanceState.ERROR
                self.error = _message(exc)
                self.load_exception = exc
            self.ready.set()
            return
        declared = self.engine.footprint()
        measured = max(0, _rss() - rss_before)
        with self._lock:
            self.footprint = Footprint(ram_bytes=declared.ram_bytes or measured, vram_bytes=declared.vram_bytes)
        self._set_state(InstanceState.READY)
        self.ready.set()

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or not isinstance(item, RequestHandle):
                return
            with self._lock:
                self.current = item
            if self.state is InstanceState.STOPPING:
                item.deliver(Error("instance stopped before the request ran", kind="stopped"))
                continue
            self._set_state(InstanceState.BUSY)
            final: StreamEvent = Error("the request ended unexpectedly", kind="internal")
            try:
                final = self._generate(item)
            finally:
                # The instance is ready again before the caller hears the reply is done,
                # so whoever reacts to Done sees the instance as it now is.
                with self._lock:
                    self.current = None
                    self.requests_served += 1
                    self.last_used = time.monotonic()
                self._set_state(InstanceState.READY)
                item.deliver(final)

    def _generate(self, handle: RequestHandle) -> StreamEvent:
        """Stream deltas to the handle; return the final event (Done or Error) for the caller to deliver."""
        clock = self.clock
        started = clock()
        queue_ms = (started - handle.submitted_at) * 1000.0
        if handle.cancel_event.is_set():
            return Done(Usage(), "cancelled", Metrics(0.0, 0.0, 0.0, queue_ms))
        interval, max_chars = self.coalescing.interval_s, self.coalescing.max_chars
        first_at: float | None = None
        pending: list[str] = []
        pending_chars = 0
        last_flush = started
        try:
            for event in self.engine.chat(handle.messages, handle.params, handle.cancel_event, handle.session):
                if isinstance(event, Delta):
                    now = clock()
                    if first_at is None:
                        first_at = last_flush = now
                        handle.deliver(event)
                        continue
                    pending.append(event.text)
                    pending_chars += len(event.text)
                    if now - last_flush >= interval or pending_chars >= max_chars:
                        handle.deliver(Delta("".join(pending)))
                        pending.clear()
                        pending_chars = 0
                        last_flush = now
                    continue
                if pending:
                    handle.deliver(Delta("".join(pending)))
                    pending.clear()
                return self._finish(event, started, first_at, queue_ms) if isinstance(event, Done) else event
            return Error("the engine ended the reply without saying it was done", kind="truncated")
        except BaseException as exc:  # an engine failure ends this request, not the instance
            if pending:
                handle.deliver(Delta("".join(pending)))
            return Error(_message(exc), kind=type(exc).__name__)

    def _finish(self, done: Done, started: float, first_at: float | None, queue_ms: float) -> Done:
        end = self.clock()
        ttft = ((first_at or end) - started) * 1000.0
        decode_tokens = done.usage.completion_tokens - 1
        span = end - first_at if first_at is not None else 0.0
        tps = decode_tokens / span if decode_tokens > 0 and span > 0 else 0.0
        if tps:
            with self._lock:
                self.last_tokens_per_s = tps
        return replace(done, metrics=Metrics(ttft, tps, (end - started) * 1000.0, queue_ms))

    def _drain(self, reason: str) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, RequestHandle):
                item.deliver(Error(reason, kind="stopped"))


class EngineManager:
    """Starts, lists and stops instances and routes requests to them."""

    def __init__(
        self,
        *,
        coalescing: Coalescing | None = None,
        engine_factory: Callable[[str], Engine] = registry.create,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """`clock` times requests; tests give a scripted one so metrics are reproducible."""
        self._coalescing = coalescing or Coalescing()
        self._clock = clock
        self._factory = engine_factory
        self._instances: dict[str, Instance] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def start(
        self,
        spec: ModelSpec,
        options: LaunchOptions | None = None,
        engine: str | Engine = "llama.cpp",
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> str:
        """Load `spec` on `engine` in a new worker; return its run id.

        With wait=True, block until loaded and re-raise a load failure.
        """
        adapter = self._factory(engine) if isinstance(engine, str) else engine
        run_id = f"r{next(self._ids)}-{adapter.name}"
        instance = Instance(run_id, spec, options or LaunchOptions(), adapter, self._coalescing, self._clock)
        with self._lock:
            self._instances[run_id] = instance
        instance.start()
        if wait:
            self.wait_ready(run_id, timeout)
        return run_id

    def wait_ready(self, run_id: str, timeout: float | None = None) -> InstanceInfo:
        """Block until the instance has loaded; raise its load error if it failed."""
        instance = self._get(run_id)
        if not instance.ready.wait(timeout):
            raise InstanceNotReady(f"instance {run_id} is still loading after {timeout} s")
        if instance.load_exception is not None:
            exc = instance.load_exception
            raise exc if isinstance(exc, LlmTuiError) else LlmTuiError(_message(exc))
        return instance.info()

    def submit(
        self,
        run_id: str,
        messages: Sequence[ChatMessage],
        params: Params | None = None,
        *,
        session: str | None = None,
        sink: EventSink | None = None,
    ) -> RequestHandle:
        """Queue a chat request on an instance; events come through the handle or `sink`."""
        params = params or Params()
        params.validate()
        handle = RequestHandle(run_id, list(messages), params, session=session, sink=sink, submitted_at=self._clock())
        self._get(run_id).submit(handle)
        return handle

    def stop(self, run_id: str, timeout: float | None = 30.0) -> None:
        """Cancel the instance's work, unload the model and forget the instance."""
        instance = self._get(run_id)
        instance.stop(timeout)
        with self._lock:
            self._instances.pop(run_id, None)

    def stop_all(self, timeout: float | None = 30.0) -> None:
        """Stop every instance."""
        for run_id in list(self._instances):
            self.stop(run_id, timeout)

    def info(self, run_id: str) -> InstanceInfo:
        """A snapshot of one instance."""
        return self._get(run_id).info()

    def instances(self) -> list[InstanceInfo]:
        """Snapshots of every instance, oldest first."""
        with self._lock:
            current = list(self._instances.values())
        return [i.info() for i in current]

    def engine_of(self, run_id: str) -> Engine:
        """The adapter behind an instance (for engine-specific inspection in tests and benches)."""
        return self._get(run_id).engine

    def __enter__(self) -> EngineManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def _get(self, run_id: str) -> Instance:
        with self._lock:
            instance = self._instances.get(run_id)
        if instance is None:
            raise InstanceNotFound(f"no instance with run id {run_id!r}")
        return instance


def _message(exc: BaseException) -> str:
    if isinstance(exc, LlmTuiError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _detail(error: str | None) -> str:
    return f": {error}" if error else ""


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)
