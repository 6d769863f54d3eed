"""The real `llm-tui` in a real terminal (tmux): type a prompt, read the reply off the screen, find it in SQLite."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tmux, pytest.mark.real_model]


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True, timeout=30).stdout


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, screen: Callable[[], str]) -> None:
    """Poll `predicate` until it holds; fail with the screen's text if it never does."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return
        pause.wait(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; the screen shows:\n{screen()}")


@pytest.fixture
def tmux_session(tmp_path: Path, gemma_path: Path) -> Iterator[tuple[str, Path]]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: scripts/test.sh installs it (apt-get install tmux)")
    config = tmp_path / "config.toml"
    config.write_text(
        f'models_dir = "{gemma_path.parent}"\nn_threads = 2\n[defaults]\ntemperature = 0.0\nmax_tokens = 400\n'
    )
    env = {
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
    }
    name = f"llm-tui-test-{uuid.uuid4().hex[:8]}"
    command = " ".join(
        [
            "env",
            *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
            shlex.quote(sys.executable),
            "-m",
            "cli.main",
            "--config",
            shlex.quote(str(config)),
            "--model",
            "gemma-3-270m",
        ]
    )
    tmux("new-session", "-d", "-s", name, "-x", "100", "-y", "30", "-c", os.getcwd(), command)
    try:
        yield name, tmp_path / "data" / "llm-tui" / "llm-tui.db"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, timeout=30)


def test_type_a_prompt_and_read_the_reply(tmux_session: tuple[str, Path]) -> None:
    name, db = tmux_session

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", name)

    wait_for(lambda: "gemma-3-270m · llama.cpp · ready" in screen(), 120, "the model to load", screen)
    tmux("send-keys", "-t", name, "-l", "What is the capital of France?")
    tmux("send-keys", "-t", name, "Enter")
    wait_for(lambda: "tok/s" in screen(), 120, "the reply's metrics line", screen)
    assert "Paris" in screen()
    tmux("send-keys", "-t", name, "C-q")
    wait_for(
        lambda: subprocess.run(["tmux", "has-session", "-t", name], capture_output=True).returncode != 0,
        30,
        "the app to quit",
        screen,
    )

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT role, content, status FROM messages ORDER BY id").fetchall()
    assert rows[0] == ("user", "What is the capital of France?", "complete")
    assert rows[1][0] == "assistant" and "Paris" in rows[1][1] and rows[1][2] == "complete"


def test_kill_9_while_streaming_loses_at_most_the_last_second(tmux_session: tuple[str, Path]) -> None:
    name, db = tmux_session

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", name)

    def reply_row() -> tuple[str, str] | None:
        if not db.exists():
            return None
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT content, status FROM messages WHERE role = 'assistant'").fetchone()
        return row

    wait_for(lambda: "gemma-3-270m · llama.cpp · ready" in screen(), 120, "the model to load", screen)
    pid = int(tmux("list-panes", "-t", name, "-F", "#{pane_pid}").split()[0])
    tmux("send-keys", "-t", name, "-l", "Write a long story about a dragon who learns to bake bread.")
    tmux("send-keys", "-t", name, "Enter")
    # The reply is written while it streams: wait for the first save, then kill the app outright.
    wait_for(
        lambda: (row := reply_row()) is not None and row[1] == "streaming" and len(row[0]) > 5,
        60,
        "a partial reply in the database",
        screen,
    )
    os.kill(pid, 9)
    wait_for(
        lambda: subprocess.run(["tmux", "has-session", "-t", name], capture_output=True).returncode != 0,
        30,
        "the pane to close",
        screen,
    )

    from engines.store.sessions import Store

    with Store(db) as store:
        (session,) = store.list_sessions()
        messages = store.messages(session.id)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].content == "Write a long story about a dragon who learns to bake bread."
    assert messages[1].status == "interrupted" and len(messages[1].content) > 5
