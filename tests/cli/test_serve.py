"""`llm-tui serve` as a real subprocess with the real Gemma model on llama.cpp, driven by the official openai client."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.serve_process import serve_env, serve_process

KEY = "sk-serve-test-0123456789"
USER = [{"role": "user", "content": "Name three colours."}]


def _env(home: Path) -> dict[str, str]:
    return serve_env(home, SERVE_KEY=KEY)


def run_serve(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", *args],
        capture_output=True,
        text=True,
        env=_env(home),
        cwd=home,
        timeout=120,
    )


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    log: list[str]

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=120)

    def metrics(self) -> dict[str, object]:
        body: dict[str, object] = httpx.get(
            self.url.removesuffix("/v1") + "/v1/llm-tui/metrics", headers={"Authorization": f"Bearer {KEY}"}
        ).json()
        return body


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("serve")
    args = [
        "--port",
        "0",
        "--model",
        str(gemma_path),
        "--api-key-env",
        "SERVE_KEY",
        "--threads",
        "2",
        "--n-ctx",
        "2048",
    ]
    with serve_process(home, *args, env=_env(home)) as served:
        yield Server(served.base + "/v1", served.process, served.log)


pytestmark = pytest.mark.real_model


def test_models_lists_the_loaded_model(server: Server) -> None:
    models = server.client().models.list().data
    assert models and all(getattr(m, "llm_tui")["running"] for m in models)  # noqa: B009 - an extra field
    assert any(m.id.endswith("llama.cpp") for m in models)  # the run id
    assert "loaded" in "\n".join(server.log)


def test_chat_whole_and_streamed_agree_when_greedy(server: Server) -> None:
    model = server.client().models.list().data[0].id
    whole = server.client().chat.completions.create(
        model=model,
        messages=USER,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=24,
    )
    chunks = list(
        server.client().chat.completions.create(
            model=model,
            messages=USER,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = whole.choices[0].message.content
    assert text and whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage is not None and 0 < whole.usage.completion_tokens <= 24 and whole.usage.prompt_tokens > 5
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_whole_and_streamed(server: Server) -> None:
    model = server.client().models.list().data[0].id
    whole = server.client().completions.create(
        model=model, prompt="The capital of France is", temperature=0, max_tokens=8
    )
    parts = list(
        server.client().completions.create(
            model=model, prompt="The capital of France is", temperature=0, max_tokens=8, stream=True
        )
    )
    assert whole.choices[0].text.strip()
    assert whole.usage is not None and 0 < whole.usage.completion_tokens <= 8
    assert "".join(p.choices[0].text for p in parts) == whole.choices[0].text


def test_errors_unknown_model_bad_parameter_and_missing_key(server: Server) -> None:
    with pytest.raises(openai.NotFoundError, match="no-such-model"):
        server.client().chat.completions.create(model="no-such-model", messages=USER)  # type: ignore[arg-type]
    model = server.client().models.list().data[0].id
    with pytest.raises(openai.BadRequestError, match="temperature"):
        server.client().chat.completions.create(model=model, messages=USER, temperature=7)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        server.client("sk-not-the-key").models.list()
    bare = httpx.post(f"{server.url}/chat/completions", json={"model": model, "messages": USER})
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "invalid_api_key"
    log = "\n".join(server.log)
    assert "POST /v1/chat/completions 404" in log and "POST /v1/chat/completions 400" in log
    assert KEY not in log and "sk-not-the-key" not in log


def test_client_leaving_mid_stream_frees_the_instance(server: Server) -> None:
    model = server.client().models.list().data[0].id
    before = server.metrics()["server"]
    assert isinstance(before, dict)
    stream = server.client().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Write a very long story about a dragon and a knight."}],
        max_tokens=1500,
        temperature=0.8,
        seed=7,
        stream=True,
    )
    pieces = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if len(pieces) >= 3:
            break
    stream.close()  # hang up mid-reply

    def freed() -> bool:
        now = server.metrics()
        instance = now["instances"][0]  # type: ignore[index]
        stats = now["server"]
        return (
            stats["cancelled"] == before["cancelled"] + 1  # type: ignore[index]
            and instance["state"] == "ready"
            and instance["pending_requests"] == 0
        )

    deadline = time.monotonic() + 60
    while not freed():
        assert time.monotonic() < deadline, server.metrics()
        time.sleep(0.05)
    after = server.client().chat.completions.create(model=model, messages=USER, max_tokens=4)  # type: ignore[arg-type]
    assert after.choices[0].message.content is not None


def test_refuses_to_bind_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    result = run_serve(tmp_path, "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0 without an API key" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_reported_before_loading(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve(tmp_path, "--port", str(port), "--model", "no-such-model-anywhere")
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr  # not the unknown model: checked first


def test_a_prompt_longer_than_the_context_is_400(server: Server) -> None:
    model = server.client().models.list().data[0].id
    long = [{"role": "user", "content": "apple " * 3000}]
    with pytest.raises(openai.BadRequestError, match="context holds 2048"):
        server.client().chat.completions.create(model=model, messages=long)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="context holds 2048"):
        list(server.client().chat.completions.create(model=model, messages=long, stream=True))  # type: ignore[arg-type]


POEM = [{"role": "user", "content": "Write a short poem about the sea."}]


def test_a_seeded_reply_is_the_same_whatever_ran_before(server: Server) -> None:
    """Issue 18, item 11: temperature 1.0 and seed 7, then another short request, then the same again."""
    model = server.client().models.list().data[0].id

    def poem() -> str | None:
        reply = server.client().chat.completions.create(
            model=model,
            messages=POEM,  # type: ignore[arg-type]
            temperature=1.0,
            seed=7,
            max_tokens=16,
        )
        return reply.choices[0].message.content

    first = poem()
    server.client().chat.completions.create(model=model, messages=USER, temperature=1.0, max_tokens=5)  # type: ignore[arg-type]
    assert first and poem() == first


def test_logprobs_are_given_and_the_official_client_parses_them(server: Server) -> None:
    """Issue 18, item 12: chat `logprobs` + `top_logprobs` (whole and streamed) and text completions' `logprobs`."""
    model = server.client().models.list().data[0].id
    whole = server.client().chat.completions.create(
        model=model,
        messages=USER,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=8,
        logprobs=True,
        top_logprobs=3,
    )
    choice = whole.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content and whole.usage is not None
    tokens = choice.logprobs.content
    assert len(tokens) == whole.usage.completion_tokens
    for token in tokens:
        assert token.logprob <= 0 and len(token.top_logprobs) == 3
        assert token.top_logprobs[0].token == token.token  # greedy: the chosen token is the likeliest
        assert bytes(token.bytes or []).decode("utf-8", "replace") == token.token
    assert "".join(t.token for t in tokens).strip() == (choice.message.content or "").strip()

    streamed: list[Any] = list(
        server.client().chat.completions.create(
            model=model,
            messages=USER,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=8,
            logprobs=True,
            stream=True,
        )
    )
    pieces = [t for c in streamed if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []]
    assert [t.token for t in pieces] == [t.token for t in tokens]
    assert all(t.top_logprobs == [] for t in pieces)

    text = server.client().completions.create(model=model, prompt="The capital of France is", max_tokens=4, logprobs=2)
    legacy = text.choices[0].logprobs
    assert legacy is not None and legacy.tokens and legacy.token_logprobs and legacy.top_logprobs
    assert len(legacy.tokens) == len(legacy.token_logprobs) == len(legacy.top_logprobs) == 4
    assert all(len(top) <= 2 for top in legacy.top_logprobs) and legacy.text_offset is not None
    assert legacy.text_offset[0] == 0 and "".join(legacy.tokens) == text.choices[0].text
    bare = server.client().completions.create(model=model, prompt="The capital of France is", max_tokens=2, logprobs=0)
    assert bare.choices[0].logprobs is not None and len(bare.choices[0].logprobs.tokens or []) == 2  # 0 asks too
