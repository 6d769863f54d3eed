"""The fleet poller: hosts polled at once, each within its timeout; a host that fails keeps its last data, marked
unreachable with a short reason; keys sent only where set, never shown; a poll never raises."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from engines.fleet.poller import FleetPoller
from engines.fleet.status import STATUS_PATH
from engines.fleet.types import FleetMember, HostView
from tests.engines.fleet.fake_status import FakeStatus
from tests.engines.fleet.fake_vllm import FakeVllm


def poll(
    members: Sequence[FleetMember], env: dict[str, str] | None = None, rounds: int = 1, **kw: object
) -> list[list[HostView]]:
    async def main() -> list[list[HostView]]:
        poller = FleetPoller(members, env or {}, **kw)  # type: ignore[arg-type]
        try:
            return [await poller.poll() for _ in range(rounds)]
        finally:
            await poller.aclose()

    return asyncio.run(main())


def test_a_hanging_host_does_not_hold_the_others() -> None:
    with FakeStatus() as good, FakeStatus(mode="hangs") as stuck, FakeVllm() as vllm:
        members = [
            FleetMember("good", good.base, timeout_s=0.5),
            FleetMember("stuck", stuck.base, timeout_s=0.5),
            FleetMember("vllm", vllm.base, kind="openai", timeout_s=0.5),
        ]
        started = time.monotonic()
        (views,) = poll(members)
        elapsed = time.monotonic() - started
    assert [v.member.name for v in views] == ["good", "stuck", "vllm"]
    assert views[0].reachable and views[0].instances and views[2].reachable and views[2].engine_kind == "vllm"
    assert not views[1].reachable and views[1].error == "timed out after 0.5 s" and views[1].last_seen is None
    assert elapsed < 1.5  # the hosts ran at once, the stuck one cut at its timeout
    assert views[0].latency_ms is not None and views[0].latency_ms < 500


def test_a_trickling_host_is_cut_at_its_timeout() -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"schema": 1, "models": ['
        while True:
            await asyncio.sleep(0.05)
            yield b'"m",'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=trickle())

    started = time.monotonic()
    (views,) = poll([FleetMember("slow", "http://slow", timeout_s=0.3)], transport=httpx.MockTransport(handler))
    assert views[0].error == "timed out after 0.3 s" and time.monotonic() - started < 1.0


def test_a_refused_host_keeps_its_last_data() -> None:
    clock = iter([100.0, 200.0, 300.0, 400.0]).__next__
    fake = FakeStatus(keep_alive=False)
    member = FleetMember("box", fake.base)

    async def main() -> tuple[HostView, HostView]:
        poller = FleetPoller([member], {}, clock=clock)
        try:
            with fake:
                (first,) = await poller.poll()
            fake.stop()
            (second,) = await poller.poll()
            return first, second
        finally:
            await poller.aclose()

    first, second = asyncio.run(main())
    assert first.reachable and first.last_seen == 100.0 and first.instances
    assert not second.reachable and second.error == "connection refused"
    assert second.last_seen == 100.0 and second.polled_at == 200.0 and second.latency_ms is None
    assert second.instances == first.instances and second.gpus == first.gpus and second.hostname == first.hostname


def test_a_dead_connection_is_said() -> None:
    with FakeStatus(mode="dies") as fake:
        (views,) = poll([FleetMember("box", fake.base)])
    assert not views[0].reachable and "closed the connection" in (views[0].error or "")


def test_the_key_is_sent_and_a_wrong_one_shows_the_servers_message() -> None:
    with FakeStatus(api_key="right-key") as fake:
        member = FleetMember("box", fake.base, key_env="BOX_KEY")
        (ok,) = poll([member], {"BOX_KEY": "right-key"})
        (bad,) = poll([member], {"BOX_KEY": "wrong-key"})
    assert ok[0].reachable and fake.seen[0].headers["authorization"] == "Bearer right-key"
    assert not bad[0].reachable
    assert bad[0].error == "HTTP 401: missing or wrong API key: send it as 'Authorization: Bearer KEY'"


def test_a_missing_key_variable_sends_nothing() -> None:
    with FakeStatus(api_key="k") as fake:
        (views,) = poll([FleetMember("box", fake.base, key_env="BOX_KEY")], {"BOX_KEY": "  "})
    assert views[0].error == "set BOX_KEY: the API key for box is read from that environment variable"
    assert fake.seen == []


def test_a_403_shows_the_message_short_and_without_the_key() -> None:
    message = "this server has no API key, so it answers only 127.0.0.1; you sent sk-secret-1 " + "x" * 400

    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": {"message": message, "type": "permission_error", "code": "host_not_allowed"}}
        return httpx.Response(403, json=body)

    member = FleetMember("box", "http://box", key_env="K")
    (views,) = poll([member], {"K": "sk-secret-1"}, transport=httpx.MockTransport(handler))
    error = views[0].error or ""
    assert error.startswith("HTTP 403: this server has no API key, so it answers only 127.0.0.1")
    assert len(error) <= 200 and "sk-secret-1" not in error and "********" in error


def test_connections_are_kept_alive_and_each_host_asked_its_own_path() -> None:
    with FakeStatus() as fake:
        poll([FleetMember("box", fake.base)], rounds=3)
    assert [s.path for s in fake.seen] == [STATUS_PATH] * 3
    assert len({s.peer for s in fake.seen}) == 1


def test_a_huge_status_document_is_refused() -> None:
    with FakeStatus(models=tuple(f"model-{i}" for i in range(5000))) as fake:
        (views,) = poll([FleetMember("box", fake.base)], max_bytes=10_000)
    assert views[0].error == "the status document too large (over 10000 bytes)"


def test_not_json_and_not_a_document() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>hello</html>" if "a" in request.url.host else b"[1, 2]")

    (views,) = poll(
        [FleetMember("a", "http://a"), FleetMember("b", "http://b")], transport=httpx.MockTransport(handler)
    )
    assert views[0].error == "the status document is not JSON"
    assert views[1].error == "host b: the answer is not an llm-tui status document (not a JSON object)"


def test_a_poll_never_raises() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("boom")

    (views,) = poll([FleetMember("a", "http://a")], transport=httpx.MockTransport(handler))
    assert views[0].error == "poll failed: RuntimeError: boom" and not views[0].reachable


def test_a_redirect_is_not_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "a"
        return httpx.Response(302, headers={"location": "http://elsewhere/"})

    (views,) = poll([FleetMember("a", "http://a", key_env="K")], {"K": "k"}, transport=httpx.MockTransport(handler))
    assert views[0].error == "HTTP 302: redirects to http://elsewhere/; not followed"


@pytest.mark.parametrize("timeout_s", [0.25, 2.0])
def test_timeout_text(timeout_s: float) -> None:
    from engines.fleet.http import seconds

    assert seconds(timeout_s) == {0.25: "0.25", 2.0: "2.0"}[timeout_s]
