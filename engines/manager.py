"""EngineManager: models loaded on engines, each served by its own worker thread (see engines/instance.py).

Idle unload: an instance launched with LaunchOptions.idle_unload_s is stopped by one reaper
thread once it has had no request running or queued for that long; the reason is kept in the
InstanceInfo the manager remembers for stopped instances (`stopped()`) and handed to `on_stopped`.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from engines.adapters import registry
from engines.adapters.base import Engine
from engines.errors import BadRequest, CapabilityNotSupported, InstanceNotFound, InstanceNotReady, LlmTuiError
from engines.instance import Instance, StopWhen
from engines.relay import Coalescing
from engines.requests import EmbedJob, EventSink, RequestHandle, ScoreJob, TranscribeJob
from engines.tools.forced import engine_params, forces_call
from engines.types import Capability, ChatMessage, InstanceInfo, LaunchOptions, ModelSpec, Params

if TYPE_CHECKING:
    from engines.audio.types import Audio, TranscribeOptions, Transcript

__all__ = ["Coalescing", "EngineManager", "Instance"]

log = logging.getLogger(__name__)

STOPPED_KEPT = 32
"""Stopped instances remembered for `stopped()`, most recent last."""


class EngineManager:
    """Starts, lists and stops instances, routes requests to them and unloads the idle ones."""

    def __init__(
        self,
        *,
        coalescing: Coalescing | None = None,
        engine_factory: Callable[[str], Engine] = registry.create,
        clock: Callable[[], float] = time.perf_counter,
        idle_clock: Callable[[], float] = time.monotonic,
        reap_interval_s: float | None = 1.0,
        on_stopped: Callable[[InstanceInfo], None] | None = None,
    ) -> None:
        """`clock` times requests and `idle_clock` measures idleness; tests give scripted ones.

        `reap_interval_s` is how often the reaper thread looks for idle instances (None: no thread;
        call `reap_idle()` yourself). `on_stopped` hears of every instance that stopped, on the thread
        that stopped it (the reaper's, for idle unloads).
        """
        self._coalescing = coalescing or Coalescing()
        self._clock = clock
        self._idle_clock = idle_clock
        self._factory = engine_factory
        self._instances: dict[str, Instance] = {}
        self._stopped: collections.deque[InstanceInfo] = collections.deque(maxlen=STOPPED_KEPT)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._reap_interval_s = reap_interval_s
        self._reaper: threading.Thread | None = None
        self._closing = threading.Event()
        self._wake = threading.Event()
        self.on_stopped = on_stopped

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
        options = options or LaunchOptions()
        instance = Instance(run_id, spec, options, adapter, self._coalescing, self._clock, self._idle_clock)
        with self._lock:
            self._instances[run_id] = instance
        instance.start()
        if options.idle_unload_s is not None:
            self._ensure_reaper()
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
        instance = self._get(run_id)
        if forces_call(params) and not instance.native_tools:  # the call is forced by the call's JSON schema
            if not instance.engine.supports(Capability.JSON_SCHEMA):
                raise CapabilityNotSupported(instance.engine.name, "forced tool calls (tool_choice)")
            params = engine_params(params, native_tools=False)
        if params.json_schema is not None:  # refused here, with the engine named, not deep in its worker
            instance.engine.require(Capability.JSON_SCHEMA)
        if any(m.images for m in messages):
            instance.engine.require(Capability.VISION)
        if params.logprobs is not None:
            instance.engine.require(Capability.LOGPROBS)
        handle = RequestHandle(run_id, list(messages), params, session=session, sink=sink, submitted_at=self._clock())
        instance.submit(handle)
        return handle

    def complete(
        self, run_id: str, prompt: str, params: Params | None = None, *, sink: EventSink | None = None
    ) -> RequestHandle:
        """Queue a raw completion of `prompt` (no chat template) on an instance, like `submit`.

        Raises CapabilityNotSupported, naming the engine, when it cannot complete raw text."""
        params = params or Params()
        params.validate()
        instance = self._get(run_id)
        instance.engine.require(Capability.COMPLETION)
        if params.json_schema is not None:
            instance.engine.require(Capability.JSON_SCHEMA)
        if params.logprobs is not None:
            instance.engine.require(Capability.LOGPROBS)
        handle = RequestHandle(run_id, [], params, sink=sink, submitted_at=self._clock(), prompt=prompt)
        instance.submit(handle)
        return handle

    def embed(self, run_id: str, texts: Sequence[str], timeout: float | None = 300.0) -> EmbedJob:
        """Embed `texts` on an instance (queued behind its chat requests); the finished job holds the vectors and
        the time the engine took. Raises CapabilityNotSupported when the engine cannot embed."""
        job = self.submit_embed(run_id, texts)
        try:
            job.result(timeout)
        except BaseException:
            job.cancel()  # nobody waits for it any more (timeout, Ctrl-C): the engine stops between texts
            raise
        return job

    def submit_embed(self, run_id: str, texts: Sequence[str], *, notify: Callable[[], None] | None = None) -> EmbedJob:
        """Queue `texts` for embedding and return the job at once (cancel it to stop it); `notify` is called on
        the worker thread when it is done. Raises CapabilityNotSupported when the engine cannot embed."""
        if not texts:
            raise BadRequest("give at least one text to embed")
        instance = self._get(run_id)
        instance.engine.require(Capability.EMBED)
        job = EmbedJob(texts=list(texts), notify=notify)
        instance.submit(job)
        return job

    def score(
        self, run_id: str, items: Sequence[tuple[str, Sequence[str]]], timeout: float | None = 300.0
    ) -> list[list[float]]:
        """Log-probabilities of each item's continuations after its raw prompt (queued behind the instance's other
        requests). Raises CapabilityNotSupported when the engine exposes no logits."""
        job = self.submit_score(run_id, items)
        try:
            return job.result(timeout)
        except BaseException:
            job.cancel()
            raise

    def submit_score(
        self,
        run_id: str,
        items: Sequence[tuple[str, Sequence[str]]],
        *,
        notify: Callable[[], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ScoreJob:
        """Queue prompts to score and return the job at once (cancel it to stop it between prompts); `notify` is
        called on the worker thread when it is done. Raises CapabilityNotSupported, BadRequest for no items."""
        if not items:
            raise BadRequest("give at least one prompt to score")
        if any(not choices for _, choices in items):
            raise BadRequest("every prompt to score needs at least one continuation")
        instance = self._get(run_id)
        instance.engine.require(Capability.SCORE)
        job = ScoreJob(items=list(items), notify=notify, progress=progress)
        instance.submit(job)
        return job

    def transcribe(
        self,
        run_id: str,
        audio: Audio,
        options: TranscribeOptions | None = None,
        *,
        timeout: float | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> Transcript:
        """Speech to text on an instance (queued behind its other requests); the transcript carries the time the
        engine took. Raises CapabilityNotSupported when the model is not a speech-to-text one."""
        job = self.submit_transcribe(run_id, audio, options, progress=progress)
        try:
            return job.result(timeout)
        except BaseException:
            job.cancel()  # nobody waits for it any more (timeout, Ctrl-C): the engine stops between chunks
            raise

    def submit_transcribe(
        self,
        run_id: str,
        audio: Audio,
        options: TranscribeOptions | None = None,
        *,
        notify: Callable[[], None] | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> TranscribeJob:
        """Queue `audio` for transcription and return the job at once (cancel it to stop it); `notify` is called on
        the worker thread when it is done, `progress` with the fraction done. Raises CapabilityNotSupported."""
        from engines.audio.types import TranscribeOptions

        instance = self._get(run_id)
        instance.engine.require(Capability.TRANSCRIBE)
        job = TranscribeJob(audio=audio, options=options or TranscribeOptions(), notify=notify, progress=progress)
        instance.submit(job)
        return job

    def stop(self, run_id: str, timeout: float | None = 30.0, *, reason: str = "stopped") -> None:
        """Cancel the instance's work, unload the model and forget the instance."""
        self._stop(self._get(run_id), timeout, reason, "always")

    def stop_if_idle(self, run_id: str, *, reason: str, timeout: float | None = 30.0) -> bool:
        """Stop the instance only if it is loaded with nothing running or queued; True when it was stopped."""
        return self._stop(self._get(run_id), timeout, reason, "idle")

    def stop_all(self, timeout: float | None = 30.0) -> None:
        """Stop every instance."""
        for run_id in list(self._instances):
            with contextlib.suppress(InstanceNotFound):  # the reaper got there first
                self.stop(run_id, timeout)

    def reap_idle(self) -> list[str]:
        """Stop every instance idle past its idle_unload_s; return their run ids (the reaper thread calls this)."""
        with self._lock:
            current = list(self._instances.values())
        reaped = []
        for instance in current:
            limit = instance.options.idle_unload_s
            if limit is None or not instance.idle_expired():
                continue
            if self._stop(instance, 30.0, f"idle for {limit:g} s", "expired"):
                reaped.append(instance.run_id)
        return reaped

    def info(self, run_id: str) -> InstanceInfo:
        """A snapshot of one instance."""
        return self._get(run_id).info()

    def instances(self) -> list[InstanceInfo]:
        """Snapshots of every instance, oldest first."""
        with self._lock:
            current = list(self._instances.values())
        return [i.info() for i in current]

    def stopped(self) -> list[InstanceInfo]:
        """The last instances that stopped (with their stop_reason), most recent last."""
        with self._lock:
            return list(self._stopped)

    def engine_of(self, run_id: str) -> Engine:
        """The adapter behind an instance (for engine-specific inspection in tests and benches)."""
        return self._get(run_id).engine

    def close(self) -> None:
        """Stop every instance and the reaper thread."""
        self._closing.set()
        self._wake.set()
        self.stop_all()
        reaper = self._reaper
        if reaper is not None and reaper is not threading.current_thread():
            reaper.join(5.0)

    def __enter__(self) -> EngineManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stop(self, instance: Instance, timeout: float | None, reason: str, when: StopWhen) -> bool:
        if not instance.begin_stop(reason, when=when) and when != "always":
            return False  # busy again, or already stopping: leave it to whoever stops it
        instance.join(timeout)
        with self._lock:
            known = self._instances.pop(instance.run_id, None) is not None
        if known:
            info = instance.info()
            with self._lock:
                self._stopped.append(info)
            if self.on_stopped is not None:
                try:
                    self.on_stopped(info)
                except Exception:  # a listener's bug must not stop the reaper or a stop
                    log.exception("on_stopped listener failed")
        return True

    def _ensure_reaper(self) -> None:
        with self._lock:
            if self._reaper is not None or self._reap_interval_s is None or self._closing.is_set():
                self._wake.set()  # a new, possibly shorter, idle limit: look again now
                return
            self._reaper = threading.Thread(target=self._reap_loop, name="idle-reaper", daemon=True)
        self._reaper.start()

    def _reap_loop(self) -> None:
        interval = self._reap_interval_s or 1.0
        while not self._closing.is_set():
            try:
                self.reap_idle()
            except Exception:  # keep reaping; one failed unload must not end idle unloading for good
                log.exception("idle unload failed")
            self._wake.wait(self._next_wait(interval))
            self._wake.clear()

    def _next_wait(self, interval: float) -> float:
        """Until the soonest idle deadline, at most `interval` and at least 10 ms."""
        soonest = interval
        for info in self.instances():
            limit = info.options.idle_unload_s
            if limit is not None and info.idle:
                soonest = min(soonest, limit - info.idle_s)
        return max(0.01, soonest)

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
