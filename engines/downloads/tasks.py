"""The download queue's rows in SQLite: what to fetch, how far it got, how it ended; it survives restarts.

A task is one file. Status moves pending → downloading → completed, or to
paused / failed / cancelled; a paused or failed task can go back to pending.
On start-up, tasks a crash or quit left 'downloading' come back as 'paused'
(or 'pending' when downloads resume by themselves).
"""

from __future__ import annotations

import enum
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from engines.errors import BadRequest, LlmTuiError

if TYPE_CHECKING:
    from engines.store.schema import Transaction


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
_NEXT: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.DOWNLOADING, TaskStatus.PAUSED, TaskStatus.CANCELLED}),
    TaskStatus.DOWNLOADING: frozenset(
        {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.PAUSED, TaskStatus.CANCELLED, TaskStatus.PENDING}
    ),
    TaskStatus.PAUSED: frozenset({TaskStatus.PENDING, TaskStatus.CANCELLED}),
    TaskStatus.FAILED: frozenset({TaskStatus.PENDING, TaskStatus.CANCELLED}),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.CANCELLED: frozenset({TaskStatus.PENDING}),
}
"""Which status may follow which (retry and resume go back to pending)."""


def process_token(pid: int | None = None) -> str:
    """The process as `pid:start-time`: unlike a bare pid, it is not reused by a later process."""
    process = psutil.Process(pid)
    return f"{process.pid}:{process.create_time():.2f}"


def owner_alive(token: str | None) -> bool:
    """Whether the process a process_token() names is still running."""
    pid, _, _ = (token or "").partition(":")
    try:
        return pid.isdigit() and process_token(int(pid)) == token
    except psutil.Error:  # gone, or not ours to look at
        return False


class TaskNotFound(LlmTuiError):
    """No download task has that id."""


@dataclass(frozen=True, slots=True)
class DownloadTask:
    """One file in the queue."""

    id: int
    source: str
    """hf | ollama | url."""
    target_path: Path
    status: TaskStatus
    repo: str | None = None
    file: str | None = None
    revision: str | None = None
    url: str | None = None
    total_bytes: int | None = None
    done_bytes: int = 0
    sha256: str | None = None
    error: str | None = None
    speed_bps: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    owner: str | None = None
    """The process downloading it ("pid:start-time"), while it is downloading."""
    cache_ref: str | None = None
    """Set for a file fetched into the Hugging Face cache (target_path is its blob): the ref to record."""

    @property
    def label(self) -> str:
        """What people call it: repo/file, the Ollama name, or the URL."""
        if self.repo and self.file:
            return f"{self.repo}/{self.file}"
        return self.repo or self.url or self.target_path.name

    @property
    def fraction(self) -> float | None:
        return self.done_bytes / self.total_bytes if self.total_bytes else None


def hub_sizes(tasks: Iterable[DownloadTask]) -> dict[tuple[str, str], int]:
    """(repo, file) → size for the Hub files whose size the Hub gave (tasks holding its sha256 and commit)."""
    return {
        (task.repo, task.file): task.total_bytes
        for task in tasks
        if task.source == "hf"
        and task.repo
        and task.file
        and task.total_bytes
        and task.sha256
        and task.revision
        and task.status is not TaskStatus.FAILED  # a failed task may hold a size that did not match
    }


def _task(row: sqlite3.Row) -> DownloadTask:
    return DownloadTask(
        id=row["id"],
        source=row["source"],
        target_path=Path(row["target_path"]),
        status=TaskStatus(row["status"]),
        repo=row["repo"],
        file=row["file"],
        revision=row["revision"],
        url=row["url"],
        total_bytes=row["total_bytes"],
        done_bytes=row["done_bytes"],
        sha256=row["sha256"],
        error=row["error"],
        speed_bps=row["speed_bps"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        owner=row["owner"],
        cache_ref=row["cache_ref"],
    )


class DownloadTasks:
    """The queue table of a Store (`Store.downloads`); safe from any thread (the Store serialises access)."""

    def __init__(self, read: Transaction, write: Transaction) -> None:
        self._read = read
        self._write = write

    def add(
        self,
        source: str,
        target_path: Path,
        *,
        repo: str | None = None,
        file: str | None = None,
        revision: str | None = None,
        url: str | None = None,
        total_bytes: int | None = None,
        sha256: str | None = None,
        cache_ref: str | None = None,
    ) -> DownloadTask:
        """Queue a file as pending; refuses a second live task for the same target."""
        if source not in ("hf", "ollama", "url"):
            raise BadRequest(f"download source must be hf, ollama or url, not {source!r}")
        now = time.time()
        with self._write() as conn:
            live = conn.execute(
                "SELECT id FROM downloads WHERE target_path = ? AND status IN ('pending', 'downloading', 'paused')",
                (str(target_path),),
            ).fetchone()
            if live is not None:
                raise BadRequest(f"{target_path} is already in the download queue (task {live['id']})")
            cur = conn.execute(
                "INSERT INTO downloads (source, repo, file, revision, url, target_path, total_bytes, sha256,"
                " cache_ref, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (source, repo, file, revision, url, str(target_path), total_bytes, sha256, cache_ref, now, now),
            )
            task_id = int(cur.lastrowid or 0)
        return self.get(task_id)

    def get(self, task_id: int) -> DownloadTask:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM downloads WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise TaskNotFound(f"download task {task_id} does not exist")
        return _task(row)

    def all(self) -> list[DownloadTask]:
        """Every task, oldest first."""
        with self._read() as conn:
            return [_task(r) for r in conn.execute("SELECT * FROM downloads ORDER BY id").fetchall()]

    def unfinished(self) -> int:
        """How many tasks wait to run or were left running (a start-up checks this before opening the queue)."""
        with self._read() as conn:
            row = conn.execute("SELECT COUNT(*) FROM downloads WHERE status IN ('pending', 'downloading')").fetchone()
        return int(row[0])

    def next_pending(self) -> DownloadTask | None:
        """The oldest pending task."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM downloads WHERE status = 'pending' ORDER BY id LIMIT 1").fetchone()
        return None if row is None else _task(row)

    def set_status(self, task_id: int, status: TaskStatus, error: str | None = None) -> DownloadTask:
        """Move a task to `status` (BadRequest when that move makes no sense, e.g. completed → paused)."""
        now = time.time()
        with self._write() as conn:
            row = conn.execute("SELECT status FROM downloads WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                raise TaskNotFound(f"download task {task_id} does not exist")
            current = TaskStatus(row["status"])
            if status is not current and status not in _NEXT[current]:
                raise BadRequest(f"download task {task_id} is {current}; it cannot become {status}")
            finished = now if status in FINISHED else None
            conn.execute(
                "UPDATE downloads SET status = ?, error = ?, updated_at = ?, finished_at = ?,"
                " speed_bps = CASE WHEN ? = 'downloading' THEN speed_bps ELSE NULL END WHERE id = ?",
                (status.value, error, now, finished, status.value, task_id),
            )
        return self.get(task_id)

    def record_progress(self, task_id: int, done_bytes: int, total_bytes: int | None, speed_bps: float | None) -> None:
        """Store how far a transfer got (called about once a second, not per chunk)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE downloads SET done_bytes = ?, total_bytes = COALESCE(?, total_bytes), speed_bps = ?,"
                " updated_at = ? WHERE id = ?",
                (done_bytes, total_bytes, speed_bps, time.time(), task_id),
            )

    def set_expected(
        self,
        task_id: int,
        *,
        total_bytes: int | None,
        sha256: str | None,
        revision: str | None,
        replace_size: bool = False,
    ) -> None:
        """Fill in what the server said the file is (known values are kept): size, hash, the commit it is at.
        With `replace_size`, the server's size replaces a stored one (which was only an estimate)."""
        size_sql = "COALESCE(?, total_bytes)" if replace_size else "COALESCE(total_bytes, ?)"
        with self._write() as conn:
            conn.execute(
                f"UPDATE downloads SET total_bytes = {size_sql}, sha256 = COALESCE(sha256, ?),"
                " revision = COALESCE(revision, ?), updated_at = ? WHERE id = ?",
                (total_bytes, sha256, revision, time.time(), task_id),
            )

    def claim(self, task_id: int) -> DownloadTask:
        """Mark a task downloading by this process (so another llm-tui on the same database leaves it alone)."""
        task = self.set_status(task_id, TaskStatus.DOWNLOADING)
        with self._write() as conn:
            conn.execute("UPDATE downloads SET owner = ? WHERE id = ?", (process_token(), task_id))
        return task

    def disown(self, task_ids: list[int]) -> None:
        """This process stops downloading these (it is quitting): the next start recovers them."""
        if not task_ids:
            return
        with self._write() as conn:
            conn.executemany("UPDATE downloads SET owner = NULL WHERE id = ?", [(i,) for i in task_ids])

    def recover(self, *, resume: bool) -> list[int]:
        """After a restart: tasks left 'downloading' by a process that is gone become pending (resume=True) or
        paused; returns their ids. Tasks another live process is downloading are left to it."""
        status = TaskStatus.PENDING if resume else TaskStatus.PAUSED
        with self._write() as conn:
            rows = conn.execute("SELECT id, owner FROM downloads WHERE status = 'downloading'").fetchall()
            ids = [r["id"] for r in rows if not owner_alive(r["owner"])]
            conn.executemany(
                "UPDATE downloads SET status = ?, speed_bps = NULL, updated_at = ? WHERE id = ?",
                [(status.value, time.time(), task_id) for task_id in ids],
            )
        return ids

    def clear_finished(self) -> int:
        """Forget completed, failed and cancelled tasks (a failed file is retried by adding it again); returns
        how many."""
        with self._write() as conn:
            cur = conn.execute("DELETE FROM downloads WHERE status IN ('completed', 'failed', 'cancelled')")
        return cur.rowcount
