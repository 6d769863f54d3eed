"""One model loaded on an engine, served by its own worker thread from a request queue.

The token path: the engine's generator runs on the instance's worker thread;
the worker hands the first token on at once (time to first token is what a
user feels), then coalesces deltas for ~30 ms or ~512 characters so a fast
engine does not flood the UI with one message per token.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Literal

from engines import footprint as mem
from engines.adapters.base import Batcher, Engine
from engines.errors import Cancelled, InstanceNotReady, LlmTuiError
from engines.relay import Coalescing, Relay
from engines.requests import EngineJob, RequestHandle
from engines.types import (
    Capability,
    Done,
    Error,
    Footprint,
    InstanceInfo,
    InstanceState,
    LaunchOptions,
    ModelSpec,
    StreamEvent,
)

_STOP = object()

StopWhen = Literal["always", "idle", "expired"]


class Instance:
    """A model loaded on an engine, with a request queue and one worker thread.

    `clock` times requests; `idle_clock` (monotonic seconds) decides how long the instance has been idle.
    """

    def __init__(
        self,
        run_id: str,
        spec: ModelSpec,
        options: LaunchOptions,
        engine: Engine,
        coalescing: Coalescing,
        clock: Callable[[], float] = time.perf_counter,
        idle_clock: Callable[[], float] = time.monotonic,
    ):
        self.run_id = run_id
        self.clock = clock
        self.idle_clock = idle_clock
        self.spec = spec
        self.options = options
        self.engine = engine
        self.native_tools = engine.supports(Capability.TOOLS)
        """The engine takes tools itself; otherwise calls are parsed out of its text (engines.shaper)."""
        self.coalescing = coalescing
        self.state = InstanceState.LOADING
        self.error: str | None = None
        self.load_exception: BaseException | None = None
        self.requests_served = 0
        self.last_tokens_per_s: float | None = None
        self.last_used = idle_clock()
        self.last_used_at = self.started_at = time.time()
        self.load_s: float | None = None
        self.pending = 0
        self.stop_reason: str | None = None
        self.footprint = Footprint()
        self.current: RequestHandle | EngineJob | None = None
        """The request running now (a stop cancels it)."""
        self.running: dict[int, RequestHandle] = {}
        """Requests in the engine's slots, by request id, when it decodes several at once (a stop cancels them)."""
        self.batcher: Batcher | None = None
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
                options=self.options,
                last_used_at=self.last_used_at,
                idle_s=self._idle_s(),
                pending_requests=self.pending,
                load_s=self.load_s,
                stop_reason=self.stop_reason,
                **self._slot_fields(),
            )

    def _slot_fields(self) -> dict[str, int]:
        if self.batcher is None:
            return {"slots_busy": int(self.current is not None)}
        stats = self.batcher.stats()
        return {
            "slots": stats.slots,
            "slots_busy": len(self.running),
            "draft_proposed": stats.draft_proposed,
            "draft_accepted": stats.draft_accepted,
        }

    def submit(self, handle: RequestHandle | EngineJob) -> None:
        """Queue a request; it runs after those before it."""
        with self._lock:
            if self.state in (InstanceState.ERROR, InstanceState.STOPPING, InstanceState.STOPPED):
                raise InstanceNotReady(f"instance {self.run_id} is {self.state.value}" + _detail(self.error))
            self.pending += 1
            self._touch()
            # Queued under the lock, so a request accepted here is always ahead of a stop's sentinel.
            self._queue.put(handle)

    def idle_expired(self) -> bool:
        """Whether its idle_unload_s has run out (loaded, no request running or queued, unused that long)."""
        with self._lock:
            return self._may_stop("expired")

    def begin_stop(self, reason: str, *, when: StopWhen = "always") -> bool:
        """Mark the instance as stopping and cancel its work; False if it was already stopping or `when` fails.

        `when`: "always"; "idle" (loaded, nothing running or queued); "expired" (idle past idle_unload_s).
        The check and the change happen under one lock, so a request cannot slip in between.
        """
        with self._lock:
            if self.state in (InstanceState.STOPPING, InstanceState.STOPPED) or not self._may_stop(when):
                return False
            self.stop_reason = reason
            self.state = InstanceState.STOPPING
            running = [self.current, *self.running.values()]
        for item in running:
            if item is not None:
                item.cancel()
        self._queue.put(_STOP)
        return True

    def join(self, timeout: float | None) -> None:
        """Wait for the worker to unload the model and end."""
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def stop(self, timeout: float | None, reason: str = "stopped") -> None:
        """Cancel current and queued requests, unload the model, end the worker."""
        self.begin_stop(reason)
        self.join(timeout)

    def _may_stop(self, when: StopWhen) -> bool:
        if when == "always":
            return True
        if self.state is not InstanceState.READY or self.pending:
            return False
        limit = self.options.idle_unload_s
        return when == "idle" or (limit is not None and self._idle_s() >= limit)

    def _idle_s(self) -> float:
        if self.state is not InstanceState.READY or self.pending:
            return 0.0
        return max(0.0, self.idle_clock() - self.last_used)

    def _touch(self) -> None:
        self.last_used = self.idle_clock()
        self.last_used_at = time.time()

    def _set_state(self, state: InstanceState) -> None:
        with self._lock:
            if self.state is not InstanceState.STOPPING or state is InstanceState.STOPPED:
                self.state = state

    def _run(self) -> None:
        try:
            self._load()
            if self.state is InstanceState.READY:
                self.batcher = self.engine.batcher()
                if self.batcher is None:
                    self._serve()
                else:
                    self._serve_slots(self.batcher)
        finally:
            self._drain("instance stopped")
            try:
                mem.release(self.engine.unload)
            finally:
                with self._lock:
                    if self.state is not InstanceState.ERROR:
                        self.state = InstanceState.STOPPED
                self.ready.set()

    def _load(self) -> None:
        began = time.perf_counter()
        growth: mem.Growth | None = None
        try:
            growth = mem.measure(lambda: self.engine.load(self.spec, self.options))
        except BaseException as exc:  # the worker must report every failure, not die silently
            with self._lock:
                self.state = InstanceState.ERROR
                self.error = _message(exc)
                self.load_exception = exc
                self.load_s = time.perf_counter() - began
            self.ready.set()
            return
        declared = self.engine.footprint()
        measured = growth.rss_bytes if growth is not None else None
        ram = max(declared.ram_bytes or 0, measured or 0)
        vram = self.engine.vram_in_use()
        with self._lock:
            self.footprint = Footprint(
                ram_bytes=ram if ram or declared.ram_bytes is not None or measured is not None else None,
                vram_bytes=vram if vram is not None else declared.vram_bytes,
                measured_ram_bytes=measured,
                mapped_bytes=growth.mapped_bytes if growth is not None else None,
            )
            self.load_s = time.perf_counter() - began
            self._touch()  # a slow load is not idle time
        self._set_state(InstanceState.READY)
        self.ready.set()

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, EngineJob):
                self._job(item)
                continue
            if item is _STOP or not isinstance(item, RequestHandle):
                return
            with self._lock:
                self.current = item
                stopping = self.state is InstanceState.STOPPING
            if stopping:
                self._finished(item, Error("instance stopped before the request ran", kind="stopped"), served=False)
                continue
            self._set_state(InstanceState.BUSY)
            final: StreamEvent = Error("the request ended unexpectedly", kind="internal")
            try:
                final = self._generate(item)
            finally:
                self._finished(item, final)

    def _serve_slots(self, batcher: Batcher) -> None:
        """Admit queued requests while slots are free, and decode every busy slot in one batch per step."""
        while True:
            while batcher.free_slots() > 0:
                try:  # wait for work only when no slot has any
                    item = self._queue.get(block=not self.running)
                except queue.Empty:
                    break
                if isinstance(item, EngineJob):
                    self._job(item)  # between two steps: the slots wait, none is lost
                elif isinstance(item, RequestHandle):
                    self._admit(batcher, item)
                else:  # a stop: the running requests end as cancelled, the queued ones are drained after
                    for handle in list(self.running.values()):
                        handle.cancel()
                    self._step_until_idle(batcher)
                    return
            if self.running:
                try:
                    batcher.step()
                except BaseException as exc:  # a scheduler fault: every running request hears it, none hangs
                    for handle in list(self.running.values()):
                        self._finished(handle, Error(_message(exc), kind=type(exc).__name__))
                    with self._lock:
                        self.state, self.error = InstanceState.ERROR, _message(exc)
                    return

    def _step_until_idle(self, batcher: Batcher) -> None:
        while self.running and batcher.busy_slots():
            batcher.step()

    def _admit(self, batcher: Batcher, handle: RequestHandle) -> None:
        with self._lock:
            stopping = self.state is InstanceState.STOPPING
        if stopping:
            self._finished(handle, Error("instance stopped before the request ran", kind="stopped"), served=False)
            return
        relay = Relay(handle, self.coalescing, self.clock, native_tools=self.native_tools)
        if handle.cancel_event.is_set():
            self._finished(handle, relay.cancelled_before_start())
            return

        def emit(event: StreamEvent) -> None:
            if (final := relay.event(event)) is not None:
                self._finished(handle, self._timed(final))

        with self._lock:
            self.running[handle.request_id] = handle
        self._set_state(InstanceState.BUSY)
        try:
            batcher.admit(handle, emit)
        except BaseException as exc:  # refused (too long, bad schema...): this request ends, the others go on
            if handle.request_id in self.running:
                self._finished(handle, relay.failed(_message(exc), type(exc).__name__))

    def _job(self, job: EngineJob) -> None:
        with self._lock:
            stopping = self.state is InstanceState.STOPPING
            self.current = job  # a stop cancels it: a long job does not hold the unload up
        if stopping:
            job.error = InstanceNotReady("instance stopped before the request ran")
        elif job.cancel_event.is_set():  # its client left while it waited: the model never sees it
            job.error = Cancelled(f"the {job.what} request was cancelled before it ran")
        else:
            self._set_state(InstanceState.BUSY)
            started = self.clock()
            try:
                job.run(self.engine)
            except BaseException as exc:  # handed to the caller, like a chat request's Error
                job.error = exc
            job.elapsed_ms = (self.clock() - started) * 1000.0
        with self._lock:
            self.current = None
            self.pending -= 1
            self.requests_served += not stopping
            self._touch()
        self._set_state(InstanceState.BUSY if self.running else InstanceState.READY)
        job.finish()

    def _finished(self, item: RequestHandle, final: StreamEvent, *, served: bool = True) -> None:
        # The instance is ready again before the caller hears the reply is done,
        # so whoever reacts to Done sees the instance as it now is.
        with self._lock:
            self.current = None
            self.pending -= 1
            self.requests_served += served
            self.running.pop(item.request_id, None)
            busy = bool(self.running)
            self._touch()
        self._set_state(InstanceState.BUSY if busy else InstanceState.READY)
        item.deliver(final)

    def _generate(self, handle: RequestHandle) -> StreamEvent:
        """Stream deltas to the handle; return the final event (Done or Error) for the caller to deliver."""
        relay = Relay(handle, self.coalescing, self.clock, native_tools=self.native_tools)
        if handle.cancel_event.is_set():
            return relay.cancelled_before_start()
        try:
            if handle.prompt is not None:
                events = self.engine.complete(handle.prompt, handle.params, handle.cancel_event)
            else:
                events = self.engine.chat(handle.messages, handle.params, handle.cancel_event, handle.session)
            for event in events:
                if (final := relay.event(event)) is not None:
                    return self._timed(final)
            return relay.failed("the engine ended the reply without saying it was done", "truncated")
        except BaseException as exc:  # an engine failure ends this request, not the instance
            return relay.failed(_message(exc), type(exc).__name__)

    def _timed(self, final: StreamEvent) -> StreamEvent:
        """Note a finished request's decode speed for listings; hand its final event on."""
        if isinstance(final, Done) and final.metrics is not None and final.metrics.tokens_per_s:
            with self._lock:
                self.last_tokens_per_s = final.metrics.tokens_per_s
        return final

    def _drain(self, reason: str) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, RequestHandle | EngineJob):
                with self._lock:
                    self.pending -= 1
            if isinstance(item, RequestHandle):
                item.deliver(Error(reason, kind="stopped"))
            elif isinstance(item, EngineJob):
                item.error = InstanceNotReady(reason)
                item.finish()


def _message(exc: BaseException) -> str:
    if isinstance(exc, LlmTuiError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _detail(error: str | None) -> str:
    return f": {error}" if error else ""
