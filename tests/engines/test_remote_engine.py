"""The remote (OpenAI-compatible) engine against a fake server on 127.0.0.1: streaming, parameters, faults."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import pytest

from engines.adapters.remote import RemoteEngine, list_models
from engines.errors import BadRequest, InstanceNotReady, ModelNotFound, RemoteEndpointError
from engines.secret import Secret
from engines.types import (
    Capability,
    ChatMessage,
    Delta,
    Done,
    Error,
    LaunchOptions,
    ModelSpec,
    Params,
    StreamEvent,
    Usage,
)
from tests.engines.fake_openai import FakeOpenAI, Reply, echo_pieces, fake_vector, prompt_tokens
from tests.engines.stop_when_held import PATIENCE_S, StopWhenHeld

KEY = "sk-test-0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
HELLO = [ChatMessage("system", "Be brief."), ChatMessage("user", "hello there world")]


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the environment may come between the client and the fake server."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def spec_for(endpoint: str, name: str = "fake-model", key: str | None = None) -> ModelSpec:
    return ModelSpec(
        id=f"remote:test/{name}",
        format="remote",
        engines=("remote",),
        endpoint=endpoint,
        served_name=name,
        api_key=Secret(key) if key is not None else None,
    )


def loaded(fake: FakeOpenAI, key: str | None = None, **kwargs: Any) -> RemoteEngine:
    engine = RemoteEngine(retry_backoff_s=0.01, **kwargs)
    engine.load(spec_for(fake.endpoint, key=key), LaunchOptions())
    return engine


def run(
    engine: RemoteEngine,
    messages: list[ChatMessage] = HELLO,
    params: Params | None = None,
    cancel: threading.Event | None = None,
) -> list[StreamEvent]:
    return list(engine.chat(messages, params or Params(), cancel or threading.Event()))


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- identity and load ------------------------------------------------------------------------------------------


def test_declares_what_an_openai_server_can_do() -> None:
    engine = RemoteEngine()
    assert engine.name == "remote" and engine.formats == ("remote",)
    for cap in (Capability.CHAT, Capability.STREAM, Capability.EMBED, Capability.VISION, Capability.JSON_SCHEMA):
        assert engine.supports(cap)
    assert not engine.supports(Capability.LORA)
    footprint = engine.footprint()
    assert footprint.ram_bytes is None and footprint.vram_bytes is None


def test_load_checks_the_model_list_and_sends_the_key(fake: FakeOpenAI) -> None:
    fake.api_key = KEY
    engine = loaded(fake, key=KEY)
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/v1/models")]
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(engine) and KEY not in repr(engine.spec)
    assert list_models(fake.endpoint, Secret(KEY)) == ["fake-model"]
    client = engine._link.client if engine._link else None
    engine.unload()
    assert client is not None and client.is_closed  # no pool kept open once unloaded
    engine.unload()  # twice is fine
    with pytest.raises(InstanceNotReady):
        run(engine)


def test_unknown_model_names_the_models_the_server_has() -> None:
    models = tuple(f"org/model-{i}" for i in range(8))
    with FakeOpenAI(models) as fake, pytest.raises(ModelNotFound) as info:
        RemoteEngine().load(spec_for(fake.endpoint, "org/other"), LaunchOptions())
    text = str(info.value)
    assert "'org/other'" in text and "org/model-0" in text and "org/model-4" in text and "and 3 more" in text
    assert "org/model-5" not in text


def test_unreachable_server_is_one_clear_line_after_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}/v1"
    real_send = httpx.Client.send
    attempts: list[float] = []

    def counted_send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        attempts.append(time.monotonic())
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", counted_send)
    engine = RemoteEngine(connect_retries=2, retry_backoff_s=0.05)
    with pytest.raises(RemoteEndpointError) as info:
        engine.load(spec_for(endpoint, key=KEY), LaunchOptions())
    text = str(info.value)
    assert text.startswith(f"cannot reach {endpoint}: ") and "\n" not in text and KEY not in text
    # Tried once and retried twice, then given up (no endless retrying), each retry after its doubling backoff
    # (lower bounds only: a busy machine makes the pauses longer, never shorter).
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.05 and attempts[2] - attempts[1] >= 0.1


def test_connect_errors_are_retried_then_the_request_goes_through(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_send = httpx.Client.send
    attempts: list[str] = []

    def flaky_send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        attempts.append(request.url.path)
        if len(attempts) <= 2:
            raise httpx.ConnectError("connection refused", request=request)
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", flaky_send)
    loaded(fake)
    assert attempts == ["/v1/models"] * 3
    assert len(fake.requests) == 1
    attempts.clear()
    with pytest.raises(RemoteEndpointError, match="cannot reach"):
        loaded(fake, connect_retries=1)
    assert len(attempts) == 2


def test_a_base_url_without_the_api_root_is_explained(fake: FakeOpenAI) -> None:
    with pytest.raises(RemoteEndpointError, match="is this the API root"):
        RemoteEngine().load(spec_for(fake.endpoint.removesuffix("/v1")), LaunchOptions())


def test_model_list_failure_says_the_status() -> None:
    with FakeOpenAI(models_status=503) as fake, pytest.raises(RemoteEndpointError, match="HTTP 503"):
        loaded(fake)


# -- the key ----------------------------------------------------------------------------------------------------


def test_refused_key_is_reported_without_the_key(fake: FakeOpenAI) -> None:
    fake.api_key = "the-right-key"
    with pytest.raises(RemoteEndpointError) as info:
        loaded(fake, key=KEY)  # the fake's 401 quotes the key it got
    assert "refused the API key (HTTP 401)" in str(info.value) and KEY not in str(info.value)
    with pytest.raises(RemoteEndpointError, match=r"wants an API key .* none is set"):
        loaded(fake)


def test_server_errors_carry_status_and_message_but_never_the_key(fake: FakeOpenAI) -> None:
    fake.api_key = KEY
    engine = loaded(fake, key=KEY)
    fake.replies += [
        Reply(status=500, message=f"engine crashed while serving Bearer {KEY}"),
        Reply(status=429, message="too many requests, slow down"),
        Reply(status=400, message="max_tokens is too large: 99999"),
    ]
    with pytest.raises(RemoteEndpointError) as info:
        run(engine)
    assert "HTTP 500" in str(info.value) and "engine crashed" in str(info.value) and KEY not in str(info.value)
    with pytest.raises(RemoteEndpointError, match="HTTP 429: too many requests"):
        run(engine)
    with pytest.raises(BadRequest, match="rejected the request: max_tokens is too large"):
        run(engine)
    assert len(fake.chat_bodies()) == 3  # each tried once: errors after the request was accepted are not retried


def test_a_model_the_server_no_longer_has_is_model_not_found(fake: FakeOpenAI) -> None:
    engine = loaded(fake)
    fake.models = ("another-model",)
    with pytest.raises(ModelNotFound, match="does not exist"):
        run(engine)


# -- streaming --------------------------------------------------------------------------------------------------


def test_deltas_reassemble_the_reply_and_usage_comes_from_the_usage_chunk(fake: FakeOpenAI) -> None:
    events = run(loaded(fake))
    deltas = [e for e in events if isinstance(e, Delta)]
    assert [d.text for d in deltas] == list(echo_pieces("hello there world"))
    assert text_of(events) == "Echo: hello there world"
    body = fake.chat_bodies()[0]
    assert events[-1] == Done(Usage(prompt_tokens(body["messages"]), 4), "stop")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "fake-model"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello there world"},
    ]
    assert fake.requests[-1].headers["accept"].startswith("text/event-stream")


def test_max_tokens_gives_finish_length(fake: FakeOpenAI) -> None:
    events = run(loaded(fake), params=Params(max_tokens=2))
    assert text_of(events) == "Echo: hello"
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "length"
    assert events[-1].usage.completion_tokens == 2


def test_without_a_usage_chunk_completion_tokens_are_the_deltas(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(pieces=("a", "b", "c"), usage=False))
    # The prompt's size is estimated (26 characters / 4, plus 4 a message for the template), marked as such.
    assert run(loaded(fake))[-1] == Done(Usage(16, 3, estimated=True), "stop")


def test_keepalives_and_data_lines_split_across_writes(fake: FakeOpenAI) -> None:
    pieces = ("Grüße", ", ", "wörld", " ✓", "!")
    fake.replies.append(Reply(pieces=pieces, keepalive=True, split=True))
    events = run(loaded(fake))
    assert text_of(events) == "".join(pieces)
    assert events[-1] == Done(Usage(prompt_tokens(fake.chat_bodies()[0]["messages"]), 5), "stop")


def test_parameters_are_mapped_to_the_request(fake: FakeOpenAI) -> None:
    engine = loaded(fake)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    params = Params(
        temperature=0.3,
        top_p=0.9,
        top_k=0,
        repetition_penalty=1.1,
        max_tokens=50,
        stop=("</s>", "END"),
        seed=7,
        json_schema=json.dumps(schema),
    )
    run(engine, params=params)
    run(engine)
    full, plain = fake.chat_bodies()
    assert full["temperature"] == 0.3 and full["top_p"] == 0.9 and full["max_tokens"] == 50 and full["seed"] == 7
    assert full["stop"] == ["</s>", "END"]
    assert full["top_k"] == 0
    assert full["repetition_penalty"] == 1.1
    assert full["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": schema, "strict": True},
    }
    for key in ("temperature", "top_p", "top_k", "repetition_penalty", "max_tokens", "seed", "stop", "response_format"):
        assert key not in plain


def test_images_become_data_url_parts_with_their_type(fake: FakeOpenAI) -> None:
    engine = loaded(fake)
    run(engine, [ChatMessage("user", "what is this", images=(PNG, JPEG))])
    content = fake.chat_bodies()[0]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "what is this"}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")
    assert content[2]["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/")
    assert [p["type"] for p in content] == ["text", "image_url", "image_url"]
    with pytest.raises(BadRequest, match=r"image 1 .* not a PNG"):
        run(engine, [ChatMessage("user", "and this?", images=(b"plain text",))])


def test_stop_sequences_are_cut_client_side_when_the_server_ignores_them(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(pieces=("The", " answer", " is", " 4", "<", "/s", ">", " and", " more")))
    events = run(loaded(fake), params=Params(stop=("</s>",)))
    assert text_of(events) == "The answer is 4"
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "stop"
    assert fake.chat_bodies()[0]["stop"] == ["</s>"]


def test_a_held_back_stop_prefix_is_shown_when_no_stop_follows(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(pieces=("a <", "/")))
    assert text_of(run(loaded(fake), params=Params(stop=("</s>",)))) == "a </"


# -- cancel and faults ------------------------------------------------------------------------------------------


def test_cancel_while_the_server_is_silent_hangs_up(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(pieces=("one", " two", " three", " four"), hold_after=2))
    stop = StopWhenHeld(fake)
    events: list[StreamEvent] = []
    for event in loaded(fake).chat(HELLO, Params(), stop.cancel):
        events.append(event)
        if len(events) == 2:  # Stop pressed while the client waits on a server that sends nothing
            stop.start()
    # The server saw the client hang up while it still held the answer: Stop did not wait for the server to speak
    # (or for the 300 s read timeout), and the server can stop generating.
    assert stop.hung_up()
    assert text_of(events) == "one two"
    assert events[-1] == Done(Usage(16, 2, estimated=True), "cancelled")  # the usage chunk never came: estimated


def test_cancel_between_chunks_ends_at_once(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(pieces=tuple(f" w{i}" for i in range(200)), delay_s=0.005))
    cancel = threading.Event()
    events: list[StreamEvent] = []
    for event in loaded(fake).chat(HELLO, Params(), cancel):
        events.append(event)
        cancel.set()
    assert [type(e) for e in events] == [Delta, Done]
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "cancelled"
    assert fake.disconnected.wait(PATIENCE_S)


def test_a_cancel_set_before_the_request_sends_nothing(fake: FakeOpenAI) -> None:
    cancel = threading.Event()
    cancel.set()
    assert run(loaded(fake), cancel=cancel) == [Done(Usage(), "cancelled")]
    assert fake.chat_bodies() == []


@pytest.mark.parametrize("style", ["data", "event"])
def test_an_error_event_mid_stream_ends_in_error_after_the_deltas(
    fake: FakeOpenAI, style: Literal["data", "event"]
) -> None:
    fake.replies.append(Reply(pieces=("one", " two", " three"), error_after=2, error_style=style, message="CUDA OOM"))
    events = run(loaded(fake))
    assert [type(e) for e in events] == [Delta, Delta, Error]
    assert isinstance(events[-1], Error) and "CUDA OOM" in events[-1].message


def test_a_dropped_connection_is_an_error_event_and_not_retried(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(pieces=("one", " two", " three"), drop_after=2))
    events = run(loaded(fake))
    assert text_of(events) == "one two"
    assert isinstance(events[-1], Error)
    assert events[-1].message.startswith(f"connection to {fake.endpoint} lost mid-reply: ")
    assert len(fake.chat_bodies()) == 1


def test_a_silent_server_times_out_into_an_error(fake: FakeOpenAI) -> None:
    fake.replies.append(Reply(pieces=("one", " two"), hold_after=1))
    events = run(loaded(fake, read_timeout_s=0.3))
    assert text_of(events) == "one"
    assert isinstance(events[-1], Error) and "sent nothing for 0.3 s" in events[-1].message
    fake.release()


# -- embeddings -------------------------------------------------------------------------------------------------


def test_embeddings_come_back_in_input_order(fake: FakeOpenAI) -> None:
    engine = loaded(fake)
    texts = ["a", "bbb", "cc"]
    assert engine.embed(texts) == [fake_vector(t) for t in texts]  # the fake lists them in reverse
    assert fake.requests[-1].body == {"model": "fake-model", "input": texts}
    assert engine.embed([]) == []


def test_raw_completions_stream_from_the_completions_endpoint() -> None:
    import threading

    from engines.adapters.remote import RemoteEngine
    from engines.types import Capability, Delta, Done, LaunchOptions, ModelSpec, Params
    from tests.engines.fake_openai import FakeOpenAI, Reply

    with FakeOpenAI(models=("m",), replies=[Reply(pieces=("Once", " upon", " a", " time"))]) as fake:
        engine = RemoteEngine()
        engine.load(ModelSpec(id="m", format="remote", endpoint=fake.endpoint, served_name="m"), LaunchOptions())
        try:
            events = list(engine.complete("Tell me a story:", Params(max_tokens=8, stop=(" a",)), threading.Event()))
        finally:
            engine.unload()
        body = next(r.body for r in fake.requests if r.path == "/v1/completions")
    assert engine.supports(Capability.COMPLETION)
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "Once upon"
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "stop"
    assert body["prompt"] == "Tell me a story:" and "messages" not in body and body["max_tokens"] == 8


def test_engines_without_raw_completion_say_so() -> None:
    import threading

    from engines.adapters.fake import FakeEngine
    from engines.errors import CapabilityNotSupported
    from engines.types import Params

    class ChatOnly(FakeEngine):
        capabilities = Capability.CHAT | Capability.STREAM

    with pytest.raises(CapabilityNotSupported, match="the fake engine does not support completion"):
        next(iter(ChatOnly().complete("x", Params(), threading.Event())))
