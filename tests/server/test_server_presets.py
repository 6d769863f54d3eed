"""A request whose `"model"` names a preset runs on the preset's model with its system prompt and parameters,
under what the request sets itself; a running model of that name comes first, and a preset without a model is
a 400 saying so."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx

from engines.adapters.fake import FakeEngine
from engines.config.load import default_config
from engines.config.serve import ServeConfig
from engines.manager import EngineManager
from engines.presets import Preset
from engines.types import ChatMessage, LaunchOptions, Params
from tests.engines.gguf_corpus import write_gguf
from tests.engines.server_fixture import served
from tests.server.test_server_tools import USER, ScriptedEngine

HELPER = Preset("helper", system="Be brief.", params=Params(temperature=0.3, max_tokens=5, top_k=7), model="tiny")


@contextmanager
def served_presets(engine: ScriptedEngine, *presets: Preset) -> Iterator[str]:
    """A server over `engine` as the model "tiny", with `presets` configured; yields its base URL."""
    config = replace(default_config(), presets={p.name: p for p in presets})
    with served({"tiny": engine}, config=config) as s:
        yield s.url


def test_a_preset_runs_its_model_with_its_system_prompt_and_parameters() -> None:
    engine = ScriptedEngine()
    with served_presets(engine, HELPER) as url:
        reply = httpx.post(f"{url}/chat/completions", json={"model": "helper", "messages": USER})
        models = [m["id"] for m in httpx.get(f"{url}/models").json()["data"]]
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "helper"  # what the client asked for
    assert engine.calls[0] == [ChatMessage("system", "Be brief."), ChatMessage("user", USER[0]["content"])]
    params = engine.params[0]
    assert (params.temperature, params.max_tokens, params.top_k) == (0.3, 5, 7)
    assert "helper" in models


def test_the_requests_own_values_win_over_the_presets() -> None:
    engine = ScriptedEngine()
    own = [{"role": "system", "content": "Answer in French."}, *USER]
    with served_presets(engine, HELPER) as url:
        body = {"model": "helper", "messages": own, "temperature": 0.9, "top_k": None, "max_completion_tokens": 9}
        assert httpx.post(f"{url}/chat/completions", json=body).status_code == 200
    assert engine.calls[0][0] == ChatMessage("system", "Answer in French.")
    params = engine.params[0]
    # top_k sent as null is no value of the request's: the preset's stands.
    assert (params.temperature, params.max_tokens, params.top_k) == (0.9, 9, 7)


def test_a_presets_max_tokens_stays_within_the_servers_limit() -> None:
    engine = ScriptedEngine()
    greedy = replace(HELPER, params=Params(max_tokens=10**6))
    with served_presets(engine, greedy) as url:
        assert httpx.post(f"{url}/chat/completions", json={"model": "helper", "messages": USER}).status_code == 200
    assert engine.params[0].max_tokens == ServeConfig().max_tokens


def test_a_running_model_of_the_same_name_comes_first() -> None:
    engine = ScriptedEngine()
    with served_presets(engine, replace(HELPER, name="tiny", model="elsewhere")) as url:
        assert httpx.post(f"{url}/chat/completions", json={"model": "tiny", "messages": USER}).status_code == 200
    assert engine.calls[0] == [ChatMessage("user", USER[0]["content"])]
    assert engine.params[0].temperature is None


def test_a_preset_without_a_model_is_a_400_saying_so() -> None:
    engine = ScriptedEngine()
    with served_presets(engine, replace(HELPER, model=None)) as url:
        reply = httpx.post(f"{url}/chat/completions", json={"model": "helper", "messages": USER})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "model" and "preset 'helper' names no model" in error["message"]
    assert engine.calls == []


def test_a_presets_model_is_launched_on_demand_with_the_presets_options(tmp_path: Path) -> None:
    write_gguf(tmp_path / "little.gguf", name="little")
    preset = replace(HELPER, model="little.gguf", launch=LaunchOptions(n_ctx=777))
    idle = replace(HELPER, name="idle", model="not-running")
    manager = EngineManager(engine_factory=lambda name: FakeEngine())
    config = replace(default_config(), presets={"helper": preset, "idle": idle}, models_dir=tmp_path)
    with served({}, serve=ServeConfig(launch_on_demand=True), manager=manager, config=config) as s:
        reply = httpx.post(f"{s.url}/chat/completions", json={"model": "helper", "messages": USER}, timeout=30)
        running = manager.instances()
    with served({}, manager=EngineManager(), config=config) as s:
        listed = [m["id"] for m in httpx.get(f"{s.url}/models").json()["data"]]
    assert reply.status_code == 200, reply.text
    assert [i.options.n_ctx for i in running] == [777]
    assert listed == []  # neither preset can be served without launch on demand
