"""`logprobs` is never silently ignored (issue 18, item 12): an engine that cannot give them refuses the request by
name (400, `param: "logprobs"`, saying which engine gives them); `top_logprobs` without `logprobs` is refused too.
The llama.cpp side (real logprobs, parsed by the official client) is in tests/cli/test_serve.py."""

from __future__ import annotations

import httpx
import pytest

from engines.adapters.fake import FakeEngine
from tests.engines.server_fixture import served

USER = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    ("route", "extra"),
    [
        ("chat/completions", {"messages": USER, "logprobs": True}),
        ("chat/completions", {"messages": USER, "logprobs": True, "top_logprobs": 2}),
        ("completions", {"prompt": "hello", "logprobs": 2}),
        ("completions", {"prompt": "hello", "logprobs": 0, "stream": True}),
    ],
)
def test_an_engine_without_logprobs_refuses_them_by_name(route: str, extra: dict[str, object]) -> None:
    engine = FakeEngine()
    with served({"tiny": engine}) as s:
        answer = httpx.post(f"{s.url}/{route}", json={"model": "tiny", **extra})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "logprobs" and error["code"] == "unsupported_parameter"
    assert "fake engine" in error["message"] and "llama.cpp" in error["message"]
    assert not engine.calls and not engine.prompts  # refused before it ran


def test_logprobs_false_is_no_request_for_them() -> None:
    with served() as s:
        answer = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER, "logprobs": False})
    assert answer.status_code == 200 and answer.json()["choices"][0]["logprobs"] is None


def test_top_logprobs_without_logprobs_is_refused() -> None:
    with served() as s:
        answer = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER, "top_logprobs": 3})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "top_logprobs"


@pytest.mark.parametrize(
    ("route", "extra"),
    [
        ("chat/completions", {"messages": USER, "logprobs": True, "top_logprobs": 21}),
        ("completions", {"prompt": "x", "logprobs": 6}),
    ],
)
def test_too_many_alternatives_are_refused(route: str, extra: dict[str, object]) -> None:
    with served() as s:
        answer = httpx.post(f"{s.url}/{route}", json={"model": "tiny", **extra})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] in ("top_logprobs", "logprobs")
