"""`llm-tui serve` as a child process, for the tests that need the real command: isolated XDG dirs, its stderr
read by a thread into `log`, its address once it says "serving on", and SIGINT (then SIGKILL) at the end."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]


def serve_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without llm-tui's, Hub and Ollama settings, with XDG dirs under `home` and `extra` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_TUI_") and k not in ("HF_TOKEN", "OLLAMA_HOST")}
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        env[name] = str(home / name.lower())
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, whatever the venv has installed
    return {**env, **extra}


@dataclass
class ServeProcess:
    base: str
    """`http://127.0.0.1:PORT`, without `/v1`."""
    process: subprocess.Popen[str]
    log: list[str]
    """stderr, a line per item, newlines stripped; it keeps growing while the server runs."""


def read_log(stream: IO[str], ready_text: str = "serving on") -> tuple[list[str], threading.Event]:
    """A thread reads `stream` into the list, a line per item; the event is set once a line holds `ready_text`,
    or when the stream ends (the process died: the caller's wait then shows the log)."""
    log: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in stream:
            log.append(line.rstrip("\n"))
            if ready_text in line:
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    return log, ready


@contextmanager
def serve_process(
    home: Path,
    *args: str,
    env: dict[str, str] | None = None,
    start_s: float = 180,
    launcher: tuple[str, ...] = ("-m", "cli.main"),
) -> Iterator[ServeProcess]:
    """Run `llm-tui serve ARGS` in `home` until the block ends; fail with its log if it is not serving in `start_s`.

    `launcher` is what runs it after the interpreter (tests.fleet.fleet_member gives it fake GPUs)."""
    process = subprocess.Popen(
        [sys.executable, *launcher, "serve", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env if env is not None else serve_env(home),
        cwd=home,
    )
    assert process.stderr is not None
    log, ready = read_log(process.stderr)
    try:
        assert ready.wait(start_s), "llm-tui serve did not start:\n" + "\n".join(log)
        found = next((re.search(r"serving on (http://\S+)/v1", line) for line in log if "serving on" in line), None)
        assert found is not None, "\n".join(log)
        yield ServeProcess(found.group(1), process, log)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
