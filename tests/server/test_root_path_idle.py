"""Behind a reverse proxy under a prefix (`--root-path /llm`): requests with and without the prefix are served and
guarded alike, and the OpenAPI document names the prefix. Idle unload (`--idle-unload`): a model the server
launched unloads after its idle time, says so on stderr, and a later request loads it again."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cli.main import build_parser
from cli.serve import say_unloaded, serve_settings
from engines.adapters.fake import FakeEngine
from engines.config.load import default_config
from engines.config.serve import ServeConfig
from engines.errors import BadRequest
from engines.manager import EngineManager
from engines.server.root_path import check_root_path
from tests.engines.gguf_corpus import write_gguf
from tests.engines.server_fixture import served

USER = [{"role": "user", "content": "hi"}]


def test_prefixed_and_stripped_paths_are_both_served() -> None:
    with served(serve=ServeConfig(root_path="/llm")) as s:
        base = s.url.removesuffix("/v1")
        direct = httpx.get(f"{base}/v1/models")
        prefixed = httpx.get(f"{base}/llm/v1/models")
        chat = httpx.post(f"{base}/llm/v1/chat/completions", json={"model": "tiny", "messages": USER})
        health = httpx.get(f"{base}/llm/healthz")
        doc = httpx.get(f"{base}/llm/openapi.json").json()
        # The guard sees the path without the prefix: a form post under it is refused like one without.
        form = httpx.post(f"{base}/llm/v1/chat/completions", content=b"x=1", headers={"content-type": "text/plain"})
        unknown = httpx.get(f"{base}/llmx/v1/models")
        logged = [r.path for r in s.context.stats.recent_records()]
    assert direct.status_code == prefixed.status_code == 200
    assert direct.json()["data"] == prefixed.json()["data"]
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"] == "Echo: hi"
    assert health.status_code == 200
    assert doc["servers"] == [{"url": "/llm"}]
    assert form.status_code == 415
    assert unknown.status_code == 404
    assert "/v1/chat/completions" in logged and not any(p.startswith("/llm/") for p in logged)


def test_without_a_root_path_the_prefix_is_just_a_missing_path() -> None:
    with served() as s:
        base = s.url.removesuffix("/v1")
        assert httpx.get(f"{base}/llm/v1/models").status_code == 404
        assert "servers" not in httpx.get(f"{base}/openapi.json").json()


@pytest.mark.parametrize("bad", ["llm", "/llm/", "/", "/l m", "/llm?x", "/a/../b", "/%2e", "/" + "a" * 200])
def test_a_bad_prefix_is_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(BadRequest, match="is not a URL prefix"):
        check_root_path(bad)


def test_good_prefixes_pass() -> None:
    for good in ("", "/llm", "/api/v2.llm", "/a-b_c~d"):
        assert check_root_path(good) == good


def test_serve_flags_set_root_path_and_idle_unload() -> None:
    config = default_config()
    args = build_parser().parse_args(["serve", "--root-path", "/llm", "--idle-unload", "90"])
    serve = serve_settings(args, config, {})
    assert serve.root_path == "/llm" and serve.idle_unload_s == 90
    with pytest.raises(BadRequest, match="root path"):
        serve_settings(build_parser().parse_args(["serve", "--root-path", "llm/"]), config, {})
    with pytest.raises(BadRequest, match="--idle-unload"):
        serve_settings(build_parser().parse_args(["serve", "--idle-unload", "0"]), config, {})
    # [serve] root_path from the file is checked the same way.
    with pytest.raises(BadRequest, match="root path"):
        serve_settings(build_parser().parse_args(["serve"]), replace(config, serve=ServeConfig(root_path="/x/")), {})


def wait_until(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_idle_models_unload_and_load_again_on_demand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_gguf(tmp_path / "models" / "little.gguf", name="little")
    manager = EngineManager(engine_factory=lambda name: FakeEngine(), on_stopped=say_unloaded)
    serve = ServeConfig(launch_on_demand=True, idle_unload_s=0.3)
    with served({}, serve=serve, manager=manager, models_dir=tmp_path / "models") as s:
        first = httpx.post(f"{s.url}/chat/completions", json={"model": "little", "messages": USER}, timeout=30)
        assert first.status_code == 200
        (info,) = manager.instances()
        assert info.options.idle_unload_s == 0.3
        assert wait_until(lambda: manager.instances() == [])
        assert manager.stopped()[-1].run_id == info.run_id
        again = httpx.post(f"{s.url}/chat/completions", json={"model": "little", "messages": USER}, timeout=30)
        assert again.status_code == 200
        (reloaded,) = manager.instances()
        # An admin launch gets the idle time too, unless it is stopped first.
        launched = httpx.post(
            s.url.removesuffix("/v1") + "/v1/llm-tui/instances", json={"model": "little", "engine": "fake"}, timeout=30
        )
        admin_run = launched.json()["instance"]["run_id"]
        assert manager.info(admin_run).options.idle_unload_s == 0.3
    assert reloaded.run_id != info.run_id
    assert f"llm-tui serve: unloaded little ({info.run_id}) after 0.3 s idle" in capsys.readouterr().err
