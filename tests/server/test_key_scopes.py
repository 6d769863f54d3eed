"""Named keys at the door: each path needs a scope (infer, metrics, admin), /metrics may be open to a scraper,
status paths count against no limit, each key has its own request and token budget, and every reply carries
its request id."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest

from engines.config.serve import ApiKey, ServeConfig
from engines.secret import Secret
from engines.server.guard import Guard, ServerStats
from engines.server.keys import needed_scope, route_path
from engines.server.records import RequestRecord
from tests.engines.server_fixture import Served, served

INFER = "sk-infer-Kq1"
METRICS = "sk-metrics-Mx2"
ADMIN = "sk-admin-Az3"
USER = [{"role": "user", "content": "hi"}]


def keys(**extra: Any) -> tuple[ApiKey, ...]:
    return (
        ApiKey("app", Secret(INFER), frozenset({"infer"}), **extra),
        ApiKey("grafana", Secret(METRICS), frozenset({"metrics"})),
        ApiKey("ops", Secret(ADMIN), frozenset({"admin"})),
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def settled(s: Served, count: int) -> list[RequestRecord]:
    """The records once `count` requests have ended (the guard counts a request just after its reply is sent)."""
    deadline = time.monotonic() + 10
    while s.context.stats.requests < count and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert s.context.stats.requests == count, s.context.stats.requests
    return s.context.stats.recent_records()


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_each_path_needs_its_scope() -> None:
    with served(serve=ServeConfig(keys=keys())) as s:
        base = s.url.removesuffix("/v1")
        chat = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER}, headers=bearer(INFER))
        launch = httpx.post(f"{s.url}/llm-tui/instances", json={"model": "tiny"}, headers=bearer(INFER))
        stop = httpx.delete(f"{s.url}/llm-tui/instances/some-run", headers=bearer(INFER))
        infer_scrape = httpx.get(f"{base}/metrics", headers=bearer(INFER))
        listed_by_infer = httpx.get(f"{s.url}/llm-tui/instances", headers=bearer(INFER))
        scrape = httpx.get(f"{base}/metrics", headers=bearer(METRICS))
        status = httpx.get(f"{s.url}/llm-tui/status", headers=bearer(METRICS))
        listed = httpx.get(f"{s.url}/llm-tui/instances", headers=bearer(METRICS))
        metrics_chat = httpx.post(
            f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER}, headers=bearer(METRICS)
        )
        metrics_launch = httpx.post(f"{s.url}/llm-tui/instances", json={"model": "x"}, headers=bearer(METRICS))
        admin_launch = httpx.post(f"{s.url}/llm-tui/instances", json={"model": "no-such"}, headers=bearer(ADMIN))
        admin_stop = httpx.delete(f"{s.url}/llm-tui/instances/no-such-run", headers=bearer(ADMIN))
        admin_chat = httpx.post(
            f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER}, headers=bearer(ADMIN)
        )
        models = httpx.get(f"{s.url}/models", headers=bearer(INFER))
        wrong = httpx.get(f"{s.url}/models", headers=bearer("sk-nobody"))
        form = httpx.post(f"{s.url}/llm-tui/instances", data={"model": "tiny"}, headers=bearer(ADMIN))
        records = settled(s, 16)
    assert form.status_code == 415 and error_code(form) == "unsupported_media_type"  # a JSON body route
    assert chat.status_code == 200 and models.status_code == 200
    for refused in (launch, stop, infer_scrape, listed_by_infer, metrics_chat, metrics_launch):
        assert refused.status_code == 403 and error_code(refused) == "insufficient_scope", refused.text
    message = launch.json()["error"]["message"]
    assert message.startswith("the key 'app' may use infer, not admin: "), message
    assert "'grafana' may use metrics, not infer" in metrics_chat.json()["error"]["message"]
    assert scrape.status_code == 200 and status.status_code == 200 and listed.status_code == 200
    assert admin_launch.status_code not in (401, 403) and admin_stop.status_code not in (401, 403)
    assert admin_chat.status_code == 200  # admin implies every scope
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_api_key"
    assert s.engines["tiny"].calls and len(s.engines["tiny"].calls) == 2  # the refused chat never reached it
    assert [r.key for r in records][:3] == ["app", "app", "app"]
    assert records[-1].key is None  # the wrong key is named by no key


def test_legacy_api_keys_are_admin_keys_named_key_n() -> None:
    with served(serve=ServeConfig().with_keys("sk-old-1", "sk-old-2")) as s:
        launch = httpx.post(f"{s.url}/llm-tui/instances", json={"model": "no-such"}, headers=bearer("sk-old-2"))
        scrape = httpx.get(f"{s.url.removesuffix('/v1')}/metrics", headers=bearer("sk-old-1"))
        records = settled(s, 2)
    assert launch.status_code not in (401, 403) and scrape.status_code == 200
    assert [r.key for r in records] == ["key-2", "key-1"]


def test_metrics_without_key_opens_only_metrics() -> None:
    with served(serve=ServeConfig(keys=keys(), metrics_without_key=True)) as s:
        base = s.url.removesuffix("/v1")
        scrape = httpx.get(f"{base}/metrics")
        status = httpx.get(f"{s.url}/llm-tui/status")
        chat = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER})
    with served(serve=ServeConfig(keys=keys())) as closed:
        refused = httpx.get(f"{closed.url.removesuffix('/v1')}/metrics")
    assert scrape.status_code == 200
    assert status.status_code == 401 and chat.status_code == 401 and refused.status_code == 401


def test_status_paths_count_against_no_limit() -> None:
    with served(serve=ServeConfig(keys=keys(), requests_per_minute=2)) as s:
        base = s.url.removesuffix("/v1")
        scrapes = [httpx.get(f"{base}/metrics", headers=bearer(ADMIN)).status_code for _ in range(5)]
        scrapes += [httpx.get(f"{s.url}/llm-tui/status", headers=bearer(ADMIN)).status_code for _ in range(3)]
        scrapes += [httpx.get(f"{base}/healthz", headers=bearer(ADMIN)).status_code for _ in range(3)]
        chats = [
            httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER}, headers=bearer(ADMIN))
            for _ in range(3)
        ]
    assert scrapes == [200] * 11
    assert [c.status_code for c in chats] == [200, 200, 429]  # the limit still holds for everything else


def test_request_ids_are_echoed_or_made() -> None:
    with served(serve=ServeConfig(keys=keys(), allowed_origins=("http://localhost:3000",))) as s:
        given = httpx.get(f"{s.url}/models", headers={**bearer(INFER), "X-Request-Id": "trace-7:a.b_c"})
        refused = httpx.get(f"{s.url}/models", headers={"X-Request-Id": "abc-123"})
        bad = httpx.get(f"{s.url}/models", headers={**bearer(INFER), "X-Request-Id": "no spaces/allowed"})
        long = httpx.get(f"{s.url}/models", headers={**bearer(INFER), "X-Request-Id": "x" * 129})
        made = httpx.get(f"{s.url}/models", headers=bearer(INFER))
        missing = httpx.get(f"{s.url}/nothing-here", headers=bearer(INFER))
        page = httpx.get(f"{s.url}/models", headers={**bearer(INFER), "Origin": "http://localhost:3000"})
        records = settled(s, 7)
    assert given.headers["x-request-id"] == "trace-7:a.b_c"
    assert page.headers["access-control-expose-headers"] == "x-request-id"  # a web page's script may read it
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "abc-123"  # errors carry it too
    for response in (bad, long, made, missing):
        rid = response.headers["x-request-id"]
        assert len(rid) == 32 and int(rid, 16) >= 0
    assert len({bad.headers["x-request-id"], long.headers["x-request-id"], made.headers["x-request-id"]}) == 3
    assert [r.request_id for r in records] == [
        r.headers["x-request-id"] for r in (given, refused, bad, long, made, missing, page)
    ]


def test_the_keys_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with served(serve=ServeConfig(keys=keys())) as s:
        httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER}, headers=bearer(INFER))
        httpx.post(f"{s.url}/llm-tui/instances", json={"model": "x"}, headers=bearer(INFER))
        httpx.get(f"{s.url.removesuffix('/v1')}/metrics", headers=bearer(METRICS))
        httpx.get(f"{s.url}/models", headers=bearer(ADMIN + "x"))
    text = caplog.text
    assert " app " in text and " grafana " in text
    for secret in (INFER, METRICS, ADMIN):
        assert secret not in text


# --- the guard on its own, with a scripted clock -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tokens_app(prompt: int, completion: int) -> Any:
    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        state = scope["state"]
        state.update(model="tiny", prompt_tokens=prompt, completion_tokens=completion, ttft_ms=12.5)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def call(
    guard: Guard, path: str, key: str, method: str = "GET", root_path: str = "", request_id: str | None = None
) -> tuple[int, dict[str, str]]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": root_path,
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 5000),
    }
    if request_id is not None:
        scope["headers"].append((b"x-request-id", request_id.encode()))
    if method == "POST":
        scope["headers"].append((b"content-type", b"application/json"))
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    start = sent[0]
    return int(start["status"]), {k.decode(): v.decode() for k, v in start["headers"]}


def test_a_keys_own_request_limit_overrides_the_servers() -> None:
    clock = Clock()
    serve = ServeConfig(keys=(*keys(requests_per_minute=1),), requests_per_minute=100)
    guard = Guard(tokens_app(0, 0), serve, ServerStats(), clock=clock)
    first, second = call(guard, "/v1/models", INFER), call(guard, "/v1/models", INFER)
    others = [call(guard, "/v1/models", ADMIN)[0] for _ in range(5)]
    assert first[0] == 200 and second[0] == 429 and second[1]["retry-after"] == "60"
    assert others == [200] * 5  # the server's 100 a minute for the key without its own limit
    clock.now += 60
    assert call(guard, "/v1/models", INFER)[0] == 200


def test_a_keys_token_budget_is_charged_when_a_request_ends() -> None:
    clock = Clock()
    stats = ServerStats()
    guard = Guard(tokens_app(60, 50), ServeConfig(keys=keys(tokens_per_minute=100)), stats, clock=clock)
    assert call(guard, "/v1/chat/completions", INFER, "POST")[0] == 200  # 110 tokens: the bucket is at -10
    status, headers = call(guard, "/v1/chat/completions", INFER, "POST")
    assert status == 429 and headers["retry-after"] == "7"  # 11 tokens at 100 a minute: 6.6 s
    assert call(guard, "/v1/models", ADMIN)[0] == 200  # another key's budget is its own
    clock.now += 6
    assert call(guard, "/v1/chat/completions", INFER, "POST")[0] == 429
    clock.now += 1
    assert call(guard, "/v1/chat/completions", INFER, "POST")[0] == 200
    record = stats.recent_records()[0]
    assert (record.key, record.model, record.prompt_tokens, record.completion_tokens, record.ttft_ms) == (
        "app",
        "tiny",
        60,
        50,
        12.5,
    )
    assert stats.recent_records()[1].error is not None and "100 tokens per minute" in str(
        stats.recent_records()[1].error
    )


def test_a_request_id_must_be_the_whole_header() -> None:
    guard = Guard(tokens_app(0, 0), ServeConfig(keys=keys()), ServerStats())
    assert call(guard, "/v1/models", INFER, request_id="abc")[1]["x-request-id"] == "abc"
    for bad in ("abc\n", "abc def", "", "é"):
        made = call(guard, "/v1/models", INFER, request_id=bad)[1]["x-request-id"]
        assert len(made) == 32 and made != bad


def test_the_rules_compare_paths_without_the_proxy_prefix() -> None:
    guard = Guard(tokens_app(0, 0), ServeConfig(keys=keys(), root_path="/llm"), ServerStats())
    assert call(guard, "/llm/v1/llm-tui/instances", INFER, "POST")[0] == 403  # a proxy that keeps the prefix
    assert call(guard, "/llm/v1/llm-tui/instances", INFER, "POST", root_path="/llm")[0] == 403  # uvicorn's way
    assert call(guard, "/gw/v1/llm-tui/instances", INFER, "POST", root_path="/gw")[0] == 403
    assert call(guard, "/llm/v1/llm-tui/instances", ADMIN, "POST")[0] == 200
    assert call(guard, "/llm/metrics", METRICS)[0] == 200 and call(guard, "/llm/v1/models", METRICS)[0] == 403


def test_behind_a_proxy_prefix_the_scopes_hold_on_every_spelling() -> None:
    with served(serve=ServeConfig(keys=keys(), root_path="/llm")) as s:
        base = s.url.removesuffix("/v1")
        answers = [
            httpx.post(f"{base}{prefix}/v1/llm-tui/instances", json={"model": "x"}, headers=bearer(INFER))
            for prefix in ("", "/llm", "/llm/llm")
        ]
        chat = httpx.post(
            f"{base}/llm/v1/chat/completions", json={"model": "tiny", "messages": USER}, headers=bearer(INFER)
        )
        scrape = httpx.get(f"{base}/llm/metrics", headers=bearer(METRICS))
        records = settled(s, 5)
    assert [a.status_code for a in answers] == [403, 403, 403]
    assert chat.status_code == 200 and scrape.status_code == 200
    assert records[3].path == "/v1/chat/completions"  # the record names the route, not the prefix


def test_route_path_and_needed_scope() -> None:
    assert route_path({"path": "/llm/v1/models", "root_path": "/llm"}) == "/v1/models"
    assert route_path({"path": "/llm/v1/models"}, "/llm") == "/v1/models"
    assert route_path({"path": "/llmx/v1/models"}, "/llm") == "/llmx/v1/models"  # a prefix is whole segments
    assert route_path({"path": "/llm"}, "/llm") == "/"
    assert route_path({"path": "/v1/models", "root_path": "/llm"}, "/llm") == "/v1/models"
    assert needed_scope("GET", "/healthz") is None
    assert [needed_scope(m, "/metrics") for m in ("GET", "HEAD", "POST")] == ["metrics"] * 3
    assert needed_scope("GET", "/v1/llm-tui/instances") == "metrics"
    assert needed_scope("POST", "/v1/llm-tui/instances") == "admin"
    assert needed_scope("DELETE", "/v1/llm-tui/instances/r1") == "admin"
    assert needed_scope("PUT", "/v1/llm-tui/anything-new") == "admin"  # llm-tui's own routes change only as admin
    assert [needed_scope("POST", p) for p in ("/v1/chat/completions", "/v1/embeddings")] == ["infer", "infer"]
    assert needed_scope("GET", "/openapi.json") == "infer" and needed_scope("GET", "/v1/models") == "infer"
