"""The SQLite file behind the store: connection settings and numbered schema migrations.

The schema grows by small functions, one per version, in `MIGRATIONS`; the
file's `PRAGMA user_version` says how many have run. Each migration runs in
its own `BEGIN IMMEDIATE` transaction together with the version bump, so a
crash leaves the file at the old version or the new one, never between.
To change the schema, append a function; never edit one that has shipped.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from engines.errors import LlmTuiError

BUSY_TIMEOUT_MS = 10_000
"""How long a write waits for another connection (another llm-tui process) to finish."""

Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]
"""A Store's read or write transaction, handed to the classes that keep one table each (`Store.compares`,
`Store.downloads`): they share the Store's connection, lock, busy timeout and error wrapping."""


class StoreError(LlmTuiError):
    """The chat database cannot be opened, read or written."""


class SchemaTooNew(StoreError):
    """The database was written by a newer llm-tui than this one."""


def _m001_chat(conn: sqlite3.Connection) -> None:
    """Sessions, their messages and per-reply metrics."""
    statements = [
        """CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            model TEXT,
            engine TEXT,
            system_prompt TEXT,
            params_json TEXT
        )""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL,
            model TEXT,
            engine TEXT,
            params_json TEXT,
            status TEXT NOT NULL
                CHECK (status IN ('complete', 'streaming', 'cancelled', 'error', 'interrupted')),
            error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (session_id, seq)
        )""",
        """CREATE TABLE turn_metrics (
            message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            ttft_ms REAL,
            tokens_per_s REAL,
            total_ms REAL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            finish_reason TEXT
        )""",
        "CREATE INDEX sessions_by_updated ON sessions (updated_at DESC, id DESC)",
        # UNIQUE (session_id, seq) already creates the index that orders a session's messages;
        # this one serves the crash-recovery scan on open without reading every row.
        "CREATE INDEX messages_by_status ON messages (status) WHERE status = 'streaming'",
    ]
    for statement in statements:
        conn.execute(statement)


def _m002_downloads(conn: sqlite3.Connection) -> None:
    """The download queue: one row per file to fetch, with its progress and outcome."""
    conn.execute(
        """CREATE TABLE downloads (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL CHECK (source IN ('hf', 'ollama', 'url')),
            repo TEXT,
            file TEXT,
            revision TEXT,
            url TEXT,
            target_path TEXT NOT NULL,
            total_bytes INTEGER,
            done_bytes INTEGER NOT NULL DEFAULT 0,
            sha256 TEXT,
            status TEXT NOT NULL CHECK (status IN
                ('pending', 'downloading', 'paused', 'completed', 'failed', 'cancelled')),
            error TEXT,
            speed_bps REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            finished_at REAL
        )"""
    )
    conn.execute("CREATE INDEX downloads_by_status ON downloads (status, id)")


def _m003_download_owner(conn: sqlite3.Connection) -> None:
    """Which process runs a download ("pid:start-time"): a second llm-tui on the same database must not take
    another live process's transfers for interrupted ones. And, for a file fetched into the Hugging Face cache,
    the ref (branch or tag) its snapshot is recorded under; NULL for files in models_dir."""
    conn.execute("ALTER TABLE downloads ADD COLUMN owner TEXT")
    conn.execute("ALTER TABLE downloads ADD COLUMN cache_ref TEXT")


def _m004_message_images(conn: sqlite3.Connection) -> None:
    """Images attached to a user message, as a JSON list of file paths (read again for every turn)."""
    conn.execute("ALTER TABLE messages ADD COLUMN images_json TEXT")


def _m005_compare(conn: sqlite3.Connection) -> None:
    """Saved comparisons: one prompt (with its system prompt and parameters) and the pane of each model, with
    its reply, how it ended, its metrics and the memory its instance held."""
    conn.execute(
        """CREATE TABLE compare_runs (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            prompt TEXT NOT NULL,
            system_prompt TEXT,
            params_json TEXT,
            mode TEXT NOT NULL CHECK (mode IN ('parallel', 'sequential')),
            reason TEXT NOT NULL DEFAULT ''
        )"""
    )
    conn.execute(
        """CREATE TABLE compare_panes (
            id INTEGER PRIMARY KEY,
            compare_id INTEGER NOT NULL REFERENCES compare_runs(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            model TEXT NOT NULL,
            engine TEXT NOT NULL,
            ref TEXT,
            run_id TEXT,
            options_json TEXT,
            reply TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('done', 'stopped', 'error')),
            error TEXT,
            ttft_ms REAL,
            tokens_per_s REAL,
            total_ms REAL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            finish_reason TEXT,
            ram_bytes INTEGER,
            vram_bytes INTEGER,
            UNIQUE (compare_id, position)
        )"""
    )
    conn.execute("CREATE INDEX compare_runs_by_created ON compare_runs (created_at DESC, id DESC)")


def _m006_message_audio(conn: sqlite3.Connection) -> None:
    """The audio file a user message was transcribed from (`/audio PATH` in the chat); NULL for typed text."""
    conn.execute("ALTER TABLE messages ADD COLUMN audio TEXT")


def _m007_thinking_and_tools(conn: sqlite3.Connection) -> None:
    """Thinking and tool calls: a reply's `reasoning` apart from its text, the calls it made (`tool_calls_json`:
    [{"id", "name", "arguments"}]), and messages of role 'tool' carrying a call's result (`tool_call_id`,
    `tool_name`); a reply's metrics gain its thinking tokens and the time to its first reply token.

    SQLite cannot change a CHECK constraint, so `messages` is rebuilt. `foreign_keys` cannot be turned off inside
    the migration's transaction, and dropping `messages` would then cascade into `turn_metrics`: the metrics are
    set aside in a plain copy first and put back into the rebuilt `turn_metrics`.
    """
    statements = [
        "CREATE TABLE turn_metrics_v6 AS SELECT * FROM turn_metrics",
        "DROP TABLE turn_metrics",
        """CREATE TABLE messages_v7 (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
            content TEXT NOT NULL,
            model TEXT,
            engine TEXT,
            params_json TEXT,
            status TEXT NOT NULL
                CHECK (status IN ('complete', 'streaming', 'cancelled', 'error', 'interrupted')),
            error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            images_json TEXT,
            audio TEXT,
            reasoning TEXT,
            tool_calls_json TEXT,
            tool_call_id TEXT,
            tool_name TEXT,
            UNIQUE (session_id, seq)
        )""",
        """INSERT INTO messages_v7 (id, session_id, seq, role, content, model, engine, params_json, status, error,
            created_at, updated_at, images_json, audio)
        SELECT id, session_id, seq, role, content, model, engine, params_json, status, error,
            created_at, updated_at, images_json, audio FROM messages""",
        "DROP TABLE messages",
        "ALTER TABLE messages_v7 RENAME TO messages",
        "CREATE INDEX messages_by_status ON messages (status) WHERE status = 'streaming'",
        """CREATE TABLE turn_metrics (
            message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            ttft_ms REAL,
            tokens_per_s REAL,
            total_ms REAL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            finish_reason TEXT,
            reasoning_tokens INTEGER,
            reply_ttft_ms REAL
        )""",
        """INSERT INTO turn_metrics (message_id, ttft_ms, tokens_per_s, total_ms, prompt_tokens, completion_tokens,
            finish_reason)
        SELECT message_id, ttft_ms, tokens_per_s, total_ms, prompt_tokens, completion_tokens, finish_reason
        FROM turn_metrics_v6""",
        "DROP TABLE turn_metrics_v6",
    ]
    for statement in statements:
        conn.execute(statement)


def _m008_tune_and_eval(conn: sqlite3.Connection) -> None:
    """Fine-tuning runs with their per-step metrics, and evaluation runs with their per-item answers."""
    statements = [
        """CREATE TABLE tune_runs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            base TEXT NOT NULL,
            data_path TEXT NOT NULL,
            data_sha256 TEXT NOT NULL,
            options_json TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('running', 'stopped', 'finished', 'failed', 'interrupted')),
            run_dir TEXT NOT NULL,
            adapter_path TEXT,
            merged_path TEXT,
            mlflow_run_id TEXT,
            error TEXT
        )""",
        """CREATE TABLE tune_metrics (
            run_id INTEGER NOT NULL REFERENCES tune_runs(id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            epoch REAL NOT NULL,
            loss REAL,
            val_loss REAL,
            learning_rate REAL,
            tokens_per_s REAL,
            memory_bytes INTEGER,
            at REAL NOT NULL,
            PRIMARY KEY (run_id, step)
        )""",
        """CREATE TABLE eval_runs (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            model TEXT NOT NULL,
            engine TEXT NOT NULL,
            data_name TEXT NOT NULL,
            data_sha256 TEXT NOT NULL,
            method TEXT NOT NULL CHECK (method IN ('loglik', 'generate')),
            shots INTEGER NOT NULL,
            item_limit INTEGER,
            items INTEGER NOT NULL,
            correct INTEGER NOT NULL,
            items_per_s REAL NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('finished', 'cancelled', 'failed')),
            report_json TEXT NOT NULL
        )""",
        """CREATE TABLE eval_items (
            run_id INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
            subject TEXT NOT NULL,
            item INTEGER NOT NULL,
            answer TEXT NOT NULL,
            predicted TEXT,
            correct INTEGER NOT NULL,
            scores_json TEXT,
            PRIMARY KEY (run_id, subject, item)
        )""",
    ]
    for statement in statements:
        conn.execute(statement)


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _m001_chat,
    _m002_downloads,
    _m003_download_owner,
    _m004_message_images,
    _m005_compare,
    _m006_message_audio,
    _m007_thinking_and_tools,
    _m008_tune_and_eval,
)
"""Migration N (1-based) brings a file from user_version N-1 to N."""

LATEST_VERSION = len(MIGRATIONS)


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating it 0600 if new) and configure the database; migrate it to the latest schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Chats are private: create the file owner-only; SQLite gives -wal/-shm the same mode.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, path.name)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.DatabaseError):
            raise StoreError(f"{path} is not a usable llm-tui database ({exc}); move it aside to start afresh") from exc
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's schema version (0 for a new file)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, name: str = "llm-tui.db") -> int:
    """Apply the migrations the file lacks, each in its own transaction; return the final version."""
    _refuse_newer(schema_version(conn), name)
    for number, migration in enumerate(MIGRATIONS, start=1):
        if schema_version(conn) >= number:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            if schema_version(conn) < number:
                migration(conn)
                conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # some errors (disk full) already rolled it back
                conn.execute("ROLLBACK")
            raise
    version = schema_version(conn)
    _refuse_newer(version, name)
    return version


def _refuse_newer(version: int, name: str) -> None:
    if version > LATEST_VERSION:
        raise SchemaTooNew(
            f"{name} was written by a newer llm-tui (schema {version}; this one knows {LATEST_VERSION}); "
            "upgrade llm-tui to open it"
        )
