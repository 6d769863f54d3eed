"""The real `llm-tui` in a real terminal (tmux): type a prompt, read the reply off the screen, find it in SQLite."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tmux, pytest.mark.real_model]


class Pane:
    """The app running in its own tmux server (its own socket, no user config): neither the user's tmux nor a
    test running in another process sees it or changes it, and the whole server goes away with the test."""

    def __init__(self, server: str, socket: Path, db: Path) -> None:
        self.server = server  # also the session's name
        self.socket = socket
        self.db = db

    def tmux(self, *args: str) -> str:
        command = ["tmux", "-S", str(self.socket), "-f", "/dev/null", *args]
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.server)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.server, "-l", text)

    def press(self, key: str) -> None:
        self.tmux("send-keys", "-t", self.server, key)

    def pid(self) -> int:
        return int(self.tmux("list-panes", "-t", self.server, "-F", "#{pane_pid}").split()[0])

    def closed(self) -> bool:
        """Whether the app's window is gone (its server ends with its only session)."""
        has = ["tmux", "-S", str(self.socket), "has-session", "-t", self.server]
        return subprocess.run(has, capture_output=True, timeout=30).returncode != 0

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `predicate` until it holds; fail with the screen's text if it never does."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while time.monotonic() < deadline:
            if predicate():
                return
            pause.wait(0.2)
        shown = self.screen() if not self.closed() else "(the pane is closed)"
        pytest.fail(f"timed out after {timeout} s waiting for {what}; the screen shows:\n{shown}")


@pytest.fixture
def pane(tmp_path: Path, gemma_path: Path) -> Iterator[Pane]:
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
    # A socket path must stay short (about 100 bytes): a folder of its own in the temp dir, not tmp_path.
    sockets = Path(tempfile.mkdtemp(prefix="llm-tui-tmux-"))
    db = tmp_path / "data" / "llm-tui" / "llm-tui.db"
    pane = Pane(f"llm-tui-test-{uuid.uuid4().hex[:8]}", sockets / "tmux", db)
    try:
        pane.tmux("new-session", "-d", "-s", pane.server, "-x", "100", "-y", "30", "-c", os.getcwd(), command)
        yield pane
    finally:
        subprocess.run(["tmux", "-S", str(pane.socket), "kill-server"], capture_output=True, timeout=30)
        shutil.rmtree(sockets, ignore_errors=True)  # the server leaves its socket file behind


def test_type_a_prompt_and_read_the_reply(pane: Pane) -> None:
    pane.wait_for(lambda: "gemma-3-270m · llama.cpp · ready" in pane.screen(), 120, "the model to load")
    pane.type("What is the capital of France?")
    pane.press("Enter")
    pane.wait_for(lambda: "tok/s" in pane.screen(), 120, "the reply's metrics line")
    assert "Paris" in pane.screen()
    pane.press("C-q")
    pane.wait_for(pane.closed, 30, "the app to quit")

    with sqlite3.connect(pane.db) as conn:
        rows = conn.execute("SELECT role, content, status FROM messages ORDER BY id").fetchall()
    assert rows[0] == ("user", "What is the capital of France?", "complete")
    assert rows[1][0] == "assistant" and "Paris" in rows[1][1] and rows[1][2] == "complete"


def test_kill_9_while_streaming_loses_at_most_the_last_second(pane: Pane) -> None:
    db = pane.db

    def reply_row() -> tuple[str, str] | None:
        if not db.exists():
            return None
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT content, status FROM messages WHERE role = 'assistant'").fetchone()
        return row

    pane.wait_for(lambda: "gemma-3-270m · llama.cpp · ready" in pane.screen(), 120, "the model to load")
    pid = pane.pid()
    pane.type("Write a long story about a dragon who learns to bake bread.")
    pane.press("Enter")
    # The reply is written while it streams: wait for the first save, then kill the app outright.
    pane.wait_for(
        lambda: (row := reply_row()) is not None and row[1] == "streaming" and len(row[0]) > 5,
        60,
        "a partial reply in the database",
    )
    os.kill(pid, 9)
    pane.wait_for(pane.closed, 30, "the pane to close")

    from engines.store.sessions import Store

    with Store(db) as store:
        (session,) = store.list_sessions()
        messages = store.messages(session.id)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].content == "Write a long story about a dragon who learns to bake bread."
    assert messages[1].status == "interrupted" and len(messages[1].content) > 5
