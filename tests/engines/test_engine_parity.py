"""One suite, every engine: streaming, stop sequences, cancellation, usage and capability errors behave the same.

Engines run through the EngineManager, as the app and CLI use them: the fake engine, llama.cpp and transformers
on the real Gemma 270M GGUF, Ollama against a fake daemon and the remote engine against a fake OpenAI-compatible
server (both on 127.0.0.1, streaming realistic NDJSON / SSE). Replies are greedy, so a second run with a stop
sequence taken from the middle of the first reply must end exactly before it.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from engines.adapters.base import Engine
from engines.errors import CapabilityNotSupported
from engines.manager import EngineManager
from engines.requests import RequestHandle
from engines.types import Capability, ChatMessage, Delta, Done, LaunchOptions, ModelSpec, Params, StreamEvent

WORDS = tuple(f" w{i}" for i in range(400))
"""What the fake servers and the fake engine stream: many short tokens, so cancel lands mid-reply."""
ASK = [ChatMessage("user", "Name three colors.")]


@dataclass
class Subject:
    """An engine loaded on a manager, ready for the shared tests."""

    manager: EngineManager
    run_id: str
    engine: Engine


Factory = Callable[[ExitStack, Path, pytest.FixtureRequest], tuple[ModelSpec, Engine]]


def _fake(stack: ExitStack, tmp: Path, request: pytest.FixtureRequest) -> tuple[ModelSpec, Engine]:
    from engines.adapters.fake import FakeEngine

    return ModelSpec(id="fake", format="fake"), FakeEngine(reply="".join(WORDS).strip(), token_delay_s=0.002)


def _llama(stack: ExitStack, tmp: Path, request: pytest.FixtureRequest) -> tuple[ModelSpec, Engine]:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    from engines.adapters.llama_cpp import LlamaCppEngine
    from engines.templates.chat import load_builtin_template

    gemma: Path = request.getfixturevalue("gemma_path")
    spec = ModelSpec(id="gemma-3-270m", path=gemma, chat_template=load_builtin_template("gemma3"))
    return spec, LlamaCppEngine(selftest_cache_dir=tmp)


def _remote(stack: ExitStack, tmp: Path, request: pytest.FixtureRequest) -> tuple[ModelSpec, Engine]:
    from engines.adapters.remote import RemoteEngine
    from tests.engines.fake_openai import FakeOpenAI, Reply

    fake = stack.enter_context(FakeOpenAI(models=("served",), default=Reply(pieces=WORDS, delay_s=0.002)))
    spec = ModelSpec(id="served", format="remote", endpoint=fake.endpoint, served_name="served")
    return spec, RemoteEngine()


def _ollama(stack: ExitStack, tmp: Path, request: pytest.FixtureRequest) -> tuple[ModelSpec, Engine]:
    if importlib.util.find_spec("ollama") is None:
        pytest.skip("the ollama client is not installed")
    from engines.adapters.ollama_engine import OllamaEngine
    from tests.engines.fake_ollama import ChatReply, FakeOllama

    fake = stack.enter_context(FakeOllama(delay=0.002))
    fake.serve("served:1b", reply=ChatReply(pieces=WORDS))
    spec = ModelSpec(id="ollama:served:1b", format="ollama", endpoint=fake.host, served_name="served:1b")
    return spec, OllamaEngine()


def _transformers(stack: ExitStack, tmp: Path, request: pytest.FixtureRequest) -> tuple[ModelSpec, Engine]:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        pytest.skip("torch and transformers are not installed")
    from engines.adapters.transformers_engine import TransformersEngine
    from engines.templates.chat import load_builtin_template

    gemma: Path = request.getfixturevalue("gemma_path")
    spec = ModelSpec(id="gemma-3-270m", path=gemma, chat_template=load_builtin_template("gemma3"))
    return spec, TransformersEngine(cache_dir=request.getfixturevalue("transformers_cache"))  # converted once


ENGINES: dict[str, Factory] = {
    "fake": _fake,
    "llama.cpp": _llama,
    "transformers": _transformers,
    "ollama": _ollama,
    "remote": _remote,
}


@pytest.fixture(scope="module", params=list(ENGINES))
def subject(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject]:
    with ExitStack() as stack:
        spec, engine = ENGINES[request.param](stack, tmp_path_factory.mktemp("engine"), request)
        manager = stack.enter_context(EngineManager())
        run_id = manager.start(spec, LaunchOptions(n_ctx=1024, n_threads=2), engine)
        manager.wait_ready(run_id, 300)
        info = manager.info(run_id)
        assert info.state.value == "ready", info.error
        yield Subject(manager, run_id, engine)


def reply(subject: Subject, params: Params, on_delta: Callable[[], None] | None = None) -> tuple[str, Done]:
    return collect(subject.manager.submit(subject.run_id, ASK, params), on_delta)


def collect(handle: RequestHandle, on_delta: Callable[[], None] | None = None) -> tuple[str, Done]:
    """The reply's text and its Done, checking every event before it is a non-empty Delta."""
    events: list[StreamEvent] = []
    for event in handle:
        events.append(event)
        if isinstance(event, Delta) and on_delta is not None:
            on_delta()
    done = events[-1]
    assert isinstance(done, Done), done
    assert all(isinstance(e, Delta) and e.text for e in events[:-1])
    return "".join(e.text for e in events[:-1] if isinstance(e, Delta)), done


@pytest.mark.real_model
def test_streaming_with_usage(subject: Subject) -> None:
    text, done = reply(subject, Params(temperature=0, max_tokens=12))
    assert text.strip()
    assert done.finish_reason in ("stop", "length") and 0 < done.usage.completion_tokens <= 12
    assert done.metrics is not None and done.metrics.ttft_ms >= 0


@pytest.mark.real_model
def test_a_stop_sequence_ends_the_reply_just_before_it(subject: Subject) -> None:
    full, _ = reply(subject, Params(temperature=0, max_tokens=16))
    middle = len(full) // 2
    stop = full[middle : middle + 3]
    assert stop.strip(), full
    text, done = reply(subject, Params(temperature=0, max_tokens=16, stop=(stop,)))
    assert text == full[: full.find(stop)]
    assert done.finish_reason == "stop"


def count_deltas_after_stop(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> list[Delta]:
    """Deltas the engine itself yields while its cancel event is set, seen between the engine and the manager
    (before the manager's coalescing merges them); the list fills as the request runs."""
    after: list[Delta] = []
    real_chat = engine.chat

    def chat(
        messages: Sequence[ChatMessage], params: Params, cancel: threading.Event, session: str | None = None
    ) -> Iterator[StreamEvent]:
        for event in real_chat(messages, params, cancel, session):
            if isinstance(event, Delta) and cancel.is_set():
                after.append(event)
            yield event

    monkeypatch.setattr(engine, "chat", chat)
    return after


@pytest.mark.real_model
def test_cancel_ends_the_reply_within_a_token_of_the_stop(subject: Subject, monkeypatch: pytest.MonkeyPatch) -> None:
    after_stop = count_deltas_after_stop(monkeypatch, subject.engine)
    cancelled = threading.Event()
    handle = subject.manager.submit(subject.run_id, ASK, Params(temperature=0, max_tokens=300))
    final: StreamEvent | None = None
    for event in handle:
        if isinstance(event, Delta):
            if not cancelled.is_set():
                cancelled.set()
                handle.cancel()
        else:
            final = event
    assert isinstance(final, Done) and final.finish_reason == "cancelled"
    # Once Stop is pressed the engine yields at most the token it was making and the text it held back (a
    # possible stop sequence or half a character), however long the consumer took to press it.
    assert len(after_stop) <= 2, after_stop
    assert final.usage.completion_tokens < 300


@pytest.mark.real_model
def test_what_the_engine_cannot_do_is_refused_by_name(subject: Subject) -> None:
    engine = subject.engine
    refused = 0
    if not engine.supports(Capability.JSON_SCHEMA):
        with pytest.raises(CapabilityNotSupported, match=f"the {engine.name} engine does not support json_schema"):
            subject.manager.submit(subject.run_id, ASK, Params(json_schema='{"type": "object"}'))
        refused += 1
    if not engine.supports(Capability.VISION):
        image = [ChatMessage("user", "what is this?", (b"\x89PNG\r\n\x1a\n",))]
        with pytest.raises(CapabilityNotSupported, match=f"the {engine.name} engine does not support vision"):
            subject.manager.submit(subject.run_id, image, Params())
        refused += 1
    if not engine.supports(Capability.EMBED):
        with pytest.raises(CapabilityNotSupported, match=f"the {engine.name} engine does not support embed"):
            subject.manager.embed(subject.run_id, ["x"])
        refused += 1
    else:
        job = subject.manager.embed(subject.run_id, ["a red apple", "a green pear"])
        assert job.vectors is not None and len(job.vectors) == 2 and len(job.vectors[0]) > 0
    checked = (Capability.JSON_SCHEMA, Capability.VISION, Capability.EMBED)
    assert refused == sum(not engine.supports(c) for c in checked)


PROMPT = "The three primary colours are"


def completion(subject: Subject, params: Params) -> tuple[str, Done]:
    return collect(subject.manager.complete(subject.run_id, PROMPT, params))


@pytest.mark.real_model
def test_raw_completion_streams_and_stops_like_chat_or_is_refused_by_name(subject: Subject) -> None:
    engine = subject.engine
    if not engine.supports(Capability.COMPLETION):
        with pytest.raises(CapabilityNotSupported, match=f"the {engine.name} engine does not support completion"):
            subject.manager.complete(subject.run_id, PROMPT, Params())
        return
    full, done = completion(subject, Params(temperature=0, max_tokens=12))
    assert full.strip() and 0 < done.usage.completion_tokens <= 12
    assert done.metrics is not None and done.metrics.ttft_ms >= 0
    middle = len(full) // 2
    stop = full[middle : middle + 3]
    assert stop.strip(), full
    text, done = completion(subject, Params(temperature=0, max_tokens=12, stop=(stop,)))
    assert text == full[: full.find(stop)] and done.finish_reason == "stop"
