"""Exporting a chat session as Markdown and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from engines.errors import BadRequest
from engines.store.export import (
    default_export_name,
    export_session,
    session_to_json,
    session_to_markdown,
)
from engines.store.sessions import SessionRecord, Store
from engines.types import Delta, Done, Metrics, Params, Reasoning, ToolCallDelta, Usage

CODE_REPLY = "Here you go:\n\n```python\ndef f(x):\n    return x  # keep   spacing\n```\n\nDone."


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "llm-tui.db") as s:
        yield s


def make_session(store: Store) -> SessionRecord:
    session = store.create_session(
        "Python: help!", model="gemma-3-270m", engine="llama.cpp", system_prompt="Answer in code.", params=Params(0.3)
    )
    store.add_message(session.id, "user", "Write an identity function.")
    writer = store.begin_reply(session.id, model="gemma-3-270m", engine="llama.cpp", params=Params(0.3))
    writer.append(CODE_REPLY)
    writer.finish(Done(Usage(20, 17), "stop", Metrics(ttft_ms=85.0, tokens_per_s=51.25, total_ms=420.0)))
    store.add_message(session.id, "user", "And in Rust?")
    failed = store.begin_reply(session.id, model="other-model", engine="ollama", params=None)
    failed.append("```rust\nfn f")
    failed.fail("connection lost")
    return store.get_session(session.id)


def test_markdown_has_title_model_roles_metrics_and_verbatim_code(store: Store) -> None:
    session = make_session(store)
    md = session_to_markdown(session, store.messages(session.id))
    lines = md.splitlines()
    assert lines[0] == "# Python: help!"
    # The session shows the model last used; a reply from another model says which one wrote it.
    assert "Model: other-model" in lines[2] and "Engine: ollama" in lines[2]
    assert "## System prompt\n\nAnswer in code.\n" in md
    assert [line for line in lines if line.startswith("## ")] == [
        "## System prompt",
        "## User",
        "## Assistant",
        "## User",
        "## Assistant",
    ]
    assert CODE_REPLY in md  # verbatim, indentation and all
    assert "*Model: gemma-3-270m · 17 tokens · 51.2 tok/s · first token 85 ms · total 0.42 s · finish: stop*" in md
    # The failed reply's open fence is closed, so nothing after it is swallowed into the code block.
    assert "```rust\nfn f\n```\n\n*Failed: connection lost*" in md
    assert md.endswith("\n") and not md.endswith("\n\n")


def test_markdown_of_an_empty_session(store: Store) -> None:
    session = store.create_session("Empty")
    md = session_to_markdown(session, [])
    assert md.startswith("# Empty\n\n*Started ") and "##" not in md


def test_json_has_the_documented_shape_and_round_trips(store: Store) -> None:
    session = make_session(store)
    messages = store.messages(session.id)
    doc = json.loads(session_to_json(session, messages))
    assert set(doc) == {
        "format",
        "version",
        "id",
        "title",
        "model",
        "engine",
        "system_prompt",
        "params",
        "created_at",
        "updated_at",
        "messages",
    }
    assert (doc["format"], doc["version"], doc["id"], doc["title"]) == (
        "llm-tui-session",
        1,
        session.id,
        "Python: help!",
    )
    assert (doc["model"], doc["engine"], doc["system_prompt"]) == ("other-model", "ollama", "Answer in code.")
    assert doc["params"]["temperature"] == 0.3 and doc["params"]["stop"] == []
    assert datetime.fromisoformat(doc["created_at"]).timestamp() == pytest.approx(session.created_at, abs=0.001)
    assert [m["role"] for m in doc["messages"]] == ["user", "assistant", "user", "assistant"]
    for m in doc["messages"]:
        assert set(m) == {
            "role",
            "content",
            "status",
            "model",
            "engine",
            "created_at",
            "error",
            "reasoning",
            "tool_calls",
            "tool_call_id",
            "tool_name",
            "metrics",
        }
    reply = doc["messages"][1]
    assert (reply["content"], reply["status"]) == (CODE_REPLY, "complete")
    assert reply["metrics"] == {
        "ttft_ms": 85.0,
        "tokens_per_s": 51.25,
        "total_ms": 420.0,
        "prompt_tokens": 20,
        "completion_tokens": 17,
        "finish_reason": "stop",
        "reasoning_tokens": 0,
        "reply_ttft_ms": None,
    }
    assert (reply["reasoning"], reply["tool_calls"], reply["tool_call_id"], reply["tool_name"]) == ("", [], None, None)
    assert doc["messages"][0]["metrics"] is None
    assert (doc["messages"][3]["status"], doc["messages"][3]["error"]) == ("error", "connection lost")


def make_tool_session(store: Store) -> SessionRecord:
    session = store.create_session("Weather", model="qwen3", engine="ollama")
    store.add_message(session.id, "user", "Weather in Paris?")
    writer = store.begin_reply(session.id, model="qwen3", engine="ollama", params=None)
    writer.feed(Reasoning("The user wants **weather**.\n\nCall the tool."))
    writer.feed(Delta("Let me check."))
    writer.feed(ToolCallDelta(0, "call_a", "weather", '{\n  "city": "Paris",\n  "unit": "`C`"\n}'))
    writer.feed(ToolCallDelta(1, "call_b", "clock", "not json\nat all"))
    writer.feed(Done(Usage(40, 30, reasoning_tokens=12), "tool_calls", Metrics(50.0, 60.0, 500.0, 0.0, 210.0)))
    store.add_tool_result(session.id, "call_a", "weather", '{"temp": 21}\n```\nnot a fence end')
    store.add_tool_result(session.id, "call_b", "clock", "12:00")
    reply = store.begin_reply(session.id, model="qwen3", engine="ollama", params=None)
    reply.feed(Delta("It is 21 °C at noon."))
    reply.feed(Done(Usage(80, 9)))
    return store.get_session(session.id)


def test_markdown_folds_thinking_and_tool_results_and_shows_each_call(store: Store) -> None:
    session = make_tool_session(store)
    md = session_to_markdown(session, store.messages(session.id))
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings == ["## User", "## Assistant", "## Tool", "## Tool", "## Assistant"]
    thinking = "<details><summary>Thinking</summary>\n\nThe user wants **weather**.\n\nCall the tool.\n\n</details>\n\n"
    assert "## Assistant\n\n" + thinking + "Let me check.\n\n" in md  # folded, before the reply
    assert md.count("<summary>Thinking</summary>") == 1  # the second reply did no thinking
    # One line per call, name and arguments as code (a backtick inside takes a longer delimiter).
    assert '- Tool call `weather` with ``{"city": "Paris", "unit": "`C`"}``\n' in md
    assert "- Tool call `clock` with `not json at all`\n" in md
    result = '<details><summary>Result of weather</summary>\n\n````\n{"temp": 21}\n```\nnot a fence end\n````'
    assert "## Tool\n\n" + result + "\n\n</details>\n" in md
    assert "<details><summary>Result of clock</summary>\n\n```\n12:00\n```\n\n</details>" in md
    assert "*30 tokens (12 thinking) · 60.0 tok/s · first token 50 ms · first reply token 210 ms" in md
    assert md.rstrip().endswith("It is 21 °C at noon.\n\n*9 tokens · finish: stop*")


def test_json_carries_thinking_tool_calls_and_results(store: Store) -> None:
    session = make_tool_session(store)
    doc = json.loads(session_to_json(session, store.messages(session.id)))
    user, calling, weather, clock, answer = doc["messages"]
    assert calling["reasoning"] == "The user wants **weather**.\n\nCall the tool."
    assert calling["content"] == "Let me check."
    assert calling["tool_calls"] == [
        {"id": "call_a", "name": "weather", "arguments": '{\n  "city": "Paris",\n  "unit": "`C`"\n}'},
        {"id": "call_b", "name": "clock", "arguments": "not json\nat all"},
    ]
    assert calling["metrics"]["reasoning_tokens"] == 12 and calling["metrics"]["reply_ttft_ms"] == 210.0
    assert calling["metrics"]["finish_reason"] == "tool_calls"
    assert (weather["role"], weather["tool_call_id"], weather["tool_name"]) == ("tool", "call_a", "weather")
    assert (clock["role"], clock["content"], clock["tool_call_id"], clock["tool_name"]) == (
        "tool",
        "12:00",
        "call_b",
        "clock",
    )
    assert (answer["reasoning"], answer["tool_calls"], answer["metrics"]["reasoning_tokens"]) == ("", [], 0)
    assert (user["tool_call_id"], user["tool_name"]) == (None, None)


def test_export_session_writes_atomically(store: Store, tmp_path: Path) -> None:
    session = make_session(store)
    out = tmp_path / "exports"
    out.mkdir()
    md_path = export_session(store, session.id, out, "markdown")
    assert md_path == out / f"python-help-{session.id}.md"
    assert md_path.read_text(encoding="utf-8") == session_to_markdown(session, store.messages(session.id))
    json_path = export_session(store, session.id, out / "chat.json", "json")
    assert json.loads(json_path.read_text(encoding="utf-8"))["id"] == session.id
    json_path.write_text("old")
    export_session(store, session.id, json_path, "json")  # replaces an existing file
    assert json.loads(json_path.read_text(encoding="utf-8"))["title"] == "Python: help!"
    assert sorted(p.name for p in out.iterdir()) == sorted([md_path.name, "chat.json"])  # no temp files left
    with pytest.raises(BadRequest, match="markdown or json"):
        export_session(store, session.id, out / "x.txt", "text")  # type: ignore[arg-type]
    assert not (out / "x.txt").exists()


@pytest.mark.parametrize(
    ("title", "name"),
    [
        ("Python: help!", "python-help-7.md"),
        ("Café über naïve", "cafe-uber-naive-7.md"),
        ("../../etc/passwd", "etc-passwd-7.md"),
        ("日本語", "chat-7.md"),
        ("x" * 200, "x" * 60 + "-7.md"),
    ],
)
def test_default_export_name_is_a_safe_slug(title: str, name: str) -> None:
    session = SessionRecord(id=7, title=title, created_at=0.0, updated_at=0.0)
    assert default_export_name(session, "markdown") == name
    assert default_export_name(session, "json") == name.removesuffix(".md") + ".json"
