"""Running an evaluation on a launched instance: log-likelihood of the choice letters where the engine can score,
else one greedily generated letter. Blocking: call `run_eval` from a thread (the TUI's worker, the CLI's)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engines.errors import BadRequest, Cancelled, CapabilityNotSupported, ContextLengthExceeded, LlmTuiError
from engines.evaluate.prompts import CHOICE_TOKENS, PROMPT_TEMPLATE, build_prompt
from engines.evaluate.stats import score_subjects
from engines.evaluate.types import LETTERS, EvalItem, EvalOptions, EvalProgress, EvalReport, EvalSet, ItemResult, Method
from engines.types import Capability, ChatMessage, Params

if TYPE_CHECKING:
    from engines.manager import EngineManager
    from engines.requests import EngineJob, RequestHandle

BATCH = 4
"""Items per scoring job (and generation requests queued at once): the worker never waits for the next job long,
and Stop ends a job between prompts anyway."""
PROGRESS_INTERVAL_S = 0.25
"""At most four progress reports a second (plus the last one)."""
WAKE_S = 0.1
"""How often a wait looks at the cancel event."""
GENERATE_MAX_TOKENS = 8
_LETTER = re.compile(r"(?<![A-Za-z])([A-J])(?![A-Za-z])")

ProgressSink = Callable[[EvalProgress], None]


def select_items(data: EvalSet, options: EvalOptions) -> list[EvalItem]:
    """The test items a run answers: the subjects asked (all when none), the first `limit` of each."""
    known = set(data.subjects())
    unknown = [s for s in options.subjects if s not in known]
    if unknown:
        shown = ", ".join(sorted(known)[:10]) + (" ..." if len(known) > 10 else "")
        raise BadRequest(f"no subject {', '.join(unknown)} in {data.name}; it has {shown}")
    if options.limit is not None and options.limit < 1:
        raise BadRequest(f"limit must be at least 1, got {options.limit}")
    if options.shots < 0:
        raise BadRequest(f"shots must be 0 or more, got {options.shots}")
    wanted = set(options.subjects) or known
    taken: dict[str, int] = {}
    items: list[EvalItem] = []
    for item in data.test:
        if item.subject in wanted and (options.limit is None or taken.get(item.subject, 0) < options.limit):
            taken[item.subject] = taken.get(item.subject, 0) + 1
            items.append(item)
    return items


def parse_letter(reply: str) -> str | None:
    """The first standalone letter A-J of a generated reply ("B", " B.", '"B"', "**B**"), else None."""
    match = _LETTER.search(reply)
    return match.group(1) if match else None


@dataclass
class _Run:
    manager: EngineManager
    run_id: str
    data: EvalSet
    shots: int
    total: int
    cancel: threading.Event
    progress: ProgressSink | None
    started: float = field(default_factory=time.perf_counter)
    results: list[ItemResult] = field(default_factory=list)
    correct: int = 0
    last_emit: float = 0.0
    dropped: list[str] = field(default_factory=list)
    """Items (subject #index) that ran with fewer shots than asked, to fit the context."""
    wake: threading.Event = field(default_factory=threading.Event)

    def shots_for(self, item: EvalItem, k: int | None = None) -> tuple[EvalItem, ...]:
        return self.data.dev.get(item.subject, ())[: self.shots if k is None else k]

    def record(self, item: EvalItem, predicted: str | None, scores: Sequence[float] | None) -> None:
        result = ItemResult(item.subject, item.index, item.answer, predicted, None if scores is None else tuple(scores))
        self.results.append(result)
        self.correct += result.correct
        self.emit(item.subject)

    def emit(self, subject: str, *, last: bool = False) -> None:
        now = time.perf_counter()
        if self.progress is None or (not last and now - self.last_emit < PROGRESS_INTERVAL_S):
            return
        self.last_emit = now
        rate = len(self.results) / max(now - self.started, 1e-9)
        self.progress(EvalProgress(len(self.results), self.total, self.correct, rate, subject))

    def wait_job(self, job: EngineJob, on_progress: Callable[[], None]) -> None:
        """Wait for a job, recording what it finished as it goes; cancels it when the run is cancelled."""
        while not job.done.is_set():
            self.wake.wait(WAKE_S)
            self.wake.clear()
            if self.cancel.is_set():
                job.cancel()
            on_progress()
        on_progress()
        job.wait(0)

    def wait_request(self, handle: RequestHandle) -> None:
        while not handle.wait(WAKE_S):
            if self.cancel.is_set():
                handle.cancel()
        if self.cancel.is_set():
            raise Cancelled("the evaluation was cancelled")


def run_eval(
    manager: EngineManager,
    run_id: str,
    data: EvalSet,
    options: EvalOptions,
    *,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> EvalReport:
    """Answer the selected items on instance `run_id`; returns the report (state "cancelled" with the items done
    when `cancel` is set, "failed" with the error when the engine failed part-way). `progress` is called on this
    thread, at most four times a second and once at the end."""
    info = manager.info(run_id)
    engine = manager.engine_of(run_id)
    items = select_items(data, options)
    method = options.method or (Method.LOGLIK if engine.supports(Capability.SCORE) else Method.GENERATE)
    if method is Method.LOGLIK:
        engine.require(Capability.SCORE)
    run = _Run(manager, run_id, data, options.shots, len(items), cancel or threading.Event(), progress)
    notes: list[str] = []
    state, error = "finished", None
    try:
        if method is Method.LOGLIK:
            rest = _loglik(run, items)
            if rest is not None:
                method = Method.GENERATE
                notes.append(
                    f"the engine gave no log-probabilities after {len(run.results)} item(s): "
                    f"the other {len(rest)} were answered by generation"
                )
                _generate(run, rest)
        else:
            _generate(run, items)
    except Cancelled:
        state = "cancelled"
    except LlmTuiError as exc:
        state, error = "failed", str(exc)
    if state == "finished" and run.cancel.is_set() and len(run.results) < len(items):
        state = "cancelled"
    if run.dropped:
        notes.append(
            f"{len(run.dropped)} item(s) ran with fewer shots to fit the context: {', '.join(run.dropped[:20])}"
        )
    elapsed = time.perf_counter() - run.started
    run.emit(run.results[-1].subject if run.results else "", last=True)
    subjects, overall = score_subjects(run.results)
    return EvalReport(
        model=info.model_id,
        engine=info.engine,
        data_name=data.name,
        data_sha256=data.sha256,
        method=method,
        shots=options.shots,
        limit=options.limit,
        prompt_template=PROMPT_TEMPLATE,
        subjects=subjects,
        overall=overall,
        items=tuple(run.results),
        items_per_s=len(run.results) / elapsed if elapsed > 0 else 0.0,
        elapsed_s=elapsed,
        state=state,
        error=error,
        notes=tuple(notes),
    )


def _argmax(scores: Sequence[float]) -> str | None:
    if not scores:
        return None
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return LETTERS[best]


def _loglik(run: _Run, items: Sequence[EvalItem]) -> list[EvalItem] | None:
    """Score every item; the items left when the engine turns out to give no log-probabilities, else None."""
    i = 0
    while i < len(items):
        if run.cancel.is_set():
            raise Cancelled("the evaluation was cancelled")
        batch = items[i : i + BATCH]
        prompts = [(build_prompt(item, run.shots_for(item)), CHOICE_TOKENS(len(item.choices))) for item in batch]
        job = run.manager.submit_score(run.run_id, prompts, notify=run.wake.set, progress=lambda _n: run.wake.set())
        take = _Taker(run, batch, job.scores)
        try:
            run.wait_job(job, take)
        except ContextLengthExceeded:
            _fit_loglik(run, batch[take.recorded])
            i += take.recorded + 1
            continue
        except CapabilityNotSupported:
            return list(items[i + take.recorded :])
        i += len(batch)
    return None


@dataclass
class _Taker:
    """Records a scoring job's finished prompts as they come (called while waiting, and once at the end)."""

    run: _Run
    batch: Sequence[EvalItem]
    scores: list[list[float]]
    recorded: int = 0

    def __call__(self) -> None:
        while self.recorded < len(self.scores):
            scores = self.scores[self.recorded]
            self.run.record(self.batch[self.recorded], _argmax(scores), scores)
            self.recorded += 1


def _fit_loglik(run: _Run, item: EvalItem) -> None:
    """Score an item whose prompt is too long with fewer and fewer shots; wrong (no answer) if none fits."""
    for k in range(len(run.shots_for(item)) - 1, -1, -1):
        job = run.manager.submit_score(
            run.run_id,
            [(build_prompt(item, run.shots_for(item, k)), CHOICE_TOKENS(len(item.choices)))],
            notify=run.wake.set,
        )
        try:
            run.wait_job(job, lambda: None)
        except ContextLengthExceeded:
            continue
        run.dropped.append(f"{item.subject} #{item.index} ({k} shots)")
        run.record(item, _argmax(job.scores[0]), job.scores[0])
        return
    run.dropped.append(f"{item.subject} #{item.index} (did not fit)")
    run.record(item, None, None)


def _generation_params(run: _Run, letters: str) -> Params:
    engine = run.manager.engine_of(run.run_id)
    schema = json.dumps({"enum": list(letters)}) if engine.supports(Capability.JSON_SCHEMA) else None
    return Params(temperature=0.0, max_tokens=GENERATE_MAX_TOKENS, json_schema=schema)


def _ask(run: _Run, item: EvalItem, k: int | None = None) -> RequestHandle:
    prompt = build_prompt(item, run.shots_for(item, k))
    params = _generation_params(run, LETTERS[: len(item.choices)])
    if run.manager.engine_of(run.run_id).supports(Capability.COMPLETION):
        return run.manager.complete(run.run_id, prompt, params)
    return run.manager.submit(run.run_id, [ChatMessage("user", prompt)], params)


def _too_long(handle: RequestHandle) -> tuple[bool, str | None]:
    """(the prompt did not fit, the letter answered); raises LlmTuiError for another failure."""
    result = handle.result()
    if result.error is not None:
        if result.error.kind == ContextLengthExceeded.__name__:
            return True, None
        if result.error.kind == Cancelled.__name__:
            raise Cancelled(result.error.message)
        raise LlmTuiError(result.error.message)
    letter = parse_letter(result.text)
    return letter is None and result.done is not None and result.done.finish_reason == "context", letter


def _generate(run: _Run, items: Sequence[EvalItem]) -> None:
    for start in range(0, len(items), BATCH):
        if run.cancel.is_set():
            raise Cancelled("the evaluation was cancelled")
        batch = items[start : start + BATCH]
        handles = [_ask(run, item) for item in batch]
        try:
            for item, handle in zip(batch, handles, strict=True):
                run.wait_request(handle)
                too_long, letter = _too_long(handle)
                if too_long:
                    _fit_generate(run, item)
                else:
                    run.record(item, letter, None)
        finally:
            for handle in handles:
                handle.cancel()  # nothing for the finished ones; the queued ones of a cancelled run never start


def _fit_generate(run: _Run, item: EvalItem) -> None:
    for k in range(len(run.shots_for(item)) - 1, -1, -1):
        handle = _ask(run, item, k)
        run.wait_request(handle)
        too_long, letter = _too_long(handle)
        if not too_long:
            run.dropped.append(f"{item.subject} #{item.index} ({k} shots)")
            run.record(item, letter, None)
            return
    run.dropped.append(f"{item.subject} #{item.index} (did not fit)")
    run.record(item, None, None)
