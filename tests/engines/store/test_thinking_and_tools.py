"""The chat store keeps a reply's thinking and tool calls, tool results, and migrates older files to hold them."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines.errors import BadRequest
from engines.store import schema as store_schema
from engines.store.sessions import LATEST_VERSION, Store, TurnMetrics, params_from_json, params_to_json
from engines.types import (
    ChatMessage,
    Delta,
    Done,
    Error,
    Metrics,
    Params,
    Reasoning,
    StreamEvent,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

V6 = 6
"""The schema before thinking and tool calls were stored."""


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "llm-tui.db") as s:
        yield s


def conn_of(store: Store) -> sqlite3.Connection:
    assert store._conn is not None
    return store._conn


def stored_row(store: Store, message_id: int) -> sqlite3.Row:
    row = conn_of(store).execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
    assert row is not None
    return row  # type: ignore[no-any-return]


# --- migration ------------------------------------------------------------------------------------


def make_v6_database(path: Path) -> None:
    """A file as the previous llm-tui left it: schema 6 with a chat, a reply with metrics and an image."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute("PRAGMA foreign_keys = ON")
        for number, migration in enumerate(store_schema.MIGRATIONS[:V6], start=1):
            migration(raw)
            raw.execute(f"PRAGMA user_version = {number}")
        raw.execute(
            "INSERT INTO sessions (id, title, created_at, updated_at, model, system_prompt)"
            " VALUES (1, 'Old chat', 10, 20, 'gemma', 'Be brief.')"
        )
        raw.execute(
            "INSERT INTO messages (id, session_id, seq, role, content, status, created_at, updated_at, images_json,"
            " audio) VALUES (1, 1, 0, 'user', 'hello', 'complete', 11, 11, '[\"/tmp/a.png\"]', '/tmp/a.wav')"
        )
        raw.execute(
            "INSERT INTO messages (id, session_id, seq, role, content, model, engine, status, created_at,"
            " updated_at) VALUES (2, 1, 1, 'assistant', 'hi there', 'gemma', 'llama.cpp', 'complete', 12, 13)"
        )
        raw.execute(
            "INSERT INTO turn_metrics (message_id, ttft_ms, tokens_per_s, total_ms, prompt_tokens,"
            " completion_tokens, finish_reason) VALUES (2, 80.0, 40.0, 300.0, 9, 3, 'stop')"
        )


def test_a_version_6_database_migrates_keeping_its_chat(tmp_path: Path) -> None:
    path = tmp_path / "llm-tui.db"
    make_v6_database(path)
    with Store(path) as store:
        conn = conn_of(store)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        user, reply = store.messages(1)
        assert (user.role, user.content, user.images, user.audio, user.created_at) == (
            "user",
            "hello",
            ("/tmp/a.png",),
            "/tmp/a.wav",
            11,
        )
        assert (reply.content, reply.model, reply.engine, reply.updated_at) == ("hi there", "gemma", "llama.cpp", 13)
        assert reply.metrics == TurnMetrics(80.0, 40.0, 300.0, 9, 3, "stop")  # no thinking, no reply TTFT
        assert (reply.reasoning, reply.tool_calls, reply.tool_call_id, reply.tool_name) == ("", (), None, None)
        # The rebuilt tables keep their rules: tool messages are allowed, metrics still go with their message.
        store.add_tool_result(1, "call_1", "clock", "12:00")
        store.add_message(1, "user", "next")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not {"messages_v7", "turn_metrics_v6"} & tables
        store.delete_session(1)
        assert conn.execute("SELECT count(*) FROM turn_metrics").fetchone()[0] == 0


def test_a_migrated_file_has_the_schema_of_a_new_one(tmp_path: Path) -> None:
    make_v6_database(tmp_path / "old.db")

    def schema(path: Path) -> list[tuple[str, str]]:
        with Store(path) as store:
            rows = conn_of(store).execute(
                "SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
            )
            return [(r[0], r[1]) for r in rows]

    assert schema(tmp_path / "old.db") == schema(tmp_path / "new.db")


def test_the_migration_is_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "llm-tui.db"
    make_v6_database(path)
    migration = store_schema.MIGRATIONS[V6]

    def fails_at_the_end(conn: sqlite3.Connection) -> None:
        migration(conn)  # every table already rebuilt when it fails
        raise RuntimeError("disk trouble")

    monkeypatch.setattr(store_schema, "MIGRATIONS", (*store_schema.MIGRATIONS[:V6], fails_at_the_end))
    with pytest.raises(RuntimeError, match="disk trouble"):
        Store(path)
    with contextlib.closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == V6
        assert raw.execute("SELECT id, content FROM messages ORDER BY id").fetchall() == [(1, "hello"), (2, "hi there")]
        assert raw.execute("SELECT message_id, completion_tokens FROM turn_metrics").fetchall() == [(2, 3)]
        columns = {r[1] for r in raw.execute("PRAGMA table_info(messages)")}
        assert "reasoning" not in columns
    monkeypatch.undo()
    with Store(path) as store:  # the next start migrates it
        assert store.messages(1)[1].metrics == TurnMetrics(80.0, 40.0, 300.0, 9, 3, "stop")


# --- the reply writer -----------------------------------------------------------------------------


def test_thinking_is_written_with_the_text_on_the_same_schedule(store: Store) -> None:
    session = store.create_session()
    clock = FakeClock()
    writer = store.begin_reply(session.id, model="m", engine="fake", params=None, flush_interval_s=1.0, clock=clock)
    writer.feed(Reasoning("Let me "))
    clock.now += 0.5
    writer.feed(Reasoning("think."))
    assert stored_row(store, writer.message_id)["reasoning"] is None and writer.flushes == 0
    clock.now += 0.5
    writer.feed(Reasoning(" Done."))  # a full interval: thinking alone is enough to write
    assert stored_row(store, writer.message_id)["reasoning"] == "Let me think. Done." and writer.flushes == 1
    writer.feed(Delta("Answer"))
    clock.now += 1.0
    writer.feed(Delta("!"))
    record = store.get_message(writer.message_id)
    assert (record.reasoning, record.content, record.status) == ("Let me think. Done.", "Answer!", "streaming")
    assert (writer.reasoning, writer.text) == ("Let me think. Done.", "Answer!")


def test_tool_calls_are_assembled_and_written_when_the_reply_ends(store: Store) -> None:
    session = store.create_session()
    store.add_message(session.id, "user", "Weather in Paris and Oslo?")
    writer = store.begin_reply(session.id, model="m", engine="fake", params=None, flush_interval_s=0.0)
    events: list[StreamEvent] = [
        Reasoning("Two cities: two calls."),
        Delta("Checking."),
        ToolCallDelta(0, "call_a", "weather", '{"city": '),
        ToolCallDelta(1, "call_b", "weather", '{"city": "Oslo"}'),
        ToolCallDelta(0, arguments='"Paris"}'),
        Delta(" One moment."),  # a flush while calls are arriving leaves them out: their JSON is unfinished
    ]
    for event in events:
        writer.feed(event)
    assert not writer.finished  # pieces of calls are not the end of the reply
    assert stored_row(store, writer.message_id)["tool_calls_json"] is None
    assert store.get_message(writer.message_id).content == "Checking. One moment."
    calls = (ToolCall("call_a", "weather", '{"city": "Paris"}'), ToolCall("call_b", "weather", '{"city": "Oslo"}'))
    assert writer.tool_calls == calls
    done = Done(
        Usage(30, 25, reasoning_tokens=6),
        "tool_calls",
        Metrics(ttft_ms=50.0, tokens_per_s=90.0, total_ms=400.0, reply_ttft_ms=120.0),
    )
    writer.feed(done)
    final = writer.final
    assert final is not None and final.status == "complete" and final.tool_calls == calls
    assert store.get_message(writer.message_id) == final
    assert final.reasoning == "Two cities: two calls."
    assert final.metrics == TurnMetrics(50.0, 90.0, 400.0, 30, 25, "tool_calls", False, 6, 120.0)


def test_a_failed_reply_keeps_its_thinking_and_calls(store: Store) -> None:
    session = store.create_session()
    writer = store.begin_reply(session.id, model="m", engine="fake", params=None)
    writer.feed(Reasoning("hmm"))
    writer.feed(ToolCallDelta(0, "c1", "search", '{"q": "x"'))
    writer.feed(Error("connection dropped", kind="truncated"))
    stored = store.get_message(writer.message_id)
    assert (stored.status, stored.reasoning, stored.tool_calls) == (
        "error",
        "hmm",
        (ToolCall("c1", "search", '{"q": "x"'),),
    )
    writer.feed(Reasoning("late"))  # kept, not raised on the worker thread, and not written
    assert writer.save_error is not None and "already ended" in str(writer.save_error)
    assert store.get_message(writer.message_id) == stored


def test_a_crash_mid_reply_keeps_the_text_and_thinking_so_far(tmp_path: Path) -> None:
    path = tmp_path / "llm-tui.db"
    with Store(path) as store:
        session = store.create_session()
        store.add_message(session.id, "user", "question")
        writer = store.begin_reply(session.id, model="m", engine="fake", params=None, flush_interval_s=0.0)
        writer.feed(Reasoning("thinking it over"))
        writer.feed(Delta("half an ans"))
        writer.feed(ToolCallDelta(0, "c1", "search", "{"))
        # the process "dies" here: the store is closed without finishing the reply
    with Store(path) as store:
        reply = store.messages(session.id)[-1]
        assert (reply.status, reply.content, reply.reasoning, reply.tool_calls) == (
            "interrupted",
            "half an ans",
            "thinking it over",
            (),
        )
        assert store.chat_messages(session.id)[-1] == ChatMessage("assistant", "half an ans")


# --- tool results and the history given back to the model ------------------------------------------


def test_add_tool_result_appends_a_tool_message(store: Store) -> None:
    session = store.create_session()
    record = store.add_tool_result(session.id, "call_a", "weather", '{"temp": 21}')
    assert (record.role, record.content, record.tool_call_id, record.tool_name, record.status) == (
        "tool",
        '{"temp": 21}',
        "call_a",
        "weather",
        "complete",
    )
    assert store.messages(session.id) == [record]
    with pytest.raises(BadRequest, match="tool message"):
        store.add_message(session.id, "tool", "no id")
    with pytest.raises(BadRequest, match="tool message"):
        store.add_message(session.id, "user", "x", tool_call_id="call_a")
    with pytest.raises(BadRequest, match="only an assistant"):
        store.add_message(session.id, "user", "x", reasoning="no")


def test_history_passes_calls_and_results_through_and_leaves_thinking_out(store: Store) -> None:
    session = store.create_session(system_prompt="Use tools.")
    store.add_message(session.id, "user", "Weather in Paris?")
    writer = store.begin_reply(session.id, model="m", engine="fake", params=None)
    writer.feed(Reasoning("I should call the weather tool."))
    writer.feed(ToolCallDelta(0, "call_a", "weather", '{"city": "Paris"}'))
    writer.feed(Done(Usage(10, 8, reasoning_tokens=5), "tool_calls"))
    store.add_tool_result(session.id, "call_a", "weather", '{"temp": 21}')
    reply = store.begin_reply(session.id, model="m", engine="fake", params=None)
    reply.feed(Reasoning("21 degrees is mild."))
    reply.feed(Delta("It is 21 °C."))
    reply.feed(Done(Usage(30, 12, reasoning_tokens=6)))
    assert store.chat_messages(session.id) == [
        ChatMessage("system", "Use tools."),
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_a", "weather", '{"city": "Paris"}'),)),
        ChatMessage("tool", '{"temp": 21}', tool_call_id="call_a", name="weather"),
        ChatMessage("assistant", "It is 21 °C."),
    ]
    assert "degrees" not in repr(store.chat_messages(session.id)) and "should call" not in repr(
        store.chat_messages(session.id)
    )


def test_history_drops_calls_without_results_and_results_without_calls(store: Store) -> None:
    session = store.create_session()
    store.add_message(session.id, "user", "one")
    # Two calls, only the first answered (the user stopped before the second tool ran).
    store.add_message(
        session.id, "assistant", "Looking.", tool_calls=[ToolCall("call_0", "a", "{}"), ToolCall("call_1", "b", "{}")]
    )
    store.add_tool_result(session.id, "call_0", "a", "A")
    store.add_message(session.id, "user", "two")
    # A reply that only called a tool nobody answered says nothing: it is left out whole.
    store.add_message(session.id, "assistant", "", tool_calls=[ToolCall("call_0", "a", "{}")])
    store.add_message(session.id, "user", "three")
    # A result that follows no call (its reply failed and is not replayed) is left out.
    failed = store.begin_reply(session.id, model="m", engine="fake", params=None)
    failed.feed(ToolCallDelta(0, "call_0", "a", "{}"))
    failed.feed(Error("engine crashed"))
    store.add_tool_result(session.id, "call_0", "a", "orphan")
    # Ids repeat across replies (engines that send none get call_0, call_1...): pairing is by position.
    store.add_message(session.id, "assistant", "", tool_calls=[ToolCall("call_0", "c", '{"n": 1}')])
    store.add_tool_result(session.id, "call_0", "c", "C")
    assert store.chat_messages(session.id) == [
        ChatMessage("user", "one"),
        ChatMessage("assistant", "Looking.", tool_calls=(ToolCall("call_0", "a", "{}"),)),
        ChatMessage("tool", "A", tool_call_id="call_0", name="a"),
        ChatMessage("user", "two"),
        ChatMessage("user", "three"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_0", "c", '{"n": 1}'),)),
        ChatMessage("tool", "C", tool_call_id="call_0", name="c"),
    ]


def test_params_with_tools_round_trip() -> None:
    params = Params(
        tools=(Tool("weather", "Current weather", '{"type": "object"}'),),
        tool_choice="required",
        tool_name="weather",
        parallel_tool_calls=False,
    )
    assert params_from_json(params_to_json(params)) == params
    junk = '{"tool_choice": "sometimes", "tools": [{"name": 1}, "x"], "parallel_tool_calls": "no"}'
    assert params_from_json(junk) == Params()
