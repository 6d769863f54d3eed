"""The chat store: schema and migrations, sessions, messages, streaming replies, crash recovery."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines.adapters.fake import FakeEngine
from engines.errors import BadRequest, LlmTuiError
from engines.manager import EngineManager
from engines.store import schema as store_schema
from engines.store.sessions import (
    LATEST_VERSION,
    MessageNotFound,
    SchemaTooNew,
    SessionNotFound,
    Store,
    StoreError,
    TurnMetrics,
    params_from_json,
    params_to_json,
)
from engines.types import ChatMessage, Delta, Done, Error, Metrics, ModelSpec, Params, Usage

HELPER = Path(__file__).parents[1] / "crash_writer.py"
REPO = Path(__file__).resolve().parents[3]


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


def schema_of(store: Store) -> list[tuple[str, str]]:
    """Our tables and indexes (not SQLite's own, such as the statistics PRAGMA optimize keeps)."""
    rows = conn_of(store).execute("SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
    return [(r[0], r[1]) for r in rows]


# --- schema ---------------------------------------------------------------------------------------


def test_new_database_is_created_migrated_and_configured(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "data" / "llm-tui.db"
    with Store(path) as store:
        conn = conn_of(store)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"sessions", "messages", "turn_metrics"} <= tables
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "sessions_by_updated" in indexes
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # chats are private


def test_reopening_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "llm-tui.db"
    with Store(path) as store:
        session = store.create_session("Kept")
        schema = schema_of(store)
    for _ in range(2):
        with Store(path) as store:
            assert conn_of(store).execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
            assert schema_of(store) == schema
            assert [s.id for s in store.list_sessions()] == [session.id]
            assert store.recovered == 0


def test_newer_schema_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "llm-tui.db"
    with contextlib.closing(sqlite3.connect(path)) as raw:
        raw.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match=rf"newer llm-tui \(schema {LATEST_VERSION + 1}.*upgrade") as info:
        Store(path)
    assert isinstance(info.value, LlmTuiError)


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "llm-tui.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="move it aside"):
        Store(path)


def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "llm-tui.db"
    Store(path).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE future_things (id INTEGER PRIMARY KEY)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(store_schema, "MIGRATIONS", (*store_schema.MIGRATIONS, broken))
    monkeypatch.setattr(store_schema, "LATEST_VERSION", LATEST_VERSION + 1)
    with pytest.raises(RuntimeError, match="migration bug"):
        Store(path)
    with contextlib.closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name = 'future_things'").fetchone()[0] == 0


def test_role_check_allows_tool_and_nothing_else(store: Store) -> None:
    session = store.create_session()
    insert = (
        "INSERT INTO messages (session_id, seq, role, content, status, created_at, updated_at)"
        " VALUES (?, ?, ?, 'x', 'complete', 0, 0)"
    )
    conn_of(store).execute(insert, (session.id, 0, "tool"))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn_of(store).execute(insert, (session.id, 1, "robot"))
    with pytest.raises(BadRequest, match="role"):
        store.add_message(session.id, "robot", "x")  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="status"):
        store.add_message(session.id, "user", "x", status="done")  # type: ignore[arg-type]


# --- sessions -------------------------------------------------------------------------------------


def test_session_crud(store: Store) -> None:
    params = Params(temperature=0.7, stop=("</s>",), seed=3)
    session = store.create_session(
        "  First   chat ", model="gemma", engine="llama.cpp", system_prompt="Be brief.", params=params
    )
    assert session.title == "First chat"
    assert store.get_session(session.id) == session
    assert store.create_session().title == "New chat"

    store.rename_session(session.id, "Renamed")
    assert store.get_session(session.id).title == "Renamed"
    with pytest.raises(BadRequest):
        store.rename_session(session.id, "   ")

    updated = store.update_session(session.id, model="qwen")
    assert (updated.model, updated.engine, updated.system_prompt, updated.params) == (
        "qwen",
        "llama.cpp",
        "Be brief.",
        params,
    )
    updated = store.update_session(session.id, system_prompt=None, params=Params(top_k=5))
    assert (updated.model, updated.system_prompt, updated.params) == ("qwen", None, Params(top_k=5))
    assert store.get_session(session.id) == updated

    store.delete_session(session.id)
    for call in (
        lambda: store.get_session(session.id),
        lambda: store.delete_session(session.id),
        lambda: store.rename_session(session.id, "x"),
        lambda: store.update_session(session.id, model="x"),
        lambda: store.add_message(session.id, "user", "x"),
        lambda: store.messages(session.id),
    ):
        with pytest.raises(SessionNotFound):
            call()


def test_sessions_list_newest_updated_first(store: Store) -> None:
    a, b, c = (store.create_session(t) for t in ("a", "b", "c"))
    assert [s.title for s in store.list_sessions()] == ["c", "b", "a"]
    store.add_message(a.id, "user", "hello")
    assert [s.title for s in store.list_sessions()] == ["a", "c", "b"]
    store.rename_session(b.id, "b2")
    assert [s.title for s in store.list_sessions()] == ["b2", "a", "c"]
    assert store.get_session(b.id).updated_at >= store.get_session(a.id).updated_at >= c.updated_at


def test_search_matches_titles_and_messages_ignoring_case_and_wildcards(store: Store) -> None:
    trip = store.create_session("Trip to Lisbon")
    percent = store.create_session("Discounts")
    store.add_message(percent.id, "user", "Is 100% off real?")
    plain = store.create_session("Numbers")
    store.add_message(plain.id, "user", "100 apples off the tree")
    snake = store.create_session("Code")
    store.add_message(snake.id, "assistant", "use snake_case names")
    camel = store.create_session("More code")
    store.add_message(camel.id, "assistant", "use snakeXcase names")

    def ids(query: str | None) -> set[int]:
        return {s.id for s in store.list_sessions(query)}

    assert ids("lisbon") == {trip.id}
    assert ids("APPLES") == {plain.id}
    assert ids("100%") == {percent.id}
    assert ids("%") == {percent.id}
    assert ids("e_c") == {snake.id}
    assert ids("_") == {snake.id}
    assert ids("\\") == set()
    assert ids("nothing like it") == set()
    assert len(ids(None)) == len(ids("  ")) == 5


def test_delete_cascades_to_messages_and_metrics(store: Store) -> None:
    session = store.create_session()
    store.add_message(session.id, "user", "hi")
    writer = store.begin_reply(session.id, model="m", engine="fake", params=None)
    writer.append("hello")
    writer.finish(Done(Usage(3, 1), "stop", Metrics(5.0, 0.0, 6.0)))
    other = store.create_session()
    store.add_message(other.id, "user", "kept")
    store.delete_session(session.id)
    conn = conn_of(store)
    assert conn.execute("SELECT count(*) FROM messages WHERE session_id = ?", (session.id,)).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM turn_metrics").fetchone()[0] == 0
    assert [m.content for m in store.messages(other.id)] == ["kept"]


# --- messages -------------------------------------------------------------------------------------


def test_messages_keep_order_and_truncate_after(store: Store) -> None:
    session = store.create_session()
    for i, role in enumerate(["user", "assistant", "user", "assistant"]):
        store.add_message(session.id, role, f"m{i}")  # type: ignore[arg-type]
    assert [(m.seq, m.content) for m in store.messages(session.id)] == [(0, "m0"), (1, "m1"), (2, "m2"), (3, "m3")]
    store.truncate_after(session.id, 1)
    assert [m.content for m in store.messages(session.id)] == ["m0", "m1"]
    assert store.add_message(session.id, "user", "again").seq == 2
    store.truncate_after(session.id, -1)
    assert store.messages(session.id) == []
    assert store.add_message(session.id, "user", "fresh").seq == 0


def test_add_message_is_durable_before_returning(store: Store, tmp_path: Path) -> None:
    session = store.create_session()
    record = store.add_message(session.id, "user", "hello", model="m", params=Params(max_tokens=9))
    with contextlib.closing(sqlite3.connect(tmp_path / "llm-tui.db")) as other:
        row = other.execute("SELECT content, status, params_json FROM messages WHERE id = ?", (record.id,)).fetchone()
    assert row == ("hello", "complete", params_to_json(Params(max_tokens=9)))
    assert store.get_message(record.id) == record


def test_update_message_edits_text(store: Store) -> None:
    session = store.create_session()
    record = store.add_message(session.id, "user", "helo")
    store.update_message(record.id, "hello")
    edited = store.get_message(record.id)
    assert edited.content == "hello" and edited.updated_at >= record.updated_at
    with pytest.raises(MessageNotFound):
        store.update_message(10_000, "x")
    with pytest.raises(MessageNotFound):
        store.get_message(10_000)


def test_chat_messages_put_the_system_prompt_first_and_skip_failures(store: Store) -> None:
    session = store.create_session(system_prompt="You are terse.")
    store.add_message(session.id, "user", "one")
    store.add_message(session.id, "assistant", "reply one")
    store.add_message(session.id, "user", "two")
    failed = store.begin_reply(session.id, model="m", engine="fake", params=None)
    failed.append("half an ans")
    failed.fail("engine crashed")
    store.add_message(session.id, "user", "three")
    store.add_message(session.id, "assistant", "")  # an empty reply says nothing worth replaying
    store.add_message(session.id, "assistant", "cut short", status="cancelled")
    store.add_message(session.id, "assistant", "until the crash", status="interrupted")
    store.begin_reply(session.id, model="m", engine="fake", params=None)  # the reply being generated now
    assert store.chat_messages(session.id) == [
        ChatMessage("system", "You are terse."),
        ChatMessage("user", "one"),
        ChatMessage("assistant", "reply one"),
        ChatMessage("user", "two"),
        ChatMessage("user", "three"),
        ChatMessage("assistant", "cut short"),
        ChatMessage("assistant", "until the crash"),
    ]
    store.update_session(session.id, system_prompt=None)
    assert store.chat_messages(session.id)[0] == ChatMessage("user", "one")


def test_params_json_round_trips_and_tolerates_junk() -> None:
    params = Params(
        temperature=0.5, top_p=0.9, top_k=40, repetition_penalty=1.1, max_tokens=64, stop=("a", "b"), seed=7
    )
    assert params_from_json(params_to_json(params)) == params
    assert params_from_json(None) is None and params_to_json(None) is None
    assert params_from_json(
        '{"temperature": 1, "mirostat": 2, "top_k": "many", "stop": ["x"], "seed": true}'
    ) == Params(temperature=1.0, stop=("x",))
    assert params_from_json('{"stop": [1, 2]}') == Params()
    assert params_from_json("not json") == Params()
    assert params_from_json("[1, 2]") == Params()


# --- streaming replies ----------------------------------------------------------------------------


def test_reply_writer_writes_at_most_once_per_interval(store: Store) -> None:
    session = store.create_session()
    clock = FakeClock()
    writer = store.begin_reply(session.id, model="m", engine="fake", params=None, flush_interval_s=1.0, clock=clock)
    statements: list[str] = []
    conn_of(store).set_trace_callback(statements.append)

    def stored() -> tuple[str, str]:
        record = store.get_message(writer.message_id)
        return record.content, record.status

    def writes() -> int:
        return sum(s.startswith("UPDATE messages SET content") for s in statements)

    writer.append("Hello")
    assert stored() == ("", "streaming")
    clock.now += 0.5
    writer.append(",")
    clock.now += 0.25
    writer.append(" wor")
    assert stored() == ("", "streaming") and writes() == writer.flushes == 0
    clock.now += 0.25  # a full interval since the reply began
    writer.append("ld")
    assert stored() == ("Hello, world", "streaming") and writes() == writer.flushes == 1
    for _ in range(127):  # many tokens within the next interval: no write
        clock.now += 1 / 128
        writer.append("!")
    assert stored() == ("Hello, world", "streaming") and writes() == 1
    clock.now += 1 / 128
    writer.append("?")
    assert stored() == ("Hello, world" + "!" * 127 + "?", "streaming") and writes() == writer.flushes == 2
    writer.append("")  # empty deltas are ignored
    writer.flush()  # nothing new: no write
    assert writes() == 2
    writer.append(" tail")
    writer.flush()
    assert stored()[0].endswith("? tail") and writes() == 3
    conn_of(store).set_trace_callback(None)


def test_finish_writes_text_status_and_metrics(store: Store) -> None:
    session = store.create_session(model="old")
    store.add_message(session.id, "user", "hi")
    params = Params(temperature=0.2)
    writer = store.begin_reply(session.id, model="gemma", engine="llama.cpp", params=params, clock=FakeClock())
    assert store.get_session(session.id).model == "gemma"  # the session remembers the model last used
    for piece in ["Here", " is", " code:\n```py\nprint(1)\n```"]:
        writer.append(piece)
    record = writer.finish(Done(Usage(12, 5), "stop", Metrics(ttft_ms=80.0, tokens_per_s=42.5, total_ms=200.0)))
    expected = TurnMetrics(80.0, 42.5, 200.0, 12, 5, "stop")
    assert (record.content, record.status, record.metrics) == (
        "Here is code:\n```py\nprint(1)\n```",
        "complete",
        expected,
    )
    assert store.messages(session.id)[-1] == record
    assert record.params == params and record.model == "gemma" and record.engine == "llama.cpp"
    with pytest.raises(StoreError, match="already ended"):
        writer.append("more")

    cancelled = store.begin_reply(session.id, model="gemma", engine="llama.cpp", params=None)
    cancelled.append("Stopp")
    final = cancelled.finish(Done(Usage(12, 1), "cancelled", None))
    assert final.status == "cancelled" and final.content == "Stopp"
    assert store.get_message(final.id).metrics == TurnMetrics(None, None, None, 12, 1, "cancelled")


def test_fail_keeps_partial_text(store: Store) -> None:
    session = store.create_session()
    writer = store.begin_reply(session.id, model="m", engine="fake", params=None)
    writer.feed(Delta("partial "))
    writer.feed(Delta("answer"))
    assert writer.final is None and not writer.finished
    writer.feed(Error("connection dropped", kind="truncated"))
    record = writer.final
    assert record is not None and writer.finished
    stored = store.get_message(writer.message_id)
    assert (stored.content, stored.status, stored.error, stored.metrics) == (
        "partial answer",
        "error",
        "connection dropped",
        None,
    )
    assert stored == record


def test_a_reply_whose_session_was_deleted_is_dropped_quietly(store: Store) -> None:
    session = store.create_session()
    writer = store.begin_reply(session.id, model="m", engine="fake", params=None, flush_interval_s=0.0)
    writer.append("a")
    store.delete_session(session.id)
    writer.append("b")
    record = writer.finish(Done(Usage(1, 2)))
    assert record.content == "ab"
    with pytest.raises(MessageNotFound):
        store.get_message(writer.message_id)


def test_feed_keeps_database_errors_instead_of_raising_on_the_worker(store: Store) -> None:
    session = store.create_session()
    writer = store.begin_reply(session.id, model="m", engine="fake", params=None, flush_interval_s=0.0)
    writer.feed(Delta("saved"))
    store.close()
    writer.feed(Delta(" lost"))
    writer.feed(Done(Usage(1, 2)))
    assert isinstance(writer.save_error, StoreError) and "closed" in str(writer.save_error)
    assert writer.text == "saved lost" and not writer.finished
    with pytest.raises(StoreError, match="closed"):
        writer.finish(Done(Usage(1, 2)))


def test_streaming_reply_becomes_interrupted_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "llm-tui.db"
    with Store(path) as store:
        session = store.create_session()
        store.add_message(session.id, "user", "question")
        writer = store.begin_reply(session.id, model="m", engine="fake", params=None, flush_interval_s=0.0)
        writer.append("half of the ans")
        # the process "dies" here: the store is closed without finishing the reply
    with Store(path) as store:
        assert store.recovered == 1
        reply = store.messages(session.id)[-1]
        assert (reply.content, reply.status) == ("half of the ans", "interrupted")
        assert store.chat_messages(session.id)[-1] == ChatMessage("assistant", "half of the ans")


def test_a_second_process_opening_the_file_does_not_end_a_live_reply(tmp_path: Path) -> None:
    path = tmp_path / "llm-tui.db"
    with Store(path) as first:
        session = first.create_session()
        writer = first.begin_reply(session.id, model="m", engine="fake", params=None, flush_interval_s=0.0)
        writer.append("live")
        with Store(path) as second:  # e.g. `llm-tui chat` started beside the TUI
            assert second.get_message(writer.message_id).status == "interrupted"
            writer.append(" and well")
            assert second.get_message(writer.message_id).status == "streaming"
            writer.finish(Done(Usage(1, 3)))
            assert second.get_message(writer.message_id).content == "live and well"


def test_writer_thread_and_reader_thread_share_the_store(store: Store) -> None:
    session = store.create_session()
    store.add_message(session.id, "user", "go")
    writer = store.begin_reply(session.id, model="m", engine="fake", params=None, flush_interval_s=0.0)
    pieces = [f"t{i} " for i in range(400)]
    errors: list[BaseException] = []
    done = threading.Event()

    def produce() -> None:
        try:
            for piece in pieces:
                writer.append(piece)
            writer.finish(Done(Usage(1, len(pieces))))
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    reads = 0
    while not done.is_set() or reads < 20:
        assert store.list_sessions("go")[0].id == session.id
        contents = [m.content for m in store.messages(session.id)]
        assert "".join(pieces).startswith(contents[-1])
        store.create_session(f"side {reads}")
        reads += 1
    thread.join()
    assert errors == []
    assert store.get_message(writer.message_id).content == "".join(pieces)
    assert writer.flushes > 0


def test_manager_sink_feeds_the_writer_on_the_worker_thread(store: Store) -> None:
    session = store.create_session()
    store.add_message(session.id, "user", "hello there")
    writer = store.begin_reply(session.id, model="fake-model", engine="fake", params=None)
    with EngineManager() as manager:
        run_id = manager.start(ModelSpec(id="fake-model"), engine=FakeEngine())
        handle = manager.submit(run_id, store.chat_messages(session.id), sink=writer.feed)
        assert handle.wait(10)
    reply = store.get_message(writer.message_id)
    assert (reply.content, reply.status) == ("Echo: hello there", "complete")
    assert reply.metrics is not None and reply.metrics.completion_tokens == 3 and reply.metrics.total_ms is not None


# --- crash ----------------------------------------------------------------------------------------


def test_killed_process_leaves_a_sound_database_with_the_partial_reply(tmp_path: Path) -> None:
    path = tmp_path / "llm-tui.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen(
        [sys.executable, str(HELPER), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=lambda: lines.put(child.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
        line = lines.get(timeout=60)
        assert line.startswith("streaming"), f"child ended early: {line!r} {child.communicate()[1]}"
        session_id, message_id = (int(x) for x in line.split()[1:])
        deadline = time.monotonic() + 30
        with contextlib.closing(sqlite3.connect(path)) as reader:
            # Wait for a few flushes' worth of text, so the kill lands while writes are under way.
            while len(reader.execute("SELECT content FROM messages WHERE id = ?", (message_id,)).fetchone()[0]) < 200:
                assert time.monotonic() < deadline, "the partial reply never reached the database"
                threading.Event().wait(0.02)
        assert child.poll() is None, "the child should still be streaming"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()

    with Store(path) as store:
        assert conn_of(store).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store.recovered == 1
        user, reply = store.messages(session_id)
        assert (user.role, user.content, user.status) == ("user", "Tell me a very long story.", "complete")
        assert reply.id == message_id and reply.role == "assistant" and reply.status == "interrupted"
        full_reply = " ".join(f"word{i}" for i in range(200_000))
        assert len(reply.content) >= 200 and full_reply.startswith(reply.content)
        assert reply.metrics is None


def test_images_are_kept_as_paths_and_read_again_for_each_turn(tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\1" * 8)
    with Store(tmp_path / "db.sqlite") as store:
        session = store.create_session()
        record = store.add_message(session.id, "user", "look", images=[str(png)])
        assert record.images == (str(png),) and store.messages(session.id)[0].images == (str(png),)
        assert store.chat_messages(session.id)[0].images == (png.read_bytes(),)
        png.unlink()  # gone later: the conversation goes on without it
        assert store.chat_messages(session.id)[0] == ChatMessage("user", "look")


def test_a_message_transcribed_from_audio_keeps_its_file(tmp_path: Path) -> None:
    with Store(tmp_path / "db.sqlite") as store:
        session = store.create_session()
        record = store.add_message(session.id, "user", "hello there", audio="/tmp/note.wav")
        typed = store.add_message(session.id, "user", "typed")
        assert record.audio == "/tmp/note.wav" and typed.audio is None
        assert [m.audio for m in store.messages(session.id)] == ["/tmp/note.wav", None]
        assert store.chat_messages(session.id)[0] == ChatMessage("user", "hello there")  # the model sees the text
