"""Admin actions on another llm-tui: the request shapes (POST/DELETE /v1/llm-tui/instances), the instance read back,
and each refusal as a FleetError naming the host with the server's message."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from engines.fleet.admin import launch_on, stop_on
from engines.fleet.errors import FleetError
from engines.fleet.status import INSTANCES_PATH
from engines.fleet.types import FleetMember
from tests.engines.fleet.fake_status import FakeStatus

ENV = {"BOX_KEY": "admin-key"}


def test_launch_posts_model_and_engine_and_reads_the_instance() -> None:
    with FakeStatus(api_key="admin-key") as fake:
        member = FleetMember("box", fake.base, key_env="BOX_KEY")
        inst = asyncio.run(launch_on(member, ENV, "qwen3-0.6b", "transformers"))
        plain = asyncio.run(launch_on(member, ENV, "gemma-3-270m"))
    post = fake.seen[0]
    assert (post.method, post.path, post.body) == (
        "POST",
        INSTANCES_PATH,
        {"model": "qwen3-0.6b", "engine": "transformers"},
    )
    assert post.headers["authorization"] == "Bearer admin-key" and post.headers["content-type"] == "application/json"
    assert fake.seen[1].body == {"model": "gemma-3-270m"}  # no engine: the host chooses
    assert (inst.run_id, inst.model, inst.engine, inst.state) == ("r2", "qwen3-0.6b", "transformers", "loading")
    assert plain.run_id == "r3" and plain.engine == "llama.cpp"


def test_stop_deletes_by_quoted_run_id() -> None:
    with FakeStatus() as fake:
        member = FleetMember("box", fake.base)
        asyncio.run(stop_on(member, {}, "r1"))
        assert fake.instances == []
        with pytest.raises(FleetError, match=r"^host box: HTTP 404: no instance 'a/b c'$"):
            asyncio.run(stop_on(member, {}, "a/b c"))
    assert [s.path for s in fake.seen] == [f"{INSTANCES_PATH}/r1", f"{INSTANCES_PATH}/a%2Fb%20c"]
    assert {s.method for s in fake.seen} == {"DELETE"}


def test_a_key_without_admin_scope_is_said() -> None:
    with FakeStatus(api_key="infer-key", scopes=("infer", "metrics"), key_name="x") as fake:
        member = FleetMember("box", fake.base, key_env="BOX_KEY")
        with pytest.raises(FleetError) as caught:
            asyncio.run(launch_on(member, {"BOX_KEY": "infer-key"}, "qwen3-0.6b"))
        with pytest.raises(FleetError, match=r"^host box: this key has no admin scope"):
            asyncio.run(stop_on(member, {"BOX_KEY": "infer-key"}, "r1"))
    assert str(caught.value) == (
        "host box: this key has no admin scope (the key 'x' may use infer, metrics, not admin: launching and "
        "stopping need admin)"
    )


def test_other_refusals_carry_the_servers_message() -> None:
    with FakeStatus(api_key="k") as fake:
        member = FleetMember("box", fake.base, key_env="BOX_KEY")
        with pytest.raises(FleetError, match=r"^host box: HTTP 401: missing or wrong API key"):
            asyncio.run(launch_on(member, {"BOX_KEY": "nope"}, "m"))
        with pytest.raises(FleetError, match=r"^host box: HTTP 404: model 'nope' is not in this server's catalog$"):
            asyncio.run(launch_on(member, {"BOX_KEY": "k"}, "nope"))


def test_read_only_members_and_missing_keys_send_nothing() -> None:
    with FakeStatus() as fake:
        vllm = FleetMember("vllm-1", fake.base, kind="openai")
        with pytest.raises(FleetError, match=r"^vllm-1 is a read-only member \(kind openai\)$"):
            asyncio.run(launch_on(vllm, {}, "m"))
        with pytest.raises(FleetError, match=r"^vllm-1 is a read-only member \(kind openai\)$"):
            asyncio.run(stop_on(vllm, {}, "r1"))
        keyed = FleetMember("box", fake.base, key_env="BOX_KEY")
        with pytest.raises(FleetError, match=r"^host box: set BOX_KEY: "):
            asyncio.run(launch_on(keyed, {}, "m"))
    assert fake.seen == []


def test_unreachable_and_odd_answers() -> None:
    with FakeStatus(keep_alive=False) as fake:
        base = fake.base
    with pytest.raises(FleetError, match=r"^host box: connection refused$"):
        asyncio.run(launch_on(FleetMember("box", base), {}, "m"))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "empty":
            return httpx.Response(201, json={"ok": True})
        if request.url.host == "text":
            return httpx.Response(201, content=b"created")
        raise httpx.ReadTimeout("slow", request=request)

    transport = httpx.MockTransport(handler)
    with pytest.raises(FleetError, match=r"^host e: the answer holds no instance"):
        asyncio.run(launch_on(FleetMember("e", "http://empty"), {}, "m", transport=transport))
    with pytest.raises(FleetError, match=r"^host t: the answer is not JSON$"):
        asyncio.run(launch_on(FleetMember("t", "http://text"), {}, "m", transport=transport))
    with pytest.raises(FleetError, match=r"^host s: timed out after 5.0 s$"):
        asyncio.run(launch_on(FleetMember("s", "http://slow"), {}, "m", transport=transport, timeout_s=5))


def test_the_request_shapes_through_a_mock() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            doc = {"instance": {"run_id": "abc", "model": "m", "engine": "llama.cpp", "state": "loading", "slots": 1}}
            return httpx.Response(201, json=doc)
        return httpx.Response(204)

    member = FleetMember("box", "https://box.example:8443/prefix")
    inst = asyncio.run(launch_on(member, {}, "m", transport=httpx.MockTransport(handler)))
    asyncio.run(stop_on(member, {}, "abc", transport=httpx.MockTransport(handler)))
    assert str(seen[0].url) == "https://box.example:8443/prefix/v1/llm-tui/instances"
    assert json.loads(seen[0].content) == {"model": "m"} and "authorization" not in seen[0].headers
    assert (seen[1].method, str(seen[1].url)) == ("DELETE", "https://box.example:8443/prefix/v1/llm-tui/instances/abc")
    assert inst.run_id == "abc" and inst.state == "loading"
