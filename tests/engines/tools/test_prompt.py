"""Tools and past calls reach the template: natively for a template that reads `tools`, as a system message and
Hermes-style text for one that does not (Gemma's)."""

from __future__ import annotations

import json

from engines.templates.chat import load_builtin_template, render_chat
from engines.tools.prompt import template_takes_tools
from engines.types import ChatMessage, Tool, ToolCall

QWEN_LIKE = (
    "{%- if tools %}<|im_start|>system\n# Tools\n{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}"
    "<|im_end|>\n{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant\n"
    "{%- for c in m.tool_calls %}<tool_call>{{ {'name': c.function.name, 'arguments': c.function.arguments} | tojson }}"
    "</tool_call>{%- endfor %}<|im_end|>\n"
    "{%- elif m.role == 'tool' %}<|im_start|>user\n<tool_response>{{ m.content }}</tool_response><|im_end|>\n"
    "{%- else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)
WEATHER = Tool("get_weather", "Weather now", json.dumps({"type": "object", "properties": {"city": {"type": "string"}}}))
HISTORY = [
    ChatMessage("user", "Weather in Paris?"),
    ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
    ChatMessage("tool", "18 C, sunny", tool_call_id="call_1", name="get_weather"),
]


def render(template: str, messages: list[ChatMessage], tools: tuple[Tool, ...] = ()) -> str:
    return render_chat(template, messages, bos_token="<bos>", eos_token="<eos>", tools=tools)


def test_a_template_that_reads_tools_gets_them_and_the_calls_in_openai_shapes() -> None:
    assert template_takes_tools(QWEN_LIKE)
    prompt = render(QWEN_LIKE, HISTORY, (WEATHER,))
    assert '"name": "get_weather"' in prompt and '"description": "Weather now"' in prompt
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' in prompt
    assert "<tool_response>18 C, sunny</tool_response>" in prompt


def test_gemma_gets_the_tools_in_its_first_user_turn_and_results_as_a_user_turn() -> None:
    gemma = load_builtin_template("gemma3")
    assert not template_takes_tools(gemma)
    prompt = render(gemma, [ChatMessage("system", "Be brief."), *HISTORY], (WEATHER,))
    assert prompt.count("<start_of_turn>user") == 2  # roles still alternate: gemma's template insists
    assert "Be brief." in prompt and "<tool_call>" in prompt and '"name": "get_weather"' in prompt
    assert "<tool_response>\nget_weather: 18 C, sunny\n</tool_response>" in prompt


def test_without_tools_or_tool_turns_the_prompt_is_as_before() -> None:
    gemma = load_builtin_template("gemma3")
    plain = [ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello"), ChatMessage("user", "Bye")]
    assert "tool" not in render(gemma, plain)
