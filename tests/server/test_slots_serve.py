"""`llm-tui serve` over an instance with slots: concurrent streaming clients share the batch, the rest wait,
and /v1/llm-tui/metrics says how many slots are in use and how many requests wait for one."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from engines.adapters.fake import FakeEngine
from engines.adapters.llama_cpp import LlamaCppEngine
from engines.manager import EngineManager
from engines.templates.chat import load_builtin_template
from engines.types import LaunchOptions, ModelSpec
from tests.engines.server_fixture import Served, served


def stream(s: Served, model: str, text: str, max_tokens: int | None = None) -> tuple[str, str | None]:
    client = openai.OpenAI(base_url=s.url, api_key="none", max_retries=0)
    parts: list[str] = []
    finish = None
    chunks = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], stream=True, max_tokens=max_tokens
    )
    for chunk in chunks:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    return "".join(parts), finish


def metrics(s: Served) -> dict[str, object]:
    body = httpx.get(s.url.removesuffix("/v1") + "/v1/llm-tui/metrics").json()
    instance = body["instances"][0]
    assert isinstance(instance, dict)
    return instance


def in_threads(calls: list[Callable[[], object]]) -> tuple[list[threading.Thread], list[object]]:
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    return threads, results


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_metrics_show_the_slots_in_use_and_the_queue() -> None:
    gate = threading.Event()
    manager = EngineManager()
    manager.start(ModelSpec("team", format="fake", engines=("fake",)), LaunchOptions(parallel=2), FakeEngine(gate=gate))
    with served(models={}, manager=manager) as s:
        threads, results = in_threads([lambda i=i: stream(s, "team", f"question {i}") for i in range(3)])
        wait_for(lambda: metrics(s)["slots_busy"] == 2 and metrics(s)["queued"] == 1)
        held = metrics(s)
        assert (held["slots"], held["pending_requests"], held["draft_proposed"]) == (2, 3, 0)
        gate.set()
        for t in threads:
            t.join(20)
        after = metrics(s)
    assert results == [(f"Echo: question {i}", "stop") for i in range(3)]
    assert (after["slots_busy"], after["queued"], after["requests_served"]) == (0, 0, 3)


@pytest.mark.real_model
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing")
def test_gemma_streams_to_two_clients_at_once(gemma_path: Path) -> None:
    manager = EngineManager()
    spec = ModelSpec("gemma", path=gemma_path, chat_template=load_builtin_template("gemma3"))
    manager.start(spec, LaunchOptions(n_ctx=1024, n_threads=2, parallel=2), LlamaCppEngine(selftest=False))
    with served(models={}, manager=manager) as s:
        widest = [0]
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                busy = metrics(s)["slots_busy"]
                widest[0] = max(widest[0], busy if isinstance(busy, int) else 0)
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        threads, results = in_threads([lambda q=q: stream(s, "gemma", q, 32) for q in ("Describe a cat.", "Hi!")])
        for t in threads:
            t.join(60)
        stop.set()
        watcher.join()
    for result in results:
        assert isinstance(result, tuple) and result[0].strip() and result[1] in ("stop", "length")
    assert widest[0] == 2
