"""Chat sessions in SQLite: sessions, their messages, and replies written while they stream.

One connection guarded by a lock serves every thread; each write is one
short `BEGIN IMMEDIATE` transaction. A reply is written as it streams (at
most once per `flush_interval_s`) and finalised with its metrics, so a crash
loses at most the last interval of text; on the next open such a reply is
marked 'interrupted' and keeps its text.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.errors import BadRequest
from engines.store.history import HISTORY_QUERY, SENT_TO_ENGINE, chat_history
from engines.store.records import (
    STATUSES,
    MessageRecord,
    MessageStatus,
    SessionRecord,
    TurnMetrics,
    message_from_row,
    params_from_dict,
    params_from_json,
    params_to_dict,
    params_to_json,
    session_from_row,
    tool_calls_to_json,
)
from engines.store.replies import DEFAULT_FLUSH_INTERVAL_S, ReplyWriter, write_reply
from engines.store.schema import LATEST_VERSION, SchemaTooNew, StoreError, connect
from engines.types import ROLES, ChatMessage, Params, Role, ToolCall

if TYPE_CHECKING:
    from engines.downloads.tasks import DownloadTasks
    from engines.store.compare_runs import CompareRuns
    from engines.store.eval_runs import EvalRuns
    from engines.store.tune_runs import TuneRuns

__all__ = [
    "LATEST_VERSION",
    "STATUSES",
    "MessageNotFound",
    "MessageRecord",
    "MessageStatus",
    "ReplyWriter",
    "SchemaTooNew",
    "SessionNotFound",
    "SessionRecord",
    "Store",
    "StoreError",
    "TurnMetrics",
    "params_from_dict",
    "params_from_json",
    "params_to_dict",
    "params_to_json",
]


class SessionNotFound(StoreError):
    """No chat session has the given id (it may have been deleted)."""


class MessageNotFound(StoreError):
    """No message has the given id (it may have been deleted)."""


class _Unset:
    """Marks an argument that was not given (None means "clear it")."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


_MESSAGE_COLUMNS = """m.id, m.session_id, m.seq, m.role, m.content, m.status, m.created_at, m.updated_at,
    m.model, m.engine, m.params_json, m.error, m.images_json, m.audio, m.reasoning, m.tool_calls_json,
    m.tool_call_id, m.tool_name, t.message_id AS metrics_id, t.ttft_ms, t.tokens_per_s, t.total_ms, t.prompt_tokens,
    t.completion_tokens, t.finish_reason, t.reasoning_tokens, t.reply_ttft_ms"""
_MESSAGES_FROM = "messages m LEFT JOIN turn_metrics t ON t.message_id = m.id"


class Store:
    """The chat database; every method may be called from any thread.

    Two processes may share the file (WAL, busy timeout). Opening it marks
    every 'streaming' reply 'interrupted', including one another live process
    is writing; that writer's next flush sets it back to 'streaming'.
    """

    def __init__(self, path: Path) -> None:
        """Open (creating and migrating as needed); mark replies a crash left 'streaming' as 'interrupted'."""
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = connect(self.path)
        self._conn.row_factory = sqlite3.Row
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE messages SET status = 'interrupted', updated_at = ? WHERE status = 'streaming'",
                (time.time(),),
            )
        self.recovered: int = cur.rowcount
        """How many replies were found cut off by a crash and marked 'interrupted'."""

    def close(self) -> None:
        """Close the database; later calls raise StoreError."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA optimize")
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # sessions

    def create_session(
        self,
        title: str = "New chat",
        *,
        model: str | None = None,
        engine: str | None = None,
        system_prompt: str | None = None,
        params: Params | None = None,
    ) -> SessionRecord:
        """Create an empty session."""
        title = _check_title(title)
        now = time.time()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO sessions (title, created_at, updated_at, model, engine, system_prompt, params_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (title, now, now, model, engine, system_prompt, params_to_json(params)),
            )
        assert cur.lastrowid is not None
        return SessionRecord(cur.lastrowid, title, now, now, model, engine, system_prompt, params)

    def list_sessions(self, query: str | None = None) -> list[SessionRecord]:
        """Sessions, most recently updated first; `query` matches titles or message text, ignoring case."""
        sql = "SELECT * FROM sessions s"
        args: tuple[Any, ...] = ()
        if query and query.strip():
            pattern = "%" + query.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            sql += (
                " WHERE s.title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m"
                " WHERE m.session_id = s.id AND m.content LIKE ? ESCAPE '\\')"
            )
            args = (pattern, pattern)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY s.updated_at DESC, s.id DESC", args).fetchall()
        return [session_from_row(r) for r in rows]

    def get_session(self, session_id: int) -> SessionRecord:
        """One session; SessionNotFound if it does not exist."""
        with self._read() as conn:
            return self._get_session(conn, session_id)

    def rename_session(self, session_id: int, title: str) -> None:
        """Change a session's title; an empty title is a BadRequest."""
        title = _check_title(title)
        with self._write() as conn:
            self._touch(conn, session_id)
            conn.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, session_id))

    def delete_session(self, session_id: int) -> None:
        """Delete a session with its messages and metrics."""
        with self._write() as conn:
            if conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount == 0:
                raise SessionNotFound(f"chat session {session_id} does not exist")

    def update_session(
        self,
        session_id: int,
        *,
        model: str | None = UNSET,
        engine: str | None = UNSET,
        system_prompt: str | None = UNSET,
        params: Params | None = UNSET,
    ) -> SessionRecord:
        """Change only the fields given (None clears one); return the updated session."""
        changes = {"model": model, "engine": engine, "system_prompt": system_prompt}
        columns = {k: v for k, v in changes.items() if v is not UNSET}
        if params is not UNSET:
            columns["params_json"] = params_to_json(params)
        with self._write() as conn:
            if columns:
                self._touch(conn, session_id)
                assignments = ", ".join(f"{name} = ?" for name in columns)  # names are ours, not the caller's
                conn.execute(f"UPDATE sessions SET {assignments} WHERE id = ?", (*columns.values(), session_id))
            return self._get_session(conn, session_id)

    # messages

    def add_message(
        self,
        session_id: int,
        role: Role,
        content: str,
        *,
        model: str | None = None,
        engine: str | None = None,
        params: Params | None = None,
        status: MessageStatus = "complete",
        images: Sequence[str] = (),
        audio: str | None = None,
        reasoning: str = "",
        tool_calls: Sequence[ToolCall] = (),
        tool_call_id: str | None = None,
        tool_name: str | None = None,
    ) -> MessageRecord:
        """Append a message to a session; it is committed when this returns. `images`: paths of attached images;
        `audio`: the file the text was transcribed from; `reasoning` and `tool_calls`: an assistant message's
        thinking and calls; `tool_call_id` and `tool_name`: which call a tool message answers (required for one)."""
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        if (role == "tool") != (tool_call_id is not None):
            raise BadRequest("a tool message needs the id of the call it answers, and only a tool message has one")
        if (reasoning or tool_calls) and role != "assistant":
            raise BadRequest("only an assistant message has reasoning or tool calls")
        record = MessageRecord(
            0,  # id, seq and times are set when it is written
            session_id,
            0,
            role,
            content,
            status,
            0.0,
            0.0,
            model,
            engine,
            params,
            images=tuple(images),
            audio=audio,
            reasoning=reasoning,
            tool_calls=tuple(tool_calls),
            tool_call_id=tool_call_id,
            tool_name=tool_name,
        )
        return self._insert_message(record)

    def add_tool_result(self, session_id: int, tool_call_id: str, tool_name: str, content: str) -> MessageRecord:
        """Append the result of a tool call (a 'tool' message answering the call `tool_call_id`)."""
        return self.add_message(session_id, "tool", content, tool_call_id=tool_call_id, tool_name=tool_name)

    def get_message(self, message_id: int) -> MessageRecord:
        """One message with its metrics; MessageNotFound if it does not exist."""
        with self._read() as conn:
            row = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM {_MESSAGES_FROM} WHERE m.id = ?", (message_id,))
            found = row.fetchone()
        if found is None:
            raise MessageNotFound(f"message {message_id} does not exist")
        return message_from_row(found)

    def messages(self, session_id: int) -> list[MessageRecord]:
        """A session's messages in order, with reply metrics joined."""
        with self._read() as conn:
            self._get_session(conn, session_id)
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM {_MESSAGES_FROM} WHERE m.session_id = ? ORDER BY m.seq",
                (session_id,),
            ).fetchall()
        return [message_from_row(r) for r in rows]

    def truncate_after(self, session_id: int, seq: int) -> None:
        """Delete the session's messages after position `seq` (-1 deletes them all)."""
        with self._write() as conn:
            self._touch(conn, session_id)
            conn.execute("DELETE FROM messages WHERE session_id = ? AND seq > ?", (session_id, seq))

    def update_message(self, message_id: int, content: str) -> None:
        """Replace a message's text (edit before resending)."""
        with self._write() as conn:
            row = conn.execute("SELECT session_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise MessageNotFound(f"message {message_id} does not exist")
            now = self._touch(conn, row[0])
            conn.execute("UPDATE messages SET content = ?, updated_at = ? WHERE id = ?", (content, now, message_id))

    def begin_reply(
        self,
        session_id: int,
        *,
        model: str | None,
        engine: str | None,
        params: Params | None,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> ReplyWriter:
        """Add an empty 'streaming' assistant message and return the writer that fills it.

        The session remembers `model` and `engine` as the ones last used.
        """
        empty = MessageRecord(0, session_id, 0, "assistant", "", "streaming", 0.0, 0.0, model, engine, params)
        record = self._insert_message(empty)
        return ReplyWriter(record, self._save_reply, flush_interval_s=flush_interval_s, clock=clock)

    def chat_messages(self, session_id: int) -> list[ChatMessage]:
        """What to send to an engine: the system prompt, then the messages worth replaying.

        Failed replies, empty assistant messages and a reply still streaming are left out; thinking is never sent
        back; tool calls go with their results (engines/store/history.py).
        """
        with self._read() as conn:
            session = self._get_session(conn, session_id)
            rows = conn.execute(HISTORY_QUERY, (session_id, *SENT_TO_ENGINE)).fetchall()
        return chat_history(session.system_prompt, rows)

    @property
    def compares(self) -> CompareRuns:
        """Saved comparisons (engines/store/compare_runs.py), on this store's connection and lock."""
        from engines.store.compare_runs import CompareRuns  # loads with the compare screen, not the app's first frame

        return CompareRuns(self._read, self._write)

    @property
    def tunes(self) -> TuneRuns:
        """Fine-tuning runs and their per-step metrics (engines/store/tune_runs.py)."""
        from engines.store.tune_runs import TuneRuns

        return TuneRuns(self._read, self._write)

    @property
    def evals(self) -> EvalRuns:
        """Evaluation runs and their per-item answers (engines/store/eval_runs.py)."""
        from engines.store.eval_runs import EvalRuns

        return EvalRuns(self._read, self._write)

    @property
    def downloads(self) -> DownloadTasks:
        """The download queue's table (engines/downloads/tasks.py), on this store's connection and lock."""
        from engines.downloads.tasks import DownloadTasks

        return DownloadTasks(self._read, self._write)

    # internals shared with ReplyWriter

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._connection()
            except sqlite3.Error as exc:
                raise StoreError(f"chat database {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"chat database {self.path}: {exc}") from exc
                raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"chat database {self.path} is closed")
        return self._conn

    def _touch(self, conn: sqlite3.Connection, session_id: int) -> float:
        now = time.time()
        if conn.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id)).rowcount == 0:
            raise SessionNotFound(f"chat session {session_id} does not exist")
        return now

    def _get_session(self, conn: sqlite3.Connection, session_id: int) -> SessionRecord:
        row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFound(f"chat session {session_id} does not exist")
        return session_from_row(row)

    def _insert_message(self, record: MessageRecord) -> MessageRecord:
        """Write `record` (its id, seq and times are ignored) at the end of its session; return it as written."""
        stored = (
            record.role,
            record.content,
            record.model,
            record.engine,
            params_to_json(record.params),
            record.status,
            json.dumps(list(record.images)) if record.images else None,
            record.audio,
            record.reasoning or None,
            tool_calls_to_json(record.tool_calls),
            record.tool_call_id,
            record.tool_name,
        )
        session_id = record.session_id
        with self._write() as conn:
            now = self._touch(conn, session_id)
            (seq,) = conn.execute(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM messages WHERE session_id = ?", (session_id,)
            ).fetchone()
            cur = conn.execute(
                "INSERT INTO messages (session_id, seq, role, content, model, engine, params_json, status,"
                " images_json, audio, reasoning, tool_calls_json, tool_call_id, tool_name, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, seq, *stored, now, now),
            )
            if record.role == "assistant" and (record.model is not None or record.engine is not None):
                conn.execute(
                    "UPDATE sessions SET model = COALESCE(?, model), engine = COALESCE(?, engine) WHERE id = ?",
                    (record.model, record.engine, session_id),
                )
        assert cur.lastrowid is not None
        return replace(record, id=cur.lastrowid, seq=seq, created_at=now, updated_at=now)

    def _save_reply(self, record: MessageRecord) -> MessageRecord:
        """Write a reply's text, thinking, calls, status and metrics; a reply whose session was deleted meanwhile
        is dropped quietly."""
        with self._write() as conn:
            now = time.time()
            write_reply(conn, record, now)
        return replace(record, updated_at=now)


def _check_title(title: str) -> str:
    title = " ".join(title.split())
    if not title:
        raise BadRequest("a chat title must not be empty")
    return title
