"""RemoteEngine.score_choices against the fake OpenAI-compatible server on 127.0.0.1: `/completions` top
log-probabilities in both shapes, a server without them, and malformed or oversized answers."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator

import pytest

from engines.adapters.remote import RemoteEngine
from engines.errors import BadRequest, Cancelled, CapabilityNotSupported, RemoteEndpointError
from engines.types import Capability, LaunchOptions, ModelSpec
from tests.engines.fake_openai import FakeOpenAI, Reply

LETTERS = (" A", " B", " C", " D")
PROMPT = "Question: 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def loaded(fake: FakeOpenAI) -> RemoteEngine:
    engine = RemoteEngine(retry_backoff_s=0.01)
    spec = ModelSpec(
        id="remote:test/fake-model",
        format="remote",
        engines=("remote",),
        endpoint=fake.endpoint,
        served_name="fake-model",
    )
    engine.load(spec, LaunchOptions())
    return engine


def score(fake: FakeOpenAI, reply: Reply, choices: tuple[str, ...] = LETTERS) -> list[float]:
    fake.replies.append(reply)
    engine = loaded(fake)
    try:
        return engine.score_choices(PROMPT, choices, threading.Event())
    finally:
        engine.unload()


def test_legacy_top_logprobs(fake: FakeOpenAI) -> None:
    top = {" B": -0.25, "B": -2.0, "A": -1.5, " C": -3.0, "\n": -4.0}
    logprobs = {"tokens": [" B"], "token_logprobs": [-0.25], "top_logprobs": [top], "text_offset": [0]}
    got = score(fake, Reply(pieces=(" B",), logprobs=logprobs))
    # " A" is only listed without its space; " D" is not listed at all
    assert got == [-1.5, -0.25, -3.0, -math.inf]
    body = fake.requests[-1].body
    assert fake.requests[-1].path == "/v1/completions"
    assert body == {"model": "fake-model", "prompt": PROMPT, "max_tokens": 1, "temperature": 0, "logprobs": 20}


def test_newer_content_shape(fake: FakeOpenAI) -> None:
    entries = [{"token": "C", "logprob": -0.1, "bytes": [67]}, {"token": " A", "logprob": -2.5, "bytes": [32, 65]}]
    logprobs = {"content": [{"token": "C", "logprob": -0.1, "top_logprobs": entries}]}
    got = score(fake, Reply(pieces=("C",), logprobs=logprobs))
    assert got == [-2.5, -math.inf, -0.1, -math.inf]


def test_no_logprobs_is_not_supported(fake: FakeOpenAI) -> None:
    engine = loaded(fake)
    assert engine.supports(Capability.SCORE)
    engine.unload()
    with pytest.raises(CapabilityNotSupported, match="returned no log-probabilities; evaluation falls back"):
        score(fake, Reply(pieces=(" B",), logprobs=None))
    with pytest.raises(CapabilityNotSupported, match="HTTP 404"):
        score(fake, Reply(status=404, message="no such route"))
    with pytest.raises(CapabilityNotSupported, match="logprobs is not supported"):
        score(fake, Reply(status=400, message="logprobs is not supported"))
    with pytest.raises(BadRequest, match="maximum context length"):  # the prompt's fault, not the server's
        score(fake, Reply(status=400, message="This model's maximum context length is 2048 tokens"))


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"not json", "not JSON"),
        (json.dumps({"choices": []}).encode(), "without choices"),
        (json.dumps({"choices": [{"logprobs": {"top_logprobs": [{" A": "high"}]}}]}).encode(), "malformed"),
        (json.dumps({"choices": [{"logprobs": {"top_logprobs": [{" A": 3.5}]}}]}).encode(), "not one"),
        (json.dumps({"choices": [{"logprobs": "yes"}]}).encode(), "malformed"),
        (b'{"choices": [{"logprobs": {"top_logprobs": [{"' + b"x" * (1100 * 1024) + b'": -1}]}}]}', "over 1024 KiB"),
    ],
)
def test_bad_answers_are_clear_errors(fake: FakeOpenAI, raw: bytes, words: str) -> None:
    with pytest.raises(RemoteEndpointError, match=words):
        score(fake, Reply(raw_body=raw))


def test_cancel_and_empty(fake: FakeOpenAI) -> None:
    engine = loaded(fake)
    cancel = threading.Event()
    cancel.set()
    try:
        with pytest.raises(Cancelled):
            engine.score_choices(PROMPT, LETTERS, cancel)
        with pytest.raises(BadRequest):
            engine.score_choices(PROMPT, (), threading.Event())
    finally:
        engine.unload()
    assert not [r for r in fake.requests if r.path == "/v1/completions"]
