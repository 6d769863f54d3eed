"""The OpenAI-compatible API in-process over fake engines: shapes, errors, limits, keys, cancellation."""

from __future__ import annotations

import base64
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from engines.adapters.fake import FAIL_MARKER, FakeEngine
from engines.config.load import default_config
from engines.config.serve import ServeConfig
from engines.manager import EngineManager
from engines.types import Capability, Delta, InstanceState
from tests.engines.gguf_corpus import write_gguf
from tests.engines.server_fixture import Served, served

USER = [{"role": "user", "content": "hello there"}]


def client(s: Served, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=s.url, api_key=key, max_retries=0, timeout=30)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, object] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# --- replies ---------------------------------------------------------------------------------------------------


def test_models_lists_instances_by_model_id_and_run_id() -> None:
    with served() as s:
        models = client(s).models.list().data
        ids = [m.id for m in models]
        assert ids == ["tiny", s.run_ids["tiny"]]
        assert all(m.object == "model" and m.owned_by == "llm-tui" for m in models)
        assert client(s).models.retrieve("tiny").id == "tiny"
        with pytest.raises(openai.NotFoundError):
            client(s).models.retrieve("absent")


def test_chat_whole_reply_with_usage() -> None:
    with served() as s:
        reply = client(s).chat.completions.create(model="tiny", messages=USER)  # type: ignore[arg-type]
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == "Echo: hello there"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 3


def test_chat_stream_chunks_usage_and_done() -> None:
    with served() as s:
        chunks = list(
            client(s).chat.completions.create(
                model=s.run_ids["tiny"],
                messages=USER,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        with httpx.stream(
            "POST", f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER, "stream": True}
        ) as raw:
            lines = [line for line in raw.iter_lines() if line]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    assert not any('"usage"' in line for line in lines)  # only when asked for


def test_max_tokens_and_stop() -> None:
    with served({"tiny": FakeEngine(reply="one two three four five")}) as s:
        short = client(s).chat.completions.create(model="tiny", messages=USER, max_tokens=2)  # type: ignore[arg-type]
        cut = client(s).chat.completions.create(model="tiny", messages=USER, stop=[" three"])  # type: ignore[arg-type]
    assert short.choices[0].message.content == "one two" and short.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == "one two" and cut.choices[0].finish_reason == "stop"


def test_completions_whole_and_streamed() -> None:
    with served() as s:
        whole = client(s).completions.create(model="tiny", prompt="Once upon")
        parts = list(client(s).completions.create(model="tiny", prompt="Once upon", stream=True))
    assert whole.object == "text_completion" and whole.choices[0].text == "Echo: Once upon"
    assert "".join(p.choices[0].text for p in parts) == "Echo: Once upon"
    assert parts[-1].choices[0].finish_reason == "stop"


def test_completions_refused_by_an_engine_without_raw_completion() -> None:
    class ChatOnly(FakeEngine):
        capabilities = Capability.CHAT | Capability.STREAM

    with served({"chat-only": ChatOnly()}) as s:
        r = httpx.post(f"{s.url}/completions", json={"model": "chat-only", "prompt": "x"})
    assert r.status_code == 400
    assert error_of(r)["code"] == "capability_not_supported"
    assert "does not support completion" in str(error_of(r)["message"])


def test_embeddings_float_and_base64() -> None:
    with served() as s:
        by_sdk = client(s).embeddings.create(model="tiny", input=["abc", "zz"])  # the SDK asks for base64
        as_floats = httpx.post(
            f"{s.url}/embeddings", json={"model": "tiny", "input": "abc", "encoding_format": "float"}
        ).json()
    expected = [1.0, 1.0, 1.0] + [0.0] * 23
    assert by_sdk.data[0].embedding == expected and by_sdk.data[1].embedding[25] == 2.0
    assert as_floats["data"][0]["embedding"] == expected and as_floats["object"] == "list"
    packed = base64.b64encode(struct.pack("<26f", *expected)).decode()
    assert packed  # the wire form the SDK decodes


# --- errors in OpenAI's shape ------------------------------------------------------------------------------------


def test_unknown_model_is_404_naming_the_field() -> None:
    with served() as s:
        r = httpx.post(f"{s.url}/chat/completions", json={"model": "nope", "messages": USER})
        with pytest.raises(openai.NotFoundError):
            client(s).chat.completions.create(model="nope", messages=USER)  # type: ignore[arg-type]
    assert r.status_code == 404
    error = error_of(r)
    assert error["param"] == "model" and error["code"] == "model_not_found" and "'nope'" in str(error["message"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": 9}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 2}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"max_completion_tokens": 100_000}, "max_completion_tokens"),
        ({"stop": ["a", ""]}, "stop[1]"),
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"temperature": "hot"}, "temperature"),
        ({"tools": [{"type": "function", "function": {"name": "f g"}}]}, "tools[0].function.name"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_bad_parameters_are_400_naming_the_field(body: dict[str, object], param: str) -> None:
    with served() as s:
        r = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER, **body})
    assert r.status_code == 400, r.text
    assert error_of(r)["param"] == param
    assert error_of(r)["type"] == "invalid_request_error"


def test_bad_json_body_is_400() -> None:
    with served() as s:
        r = httpx.post(f"{s.url}/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_value"


def test_missing_capability_is_400() -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}
    with served() as s:
        schema = httpx.post(
            f"{s.url}/chat/completions",
            json={"model": "tiny", "messages": USER, "response_format": {"type": "json_object"}},
        )
        vision = httpx.post(
            f"{s.url}/chat/completions",
            json={"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, image]}]},
        )
    for r, what in ((schema, "json_schema"), (vision, "vision")):
        assert r.status_code == 400
        assert error_of(r)["code"] == "capability_not_supported" and what in str(error_of(r)["message"])


def test_engine_failure_is_500_whole_and_an_error_event_in_a_stream() -> None:
    failing = [{"role": "user", "content": f"{FAIL_MARKER} a b c d"}]
    with served() as s:
        whole = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": failing})
        with httpx.stream(
            "POST", f"{s.url}/chat/completions", json={"model": "tiny", "messages": failing, "stream": True}
        ) as raw:
            lines = [line for line in raw.iter_lines() if line]
        with pytest.raises(openai.APIError, match="fake engine failure"):
            list(client(s).chat.completions.create(model="tiny", messages=failing, stream=True))  # type: ignore[arg-type]
        wait_until(lambda: s.context.stats.snapshot()["errors"] == 3)  # the client may hang up before the count
    assert whole.status_code == 500 and error_of(whole)["type"] == "server_error"
    assert "fake engine failure" in str(error_of(whole)["message"])
    assert raw.status_code == 200  # the first token came before the failure
    assert json.loads(lines[-1].removeprefix("data: "))["error"]["type"] == "server_error"
    assert "data: [DONE]" not in lines  # a failed stream never claims to be complete


def test_unknown_route_is_404_in_openai_shape() -> None:
    with served() as s:
        r = httpx.get(f"{s.url}/nothing-here")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"


# --- keys, limits --------------------------------------------------------------------------------------------------


def test_api_key_required_when_set_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_tui.serve")
    keys = ServeConfig().with_keys("sk-first-key-123", "sk-second-key-456")
    with served(serve=keys) as s:
        base = s.url.removesuffix("/v1")
        with pytest.raises(openai.AuthenticationError):
            client(s, "sk-wrong-guess-789").models.list()
        missing = httpx.get(f"{s.url}/models")
        assert client(s, "sk-second-key-456").models.list().data[0].id == "tiny"
        health = httpx.get(f"{base}/healthz")
        metrics = httpx.get(f"{base}/metrics")
    assert missing.status_code == 401 and error_of(missing)["code"] == "invalid_api_key"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert metrics.status_code == 401  # instance details need the key
    logged = caplog.text
    assert "GET /v1/models 200" in logged and "key-2" in logged
    assert "sk-second-key-456" not in logged and "sk-first-key-123" not in logged and "sk-wrong-guess-789" not in logged


def test_rate_limit_per_key_is_429_with_retry_after() -> None:
    serve = ServeConfig(requests_per_minute=2).with_keys("k1", "k2")
    with served(serve=serve) as s:
        first = [httpx.get(f"{s.url}/models", headers={"Authorization": "Bearer k1"}) for _ in range(3)]
        other = httpx.get(f"{s.url}/models", headers={"Authorization": "Bearer k2"})
        with pytest.raises(openai.RateLimitError):
            client(s, "k1").models.list()
    assert [r.status_code for r in first] == [200, 200, 429]
    assert int(first[2].headers["retry-after"]) >= 1 and error_of(first[2])["code"] == "rate_limit_exceeded"
    assert other.status_code == 200  # each key has its own allowance


def test_body_size_limit_with_and_without_content_length() -> None:
    big = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    with served(serve=ServeConfig(max_body_bytes=2048)) as s:
        declared = httpx.post(f"{s.url}/chat/completions", content=big, headers={"content-type": "application/json"})
        chunked = httpx.post(
            f"{s.url}/chat/completions",
            content=iter([big[:1500], big[1500:]]),  # no Content-Length: counted as it arrives
            headers={"content-type": "application/json"},
        )
        fine = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER})
    assert declared.status_code == 413 and error_of(declared)["code"] == "body_too_large"
    assert chunked.status_code == 413 and error_of(chunked)["code"] == "body_too_large"
    assert fine.status_code == 200


def test_max_queue_counts_only_the_waiting_requests() -> None:
    # max_queue = 1: the running request and one waiting are admitted; the next one is 429 overloaded.
    gate = threading.Event()
    with served({"tiny": FakeEngine(gate=gate)}, serve=ServeConfig(max_queue=1)) as s:
        results: list[int] = []

        def post() -> None:
            reply = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER}, timeout=30)
            results.append(reply.status_code)

        admitted = [threading.Thread(target=post) for _ in range(2)]
        for number, thread in enumerate(admitted, start=1):
            thread.start()
            wait_until(lambda n=number: s.manager.info(s.run_ids["tiny"]).pending_requests == n)  # type: ignore[misc]
        busy = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER})
        gate.set()
        for thread in admitted:
            thread.join(30)
    assert busy.status_code == 429 and error_of(busy)["code"] == "overloaded"
    assert "1 requests waiting (max_queue 1)" in str(error_of(busy)["message"])
    assert results == [200, 200]


# --- cancellation ----------------------------------------------------------------------------------------------------


def _idle(s: Served, name: str = "tiny") -> bool:
    info = s.manager.info(s.run_ids[name])
    return info.state is InstanceState.READY and info.pending_requests == 0


def test_client_leaving_a_stream_cancels_its_generation() -> None:
    engine = FakeEngine(reply=" ".join(["word"] * 2000), token_delay_s=0.02)
    with served({"tiny": engine}) as s:
        with httpx.stream(
            "POST", f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER, "stream": True}
        ) as raw:
            lines = raw.iter_lines()
            got = [next(lines) for _ in range(4)]
        assert any("word" in line for line in got)
        wait_until(lambda: _idle(s) and s.context.stats.snapshot()["cancelled"] == 1)
        # The instance is free at once for the next client.
        after = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER, "max_tokens": 2})
    assert after.status_code == 200


class CountingEngine(FakeEngine):
    """A fake engine that counts the tokens each reply made and notes when the reply ended (or was dropped)."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.made: list[int] = []
        self.ended_at: list[float] = []

    def chat(self, messages, params, cancel, session=None):  # type: ignore[no-untyped-def]
        made = 0
        try:
            for event in super().chat(messages, params, cancel, session):
                made += isinstance(event, Delta)
                yield event
        finally:
            self.made.append(made)
            self.ended_at.append(time.monotonic())


def test_client_hanging_up_stops_generation_before_the_next_token() -> None:
    # One token a second: the hang-up is seen (every DISCONNECT_POLL_S) long before the next token is due.
    engine = CountingEngine(reply=" ".join(["word"] * 50), token_delay_s=1.0)
    with served({"tiny": engine}) as s:
        body = {"model": "tiny", "messages": USER, "stream": True}
        with httpx.stream("POST", f"{s.url}/chat/completions", json=body) as raw:
            received = 0
            for line in raw.iter_lines():
                assert "error" not in line, line
                received += line.count("word")
                if received:
                    break
            hung_up = time.monotonic()
        wait_until(lambda: bool(engine.ended_at))
    # Nothing was generated after the hang-up but, at most, the token already being made.
    assert engine.made[0] <= received + 1, (engine.made, received)
    assert engine.ended_at[0] - hung_up < 1.0, "generation went on until the next token was due"


def test_client_leaving_a_whole_reply_cancels_it() -> None:
    engine = FakeEngine(reply=" ".join(["word"] * 2000), token_delay_s=0.02)
    with served({"tiny": engine}) as s:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER}, timeout=0.5)
        wait_until(lambda: _idle(s) and s.context.stats.snapshot()["cancelled"] == 1)


# --- models that are not running -------------------------------------------------------------------------------------


def _on_demand_setup(tmp_path: Path) -> tuple[EngineManager, Path]:
    models = tmp_path / "models"
    write_gguf(models / "little.gguf", name="little")
    return EngineManager(engine_factory=lambda name: FakeEngine()), models


def test_not_running_model_is_404_saying_how_to_start_it(tmp_path: Path) -> None:
    manager, models = _on_demand_setup(tmp_path)
    config = default_config()
    from dataclasses import replace

    config = replace(config, aliases={"lil": str(models / "little.gguf")})
    with served({}, manager=manager, config=config, models_dir=models) as s:
        r = httpx.post(f"{s.url}/chat/completions", json={"model": "lil", "messages": USER})
        listed = httpx.get(f"{s.url}/models").json()["data"]
    assert r.status_code == 404 and "launch_on_demand" in str(error_of(r)["message"])
    assert listed == []  # nothing offered that a request could not use


def test_launch_on_demand_loads_once_and_reuses_the_instance(tmp_path: Path) -> None:
    manager, models = _on_demand_setup(tmp_path)
    with served({}, serve=ServeConfig(launch_on_demand=True), manager=manager, models_dir=models) as s:
        listed = httpx.get(f"{s.url}/models").json()["data"]
        name = listed[0]["id"]
        assert listed[0]["llm_tui"]["running"] is False
        replies: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: replies.append(
                    httpx.post(
                        f"{s.url}/chat/completions", json={"model": name, "messages": USER}, timeout=30
                    ).status_code
                )
            )
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        running = manager.instances()
        relisted = httpx.get(f"{s.url}/models").json()["data"]
    assert replies == [200, 200, 200]
    assert len(running) == 1  # three requests at once, one launch
    assert any(m["llm_tui"]["running"] for m in relisted)


def test_launch_on_demand_that_does_not_fit_is_503_with_the_numbers(tmp_path: Path) -> None:
    from engines.telemetry.snapshot import HostStats, Snapshot

    manager, models = _on_demand_setup(tmp_path)
    full = Snapshot(taken_at=0.0, gpus=(), host=HostStats(ram_available_bytes=0, ram_total_bytes=32 * 10**9))
    serve = ServeConfig(launch_on_demand=True)
    with served({}, serve=serve, manager=manager, models_dir=models, snapshot=lambda: full) as s:
        name = httpx.get(f"{s.url}/models").json()["data"][0]["id"]
        r = httpx.post(f"{s.url}/chat/completions", json={"model": name, "messages": USER})
    assert r.status_code == 503 and error_of(r)["code"] == "insufficient_memory"
    assert str(error_of(r)["message"]).startswith(f"cannot load {name!r}: needs "), error_of(r)
    assert "MB RAM" in str(error_of(r)["message"])
    assert manager.instances() == []


# --- metrics, binding ----------------------------------------------------------------------------------------------


def test_metrics_json_counts_requests_and_lists_instances() -> None:
    with served() as s:
        client(s).chat.completions.create(model="tiny", messages=USER)  # type: ignore[arg-type]
        httpx.post(f"{s.url}/chat/completions", json={"model": "nope", "messages": USER})
        body = httpx.get(f"{s.url.removesuffix('/v1')}/v1/llm-tui/metrics").json()
    assert body["server"]["requests"] >= 2 and body["server"]["by_status"]["404"] == 1
    assert "404 /v1/chat/completions" in body["server"]["last_error"]
    assert body["instances"][0]["model"] == "tiny" and body["instances"][0]["requests_served"] == 1


def test_port_in_use_is_one_clear_error() -> None:
    from engines.server.runner import ServeError, bind

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"port {port} on 127.0.0.1 is already in use"):
            bind("127.0.0.1", port)


def test_accepted_connections_have_nagle_off() -> None:
    """asyncio turns TCP_NODELAY on only for sockets made with proto IPPROTO_TCP; without it each reply's
    second write waits for the client's delayed ACK (~40 ms a request)."""
    import asyncio

    from engines.server.runner import bind

    async def main() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listening = bind("127.0.0.1", 0)
        server = await asyncio.start_server(accepted, sock=listening)
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        flag = await asyncio.wait_for(seen, 10)
        writer.close()
        server.close()
        return flag

    assert asyncio.run(main()) != 0


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    from engines.server.runner import check_exposure, is_loopback

    assert is_loopback(host) is loopback
    check_exposure(host, has_keys=True)
    if not loopback:
        with pytest.raises(Exception, match="without an API key"):
            check_exposure(host, has_keys=False)
