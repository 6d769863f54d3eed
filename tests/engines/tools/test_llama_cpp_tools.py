"""Gemma 3 270M on llama.cpp forced to call a function: the grammar of the call's schema makes the arguments
valid, whatever this small base model would have written."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from engines.adapters.llama_cpp import LlamaCppEngine
from engines.manager import EngineManager
from engines.templates.chat import load_builtin_template
from engines.types import ChatMessage, LaunchOptions, ModelSpec, Params, Tool

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing"),
    pytest.mark.real_model,
]

WEATHER_ARGS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER = Tool("get_weather", "The weather in a city now", json.dumps(WEATHER_ARGS))
TIME = Tool("get_time", "The time in a timezone", json.dumps({"type": "object", "properties": {}}))


@pytest.fixture(scope="module")
def gemma(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineManager, str]]:
    spec = ModelSpec(id="gemma-3-270m", path=gemma_path, chat_template=load_builtin_template("gemma3"))
    with EngineManager() as manager:
        engine = LlamaCppEngine(selftest_cache_dir=tmp_path_factory.mktemp("selftest"))
        yield manager, manager.start(spec, LaunchOptions(n_ctx=2048, n_threads=2), engine)


ASK = [ChatMessage("user", "What is the weather in Paris, in celsius?")]


@pytest.mark.parametrize("params", [Params(tool_name="get_weather"), Params(tool_choice="required")])
def test_a_forced_call_names_the_function_and_its_arguments_validate(
    gemma: tuple[EngineManager, str], params: Params
) -> None:
    manager, run_id = gemma
    tools = (WEATHER,) if params.tool_name else (WEATHER, TIME)
    forced = Params(
        temperature=0, max_tokens=80, tools=tools, tool_choice=params.tool_choice, tool_name=params.tool_name
    )
    result = manager.submit(run_id, ASK, forced).result()
    assert result.error is None and result.done is not None, result.error
    assert result.done.finish_reason == "tool_calls"
    [call] = result.tool_calls
    assert call.name in {t.name for t in tools} and call.id.startswith("call_")
    if call.name == "get_weather":
        jsonschema.validate(json.loads(call.arguments), WEATHER_ARGS)
    assert result.text == ""


def test_auto_without_a_call_is_plain_text(gemma: tuple[EngineManager, str]) -> None:
    manager, run_id = gemma
    result = manager.submit(run_id, ASK, Params(temperature=0, max_tokens=12, tools=(WEATHER,))).result()
    assert result.done is not None and result.error is None
    assert result.tool_calls == () or result.done.finish_reason == "tool_calls"
    assert result.text or result.tool_calls  # either way nothing the model wrote is lost


@pytest.mark.parametrize("parallel", [1, 2], ids=["one-request", "slots"])
def test_a_template_that_opens_the_thinking_block_gives_thinking_not_reply(
    gemma_path: Path, tmp_path_factory: pytest.TempPathFactory, parallel: int
) -> None:
    """DeepSeek-R1 distills and QwQ end the generation prompt with `<think>`: the reply starts as thinking. Gemma
    under such a template never writes `</think>` in 24 tokens, so all of it is thinking, counted as such."""
    gemma = load_builtin_template("gemma3")
    template = gemma.replace("{{'<start_of_turn>model\\n'}}", "{{'<start_of_turn>model\\n<think>\\n'}}")
    assert template != gemma
    spec = ModelSpec(id="gemma-3-270m", path=gemma_path, chat_template=template)
    with EngineManager() as manager:
        engine = LlamaCppEngine(selftest_cache_dir=tmp_path_factory.mktemp("selftest"))
        run_id = manager.start(spec, LaunchOptions(n_ctx=1024, n_threads=2, parallel=parallel), engine)
        result = manager.submit(run_id, ASK, Params(temperature=0, max_tokens=24)).result()
    assert result.done is not None and result.error is None
    assert result.reasoning.strip() and result.text == ""
    assert result.done.usage.reasoning_tokens == result.done.usage.completion_tokens
