"""The Ollama engine with the real `ollama` client against a fake daemon on 127.0.0.1."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import ollama
import pytest

from engines.adapters.ollama_engine import OllamaEngine, running_models
from engines.errors import BadRequest, EngineUnavailable, InstanceNotReady, ModelNotFound, RemoteEndpointError
from engines.types import (
    Capability,
    ChatMessage,
    Delta,
    Done,
    Error,
    Footprint,
    LaunchOptions,
    ModelSpec,
    Params,
    StreamEvent,
    Usage,
)
from tests.engines.fake_ollama import ChatReply, FakeOllama, echo_pieces, fake_vector
from tests.engines.stop_when_held import PATIENCE_S, StopWhenHeld

MODEL = "qwen2.5:0.5b"
PROMPT = (2 + 4) + (3 + 4)  # the fake's prompt count for HELLO: words + 4 per message
GUESS = (3 + 4) + (5 + 4)  # our estimate for HELLO when the daemon never counts: characters / 4 + 4 per message
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))  # not valid UTF-8: must travel as base64
HELLO = [ChatMessage("system", "Be brief."), ChatMessage("user", "hello there world")]


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or API key from the environment may reach the client."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "OLLAMA_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


def spec_for(host: str, name: str = MODEL, stop: tuple[str, ...] = ()) -> ModelSpec:
    return ModelSpec(
        id=f"ollama:{name}", format="ollama", engines=("ollama",), endpoint=host, served_name=name, stop=stop
    )


def loaded(
    fake: FakeOllama,
    *replies: ChatReply,
    options: LaunchOptions | None = None,
    spec: ModelSpec | None = None,
    **kw: Any,
) -> OllamaEngine:
    if MODEL not in fake.models:
        fake.serve(MODEL, *replies, ram=7000, vram=5000)
    engine = OllamaEngine(**kw)
    engine.load(spec or spec_for(fake.host), options or LaunchOptions())
    return engine


def run(
    engine: OllamaEngine,
    messages: list[ChatMessage] = HELLO,
    params: Params | None = None,
    cancel: threading.Event | None = None,
) -> list[StreamEvent]:
    return list(engine.chat(messages, params or Params(), cancel or threading.Event()))


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


def posts(fake: FakeOllama, path: str) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.method == "POST" and r.path == path]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- load, memory, unload ---------------------------------------------------------------------------------------


def test_declares_what_ollama_can_do() -> None:
    engine = OllamaEngine()
    assert engine.name == "ollama" and engine.formats == ("ollama",)
    for cap in (Capability.CHAT, Capability.STREAM, Capability.EMBED, Capability.VISION, Capability.JSON_SCHEMA):
        assert engine.supports(cap)
    assert not engine.supports(Capability.LORA)


def test_load_checks_the_model_then_warms_it_with_the_context_size(fake: FakeOllama) -> None:
    engine = loaded(fake, options=LaunchOptions(n_ctx=2048, n_threads=3), keep_alive="10m")
    assert engine.model == MODEL and engine.host == fake.host
    assert posts(fake, "/api/show") == [{"model": MODEL}]
    warm = {"model": MODEL, "stream": False, "options": {"num_ctx": 2048, "num_thread": 3}, "keep_alive": "10m"}
    assert posts(fake, "/api/generate") == [warm]
    assert fake.loaded[MODEL]["context_length"] == 2048


def test_footprint_and_vram_come_from_ps(fake: FakeOllama) -> None:
    engine = loaded(fake)
    assert engine.footprint() == Footprint(ram_bytes=2000, vram_bytes=5000)
    assert engine.vram_in_use() == 5000
    [running] = running_models(fake.host)
    assert (running.name, running.size_bytes, running.vram_bytes) == (MODEL, 7000, 5000)
    assert running.expires_at is not None and running.expires_at > datetime.now(UTC)
    fake.loaded.clear()  # the daemon let it go (its keep_alive ran out)
    assert engine.footprint() == Footprint() and engine.vram_in_use() is None


def test_without_warming_nothing_is_loaded_until_the_first_chat(fake: FakeOllama) -> None:
    engine = loaded(fake, warm=False)
    assert posts(fake, "/api/generate") == [] and engine.footprint() == Footprint()
    run(engine)
    assert engine.vram_in_use() == 5000


def test_a_name_without_tag_gets_latest(fake: FakeOllama) -> None:
    fake.serve("llama3.2")
    engine = OllamaEngine()
    engine.load(ModelSpec(id="ollama:llama3.2", format="ollama", endpoint=fake.host), LaunchOptions())
    assert engine.model == "llama3.2:latest" and [m.name for m in running_models(fake.host)] == ["llama3.2:latest"]


def test_unknown_model_says_how_to_pull_it(fake: FakeOllama) -> None:
    with pytest.raises(ModelNotFound) as caught:
        OllamaEngine().load(spec_for(fake.host, "nosuch:7b"), LaunchOptions())
    text = str(caught.value)
    assert "`llm-tui models pull ollama:nosuch:7b`" in text and "`ollama pull nosuch:7b`" in text
    assert "model 'nosuch:7b' not found" in text and "\n" not in text
    assert posts(fake, "/api/generate") == []


def test_daemon_down_is_one_line_saying_how_to_start_it() -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    expected = f"cannot reach Ollama at {host}: is `ollama serve` running?"
    with pytest.raises(RemoteEndpointError) as caught:
        OllamaEngine().load(spec_for(host), LaunchOptions())
    assert str(caught.value) == expected
    with pytest.raises(RemoteEndpointError) as listing:
        running_models(host)
    assert str(listing.value) == expected


def test_a_model_the_daemon_cannot_load_fails_the_load_with_its_words(fake: FakeOllama) -> None:
    text = "model requires more system memory (5.1 GiB) than is available (2.0 GiB)"
    fake.serve(MODEL, load_error=text)
    with pytest.raises(RemoteEndpointError) as caught:
        OllamaEngine().load(spec_for(fake.host), LaunchOptions())
    assert str(caught.value) == f"ollama: {text}"


def test_a_malformed_name_is_refused_before_any_request(fake: FakeOllama) -> None:
    with pytest.raises(BadRequest, match="invalid Ollama model name"):
        OllamaEngine().load(spec_for(fake.host, "bad name"), LaunchOptions())
    assert fake.requests == []


def test_unload_sends_keep_alive_0_and_the_model_leaves_ps(fake: FakeOllama) -> None:
    engine = loaded(fake)
    assert [m.name for m in running_models(fake.host)] == [MODEL]
    engine.unload()
    engine.unload()
    unloads = [b for b in posts(fake, "/api/generate") if "keep_alive" in b]
    assert unloads == [{"model": MODEL, "stream": False, "keep_alive": 0}]
    assert running_models(fake.host) == [] and engine.footprint() == Footprint()
    with pytest.raises(InstanceNotReady):
        run(engine)
    with pytest.raises(InstanceNotReady):
        engine.embed(["x"])


def test_unload_when_the_daemon_is_gone_is_fine() -> None:
    with FakeOllama() as fake:
        engine = loaded(fake)
    engine.unload()
    engine.unload()


# -- chat -------------------------------------------------------------------------------------------------------


def test_deltas_reassemble_the_reply_with_the_daemon_counts(fake: FakeOllama) -> None:
    engine = loaded(fake, ChatReply(pieces=("Hi", " there", "!"), prompt_eval_count=42))
    events = run(engine)
    assert events == [Delta("Hi"), Delta(" there"), Delta("!"), Done(Usage(42, 3), "stop")]
    events = run(engine)  # then the echo
    assert text_of(events) == "".join(echo_pieces("hello there world"))
    assert events[-1] == Done(Usage(PROMPT, 4), "stop")


def test_done_reason_length_maps_to_length(fake: FakeOllama) -> None:
    engine = loaded(fake, ChatReply(pieces=("a", "b"), done_reason="length"))
    assert run(engine)[-1] == Done(Usage(PROMPT, 2), "length")
    events = run(engine, params=Params(max_tokens=2))  # the daemon honours num_predict
    assert text_of(events) == "Echo: hello" and events[-1] == Done(Usage(PROMPT, 2), "length")


def test_parameters_are_mapped_to_options(fake: FakeOllama) -> None:
    spec = spec_for(fake.host, stop=("<|im_end|>",))
    engine = loaded(fake, options=LaunchOptions(n_ctx=8192, seed=7), spec=spec, keep_alive=-1)
    params = Params(
        temperature=0.2,
        top_p=0.9,
        top_k=20,
        repetition_penalty=1.1,
        max_tokens=50,
        stop=("END",),
        seed=123,
        json_schema='{"type": "object", "properties": {"a": {"type": "integer"}}}',
    )
    messages = [ChatMessage("system", "sys"), ChatMessage("user", "look", images=(PNG,))]
    assert isinstance(run(engine, messages, params)[-1], Done)
    [body] = posts(fake, "/api/chat")
    assert body["options"] == {
        "num_ctx": 8192,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 20,
        "repeat_penalty": 1.1,
        "num_predict": 50,
        "seed": 123,
        "stop": ["END", "<|im_end|>"],
    }
    assert body["format"] == {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert body["stream"] is True and body["keep_alive"] == -1
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "look", "images": [base64.b64encode(PNG).decode()]},
    ]
    run(engine)  # the launch's seed when the request has none; nothing else unless asked for
    body = posts(fake, "/api/chat")[1]
    assert body["options"] == {"num_ctx": 8192, "seed": 7, "stop": ["<|im_end|>"]} and "format" not in body


def test_a_file_that_is_not_an_image_is_refused_before_sending(fake: FakeOllama) -> None:
    engine = loaded(fake)
    with pytest.raises(BadRequest, match="image 1 of a user message"):
        run(engine, [ChatMessage("user", "x", images=(b"not an image",))])
    with pytest.raises(BadRequest, match="temperature"):
        run(engine, params=Params(temperature=9.0))
    assert posts(fake, "/api/chat") == []


def test_stop_sequences_are_cut_client_side(fake: FakeOllama) -> None:
    reply = ChatReply(pieces=("Hello", " wor", "ld<|e", "nd|> and", " more"))
    engine = loaded(fake, reply, reply)
    events = run(engine, params=Params(stop=("<|end|>",)))
    assert events == [Delta("Hello"), Delta(" wor"), Delta("ld"), Done(Usage(GUESS, 4, estimated=True), "stop")]
    events = run(engine, params=Params(stop=("<|end|>!",)))  # a held prefix that turns out not to be a stop
    assert text_of(events) == "Hello world<|end|> and more" and events[-1] == Done(Usage(PROMPT, 5), "stop")


def test_cancel_while_the_daemon_is_silent_mid_reply_hangs_up(fake: FakeOllama) -> None:
    engine = loaded(fake, ChatReply(pieces=("a", "b", "c", "d"), hold_after=2))
    stop = StopWhenHeld(fake)
    events: list[StreamEvent] = []
    for event in engine.chat(HELLO, Params(), stop.cancel):
        events.append(event)
        if len(events) == 2:  # Stop pressed while the client waits on a daemon that sends nothing
            stop.start()
    assert stop.hung_up()  # while the daemon still held the answer: Stop did not wait for it to speak again
    assert events == [Delta("a"), Delta("b"), Done(Usage(GUESS, 2, estimated=True), "cancelled")]


def test_cancel_while_the_daemon_loads_the_model_hangs_up(fake: FakeOllama) -> None:
    engine = loaded(fake, ChatReply(hold_after=0))  # no headers yet, as while the daemon loads a model
    stop = StopWhenHeld(fake).start()
    assert run(engine, cancel=stop.cancel) == [Done(Usage(GUESS, 0, estimated=True), "cancelled")]
    assert stop.hung_up()  # while the daemon still held the answer, before it sent even the headers


def test_cancel_between_lines_ends_at_once_and_hangs_up(fake: FakeOllama) -> None:
    engine = loaded(fake, ChatReply(pieces=tuple(f" w{i}" for i in range(500))))
    fake.delay = 0.002
    cancel = threading.Event()
    events: list[StreamEvent] = []
    for event in engine.chat(HELLO, Params(), cancel):
        events.append(event)
        if len(events) == 3:
            cancel.set()
    assert events == [Delta(" w0"), Delta(" w1"), Delta(" w2"), Done(Usage(GUESS, 3, estimated=True), "cancelled")]
    assert fake.disconnected.wait(PATIENCE_S)


def test_a_reply_left_unread_hangs_up(fake: FakeOllama) -> None:
    engine = loaded(fake, ChatReply(pieces=tuple(f" w{i}" for i in range(500))))
    fake.delay = 0.002
    events = engine.chat(HELLO, Params(), threading.Event())
    assert next(events) == Delta(" w0")
    events.close()  # the receiver went away without a Stop
    assert fake.disconnected.wait(PATIENCE_S)


def test_a_cancel_set_before_the_request_sends_nothing(fake: FakeOllama) -> None:
    engine = loaded(fake)
    cancel = threading.Event()
    cancel.set()
    assert run(engine, cancel=cancel) == [Done(Usage(), "cancelled")]
    assert posts(fake, "/api/chat") == []


def test_an_error_line_mid_stream_ends_in_error_after_the_deltas(fake: FakeOllama) -> None:
    engine = loaded(fake, ChatReply(pieces=("a", "b", "c"), error_after=2, error="CUDA error: out of memory"))
    events = run(engine)
    assert events == [Delta("a"), Delta("b"), Error("ollama: CUDA error: out of memory", "ollama")]


def test_a_held_stop_prefix_is_kept_before_an_error(fake: FakeOllama) -> None:
    engine = loaded(fake, ChatReply(pieces=("a", "b<"), error_after=2, error="boom"))
    assert run(engine, params=Params(stop=("<end>",))) == [
        Delta("a"),
        Delta("b"),
        Delta("<"),
        Error("ollama: boom", "ollama"),
    ]


def test_an_http_error_before_the_stream_is_an_error_event(fake: FakeOllama) -> None:
    text = "model requires more system memory (5.1 GiB) than is available (2.0 GiB)"
    engine = loaded(fake, ChatReply(status=500, error=text))
    assert run(engine) == [Error(f"ollama: {text}", "ollama")]


def test_a_model_removed_after_load_says_how_to_pull_it(fake: FakeOllama) -> None:
    engine = loaded(fake)
    fake.models[MODEL].pulled = False  # `ollama rm` behind our back
    [event] = run(engine)
    assert isinstance(event, Error) and "`ollama pull qwen2.5:0.5b`" in event.message


def test_a_dropped_connection_is_an_error_event(fake: FakeOllama) -> None:
    engine = loaded(fake, ChatReply(pieces=("a", "b", "c"), drop_after=2))
    events = run(engine)
    assert events[:2] == [Delta("a"), Delta("b")]
    [error] = events[2:]
    assert isinstance(error, Error) and error.message.startswith(f"the connection to Ollama at {fake.host} broke (")


def test_a_stream_ending_without_done_is_an_error(fake: FakeOllama) -> None:
    engine = loaded(fake, ChatReply(pieces=("a", "b"), end_after=1))
    assert run(engine) == [Delta("a"), Error(f"Ollama at {fake.host} ended the reply before it was complete", "ollama")]


def test_a_daemon_gone_after_load_is_an_error_event() -> None:
    with FakeOllama() as fake:
        engine = loaded(fake)
    assert run(engine) == [Error(f"cannot reach Ollama at {fake.host}: is `ollama serve` running?", "ollama")]


# -- embeddings -------------------------------------------------------------------------------------------------


def test_embeddings_come_back_in_order(fake: FakeOllama) -> None:
    engine = loaded(fake, options=LaunchOptions(n_ctx=1024))
    texts = ["abc", "hello world", "zzz"]
    assert engine.embed(texts) == [fake_vector(t) for t in texts]
    assert posts(fake, "/api/embed") == [{"model": MODEL, "input": texts, "options": {"num_ctx": 1024}}]
    assert engine.embed([]) == [] and len(posts(fake, "/api/embed")) == 1


def test_a_model_without_embeddings_is_a_bad_request(fake: FakeOllama) -> None:
    fake.serve(MODEL, embeds=False)
    engine = loaded(fake)
    with pytest.raises(BadRequest, match="ollama: this model does not support embeddings"):
        engine.embed(["x"])


# -- the fake and the package -----------------------------------------------------------------------------------


def test_fake_daemon_answers_like_ollama(fake: FakeOllama) -> None:
    fake.serve(MODEL, ChatReply(pieces=("x", "y")), ram=100, vram=60)
    with ollama.Client(host=fake.host) as client:
        assert client.show(MODEL).capabilities == ["completion", "embedding"]
        reply = client.chat(MODEL, [{"role": "user", "content": "hi"}])
        assert (reply.message.content, reply.done_reason, reply.eval_count) == ("xy", "stop", 2)
        lines = list(client.chat(MODEL, [{"role": "user", "content": "a b"}], stream=True))
        assert [p.message.content for p in lines] == ["Echo:", " a", " b", ""] and lines[-1].done
        [entry] = client.ps().models
        assert (entry.model, entry.size, entry.size_vram, entry.context_length) == (MODEL, 100, 60, 4096)
        assert client.generate(MODEL, keep_alive="0s").done_reason == "unload" and client.ps().models == []
        with pytest.raises(ollama.ResponseError) as caught:
            list(client.chat("nope", [], stream=True))
        assert caught.value.status_code == 404
        assert caught.value.error == 'model "nope" not found, try pulling it first'


def test_without_the_ollama_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ollama", None)
    with pytest.raises(EngineUnavailable, match="ollama"):
        OllamaEngine().load(spec_for("http://127.0.0.1:1"), LaunchOptions())
    code = "import sys; sys.modules['ollama'] = None; import engines.adapters.ollama_engine; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "ok"
