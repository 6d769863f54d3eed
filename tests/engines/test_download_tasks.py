"""The download queue in SQLite: statuses, progress, and what a restart leaves behind."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engines.downloads.tasks import TaskNotFound, TaskStatus, owner_alive, process_token
from engines.errors import BadRequest
from engines.store.schema import _m001_chat
from engines.store.sessions import Store


def test_a_task_goes_from_pending_to_completed_with_its_progress(tmp_path: Path) -> None:
    with Store(tmp_path / "db.sqlite") as store:
        tasks = store.downloads
        task = tasks.add("hf", tmp_path / "m.gguf", repo="org/m-GGUF", file="m.gguf", total_bytes=1000, sha256="ab")
        assert task.status is TaskStatus.PENDING and task.label == "org/m-GGUF/m.gguf"
        assert tasks.next_pending() == task
        tasks.set_status(task.id, TaskStatus.DOWNLOADING)
        tasks.record_progress(task.id, 400, None, 2e6)
        now = tasks.get(task.id)
        assert (now.done_bytes, now.total_bytes, now.speed_bps, now.fraction) == (400, 1000, 2e6, 0.4)
        done = tasks.set_status(task.id, TaskStatus.COMPLETED)
        assert done.finished_at is not None and done.speed_bps is None
        assert tasks.next_pending() is None


def test_impossible_moves_and_duplicates_are_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "db.sqlite") as store:
        tasks = store.downloads
        task = tasks.add("url", tmp_path / "x.gguf", url="http://127.0.0.1:1/x.gguf")
        with pytest.raises(BadRequest, match="already in the download queue"):
            tasks.add("url", tmp_path / "x.gguf", url="http://127.0.0.1:1/x.gguf")
        with pytest.raises(BadRequest, match="pending; it cannot become completed"):
            tasks.set_status(task.id, TaskStatus.COMPLETED)
        with pytest.raises(BadRequest, match="source must be hf, ollama or url"):
            tasks.add("ftp", tmp_path / "y.gguf")
        with pytest.raises(TaskNotFound):
            tasks.get(999)
        tasks.set_status(task.id, TaskStatus.CANCELLED)
        tasks.add("url", tmp_path / "x.gguf", url="http://127.0.0.1:1/x.gguf")  # a cancelled one does not block


@pytest.mark.parametrize(("resume", "expected"), [(False, TaskStatus.PAUSED), (True, TaskStatus.PENDING)])
def test_a_restart_brings_interrupted_tasks_back(tmp_path: Path, resume: bool, expected: TaskStatus) -> None:
    path = tmp_path / "db.sqlite"
    store = Store(path)
    tasks = store.downloads
    running = tasks.add("hf", tmp_path / "a.gguf", repo="org/a", file="a.gguf")
    failed = tasks.add("hf", tmp_path / "b.gguf", repo="org/b", file="b.gguf")
    tasks.set_status(running.id, TaskStatus.DOWNLOADING)
    tasks.record_progress(running.id, 123, 1000, 5e5)
    tasks.set_status(failed.id, TaskStatus.DOWNLOADING)
    tasks.set_status(failed.id, TaskStatus.FAILED, "sha256 mismatch")
    store.close()  # as a crash or quit would leave it

    with Store(path) as again:
        tasks = again.downloads
        assert tasks.recover(resume=resume) == [running.id]
        back = tasks.get(running.id)
        assert back.status is expected and back.done_bytes == 123 and back.speed_bps is None
        assert tasks.get(failed.id).error == "sha256 mismatch"
        tasks.set_status(failed.id, TaskStatus.PENDING)  # retry
        if not resume:
            tasks.set_status(running.id, TaskStatus.CANCELLED)  # a paused one may be cancelled
        assert tasks.clear_finished() == (0 if resume else 1)


def test_a_second_llm_tui_leaves_a_live_process_s_downloads_alone(tmp_path: Path) -> None:
    """Two apps on one database: the second one's start-up must not take the first's running transfers for
    interrupted ones. Only tasks whose process is gone (or was never recorded) are recovered."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    try:
        with Store(tmp_path / "db.sqlite") as store:
            tasks = store.downloads
            ids = [tasks.add("url", tmp_path / f"{n}.gguf", url=f"http://127.0.0.1:9/{n}").id for n in "abcd"]
            for task_id in ids:
                tasks.claim(task_id)
            assert tasks.get(ids[0]).owner == process_token()
            owners = [process_token(live.pid), f"{dead.stdout.strip()}:1.00", None]
            with store._write() as conn:
                conn.executemany("UPDATE downloads SET owner = ? WHERE id = ?", zip(owners, ids[1:], strict=True))
            assert owner_alive(process_token()) and owner_alive(process_token(live.pid))
            assert tasks.recover(resume=False) == ids[2:]  # a dead process's task and one nobody owns
            assert [tasks.get(i).status for i in ids] == [TaskStatus.DOWNLOADING] * 2 + [TaskStatus.PAUSED] * 2
            tasks.disown(ids[:1])  # this process quits: its task is recovered next time
            assert tasks.recover(resume=True) == ids[:1]
    finally:
        live.kill()
        live.wait()


def test_an_existing_chat_database_gains_the_queue_and_keeps_its_chats(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    raw = sqlite3.connect(path)
    _m001_chat(raw)
    raw.execute("INSERT INTO sessions (title, created_at, updated_at) VALUES ('kept', 1, 1)")
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    with Store(path) as store:
        assert [s.title for s in store.list_sessions()] == ["kept"]
        assert store.downloads.all() == []
