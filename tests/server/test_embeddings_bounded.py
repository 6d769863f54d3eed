"""/v1/embeddings cannot stall a served model (issue 18, item 10): a client that hangs up cancels its request (the
instance serves the next one at once), a text longer than the model embeds is refused by name with OpenAI's
`context_length_exceeded` (never cut), and `usage.prompt_tokens` counts the tokens read."""

from __future__ import annotations

import threading

import httpx
import pytest

from engines.adapters.fake import FakeEngine
from engines.errors import Cancelled
from tests.engines.server_fixture import served
from tests.engines.test_server_api import wait_until

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}]}


def test_a_client_that_hangs_up_cancels_its_embedding_and_frees_the_instance() -> None:
    gate = threading.Event()  # the fake embeds nothing until this is set: a request that never ends by itself
    engine = FakeEngine(embed_gate=gate)
    with served({"tiny": engine}) as s:
        try:
            with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
                httpx.post(f"{s.url}/embeddings", json={"model": "tiny", "input": ["a", "b"]}, timeout=1.0)
            # Queued behind the abandoned embedding, this would wait for ever: it gets its reply instead.
            chat = httpx.post(f"{s.url}/chat/completions", json=CHAT, timeout=10)
            served_metrics = httpx.get(s.url.removesuffix("/v1") + "/v1/llm-tui/metrics", timeout=5).json()
        finally:
            gate.set()
    assert chat.status_code == 200, chat.text
    assert engine.embedded == 0  # stopped inside its first text, not run to the end
    assert served_metrics["server"]["cancelled"] >= 1


def test_an_embedding_queued_behind_a_reply_never_runs_once_its_client_has_left() -> None:
    gate = threading.Event()  # holds the chat reply, so the embedding waits in the queue
    engine = FakeEngine(gate=gate)
    with served({"tiny": engine}) as s:
        reply = threading.Thread(target=lambda: httpx.post(f"{s.url}/chat/completions", json=CHAT, timeout=30))
        reply.start()
        try:
            assert engine.started.wait(10)
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{s.url}/embeddings", json={"model": "tiny", "input": "queued"}, timeout=1.0)
            wait_until(lambda: s.context.stats.cancelled >= 1)  # the server saw the client leave
        finally:
            gate.set()
            reply.join(30)
        after = httpx.post(f"{s.url}/embeddings", json={"model": "tiny", "input": "after"}, timeout=10)
    assert after.status_code == 200
    assert engine.embedded == 1  # only the second one


def test_a_text_longer_than_the_model_takes_is_refused_by_index_not_cut() -> None:
    with served({"tiny": FakeEngine(n_ctx=5)}) as s:
        texts = ["short", "one two three four five six"]
        many = httpx.post(f"{s.url}/embeddings", json={"model": "tiny", "input": texts})
        one = httpx.post(f"{s.url}/embeddings", json={"model": "tiny", "input": "one two three four five six seven"})
    assert many.status_code == 400, many.text
    error = many.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "input[1]"
    assert "6 tokens" in error["message"] and "at most 5" in error["message"]
    assert one.status_code == 400 and one.json()["error"]["param"] == "input"
    assert "7 tokens" in one.json()["error"]["message"]


def test_usage_counts_the_tokens_read() -> None:
    with served() as s:
        reply = httpx.post(f"{s.url}/embeddings", json={"model": "tiny", "input": ["one two", "three four five"]})
    assert reply.status_code == 200
    assert reply.json()["usage"] == {"prompt_tokens": 5, "total_tokens": 5}  # the fake's tokens are words


def test_a_cancelled_fake_embedding_raises_cancelled() -> None:
    engine = FakeEngine(embed_gate=threading.Event())
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        engine.embed(["x"], cancel)


def test_a_server_stop_ends_a_running_embedding_with_503() -> None:
    from engines.config.load import default_config
    from engines.config.serve import ServeConfig
    from engines.manager import EngineManager
    from engines.server.app import ServerContext
    from engines.server.runner import ServerThread, prepare
    from engines.types import ModelSpec

    gate = threading.Event()
    engine = FakeEngine(embed_gate=gate)
    answers: list[httpx.Response] = []
    with EngineManager() as manager:
        manager.start(ModelSpec("tiny", format="fake", engines=("fake",)), engine=engine)
        server = ServerThread(prepare(ServerContext(manager, default_config(), ServeConfig(port=0))))
        server.start()
        body = {"model": "tiny", "input": "never ends"}
        client = threading.Thread(target=lambda: answers.append(httpx.post(f"{server.url}/embeddings", json=body)))
        client.start()
        try:
            assert engine.embed_started.wait(10)
            server.stop()  # the app's toggle: no grace
            client.join(10)
        finally:
            gate.set()
    assert answers and answers[0].status_code == 503, answers
    assert answers[0].json()["error"]["code"] == "server_shutting_down"
    assert engine.embedded == 0
