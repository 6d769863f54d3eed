"""`llm-tui web` as a child process, for the tests that need the real command: isolated XDG dirs, its output read
by a thread into `log`, its address once it says "serving on", and SIGINT (then SIGKILL) at the end."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.serve_process import read_log, serve_env

SERVING = re.compile(r"serving on (http://\S+) \(")


@dataclass
class WebProcess:
    base: str
    """`http://127.0.0.1:PORT`, the address it is bound to."""
    process: subprocess.Popen[str]
    log: list[str]
    """stderr and stdout, a line per item; it keeps growing while the server runs."""

    def stop(self) -> int:
        """SIGINT, as Ctrl+C sends; the exit status (SIGKILL after 30 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def run_web(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`llm-tui ARGS` (ARGS include `web`) to its end, for the ones that refuse to start."""
    command = [sys.executable, "-m", "cli.main", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env or serve_env(home), cwd=home, timeout=60)


@contextmanager
def web_process(home: Path, *args: str, env: dict[str, str] | None = None, start_s: float = 60) -> Iterator[WebProcess]:
    """Run `llm-tui ARGS` (ARGS include `web`) in `home` until the block ends; fail with its log unless it is
    serving within `start_s`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # textual-serve copies an app's stderr to its stdout: one log for both
        text=True,
        env=env if env is not None else serve_env(home),
        cwd=home,
    )
    assert process.stdout is not None
    log, ready = read_log(process.stdout)
    web = WebProcess("", process, log)
    try:
        assert ready.wait(start_s), "llm-tui web did not start:\n" + "\n".join(log)
        found = next((m for line in log if (m := SERVING.search(line))), None)
        assert found is not None, "llm-tui web did not start:\n" + "\n".join(log)
        web.base = found.group(1)
        yield web
    finally:
        web.stop()
