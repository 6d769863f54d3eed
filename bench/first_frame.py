"""First frame: `llm-tui` with no arguments vs a minimal Textual app, both started in tmux, in one run.

Each sample starts a detached tmux session (80×24) running the program and polls `tmux capture-pane`
until a string only the first painted frame holds appears: the screen bar's `F8Settings` for llm-tui,
the Static's text for the minimal app. The two alternate so machine load hits both alike; llm-tui
runs with isolated XDG folders (an empty config, store and download queue, as a first start has).
Target: median llm-tui ÷ median minimal ≤ 1.5.

    python bench/first_frame.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)
MINIMAL = (
    "from textual.app import App\n"
    "from textual.widgets import Static\n"
    "class Minimal(App[None]):\n"
    "    def compose(self):\n"
    "        yield Static('minimal-first-frame')\n"
    "Minimal().run()\n"
)
POLL_S = 0.005
TIMEOUT_S = 30.0


def first_frame(command: str, marker: str, env: dict[str, str]) -> float:
    """Seconds from starting `command` in a new tmux session until `marker` is on its screen."""
    session = f"first-frame-{os.getpid()}"
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    start = time.perf_counter()
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", f"cd {ROOT} && {exports} {command}"],
        check=True,
    )
    try:
        while time.perf_counter() - start < TIMEOUT_S:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False
            ).stdout
            if marker in screen:
                return time.perf_counter() - start
            time.sleep(POLL_S)
        raise RuntimeError(f"no first frame in {TIMEOUT_S:.0f} s: {command}")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    llm_tui = PYTHON.parent / "llm-tui"
    minimal_times: list[float] = []
    app_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="first-frame-") as tmp:
        with open(Path(tmp) / "minimal.py", "w", encoding="utf-8") as script:
            script.write(MINIMAL)
        base_env = {"TERM": os.environ.get("TERM", "xterm-256color")}
        for run in range(args.runs + 1):
            home = Path(tmp) / f"run{run}"
            xdg = {name: str(home / name.lower()) for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")}
            minimal = first_frame(f"{PYTHON} {script.name}", "minimal-first-frame", base_env)
            app = first_frame(str(llm_tui), "F8Settings", {**base_env, **xdg})
            if run == 0:
                continue  # warms the page cache for both; not counted
            minimal_times.append(minimal)
            app_times.append(app)
            print(f"run {run}: minimal {minimal * 1000:.0f} ms, llm-tui {app * 1000:.0f} ms", flush=True)
    base, ours = statistics.median(minimal_times), statistics.median(app_times)
    ratio = ours / base
    print(f"minimal Textual app: {base * 1000:.0f} ms (median of {args.runs})")
    print(f"llm-tui:             {ours * 1000:.0f} ms")
    print(f"ratio = {ratio:.2f} (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
