"""First frame: `llm-tui` with no arguments vs a minimal Textual app, both started in tmux, in one run.

Each sample starts a detached tmux session (80×24) running the program and polls `tmux capture-pane`
until a string only the first painted frame holds appears: the screen bar's `F8Settings` for llm-tui,
the Static's text for the minimal app. They alternate so machine load hits all alike; llm-tui runs
with isolated XDG folders (its own config, store and download queue, kept across runs: run 0, not
counted, is the first start). `--before DIR` times another checkout's `python -m tui` (e.g. a `git
archive` of an older commit) in the same run, for before/after figures under the same load.

Modules are byte-compiled once (run 0) into a folder of the run's own, as an installed llm-tui has
them; `--no-bytecode-cache` compiles ours at every start instead (what PYTHONDONTWRITEBYTECODE=1 does
to an editable install, while Textual's own .pyc files still load). On a busy machine run it under
`nice -n -10` (root): each sample has a tmux server of its own, which inherits the priority.
Target: median llm-tui ÷ median minimal ≤ 1.5.

    python bench/first_frame.py [--runs 7] [--before DIR] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import itertools
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
SAMPLES = itertools.count()
"""Each sample has a tmux server of its own (a socket in the run's temporary folder, gone with it): it inherits
this process's priority (`nice -n -10 python bench/…` on a busy machine), nobody else's sessions share it, and it
never meets the previous sample's server on its way out."""
POLL_S = 0.005
TIMEOUT_S = 30.0


def first_frame(command: str, marker: str, env: dict[str, str], sockets: Path, cwd: Path = ROOT) -> float:
    """Seconds from starting `command` in a new tmux session until `marker` is on its screen."""
    number = next(SAMPLES)
    session, socket = f"first-frame-{number}", str(sockets / f"tmux-{number}")
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    start = time.perf_counter()
    subprocess.run(
        [
            "tmux",
            "-S",
            socket,
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "80",
            "-y",
            "24",
            f"cd {cwd} && env -u PYTHONDONTWRITEBYTECODE {exports} {command}",
        ],
        check=True,
    )
    try:
        while time.perf_counter() - start < TIMEOUT_S:
            screen = subprocess.run(
                ["tmux", "-S", socket, "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False
            ).stdout
            if marker in screen:
                return time.perf_counter() - start
            time.sleep(POLL_S)
        raise RuntimeError(f"no first frame in {TIMEOUT_S:.0f} s: {command}")
    finally:
        subprocess.run(["tmux", "-S", socket, "kill-session", "-t", session], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--before", type=Path, metavar="DIR", help="also time `python -m tui` in DIR (another commit's checkout)"
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="compile every module at every start (as with PYTHONDONTWRITEBYTECODE=1 and an editable install)",
    )
    args = parser.parse_args()
    programs = {"llm-tui": (str(PYTHON.parent / "llm-tui"), ROOT)}
    if args.before is not None:
        programs["before"] = (f"{PYTHON} -m tui", args.before.resolve())
    times: dict[str, list[float]] = {"minimal": [], **{name: [] for name in programs}}
    with tempfile.TemporaryDirectory(prefix="first-frame-") as tmp:
        script = Path(tmp) / "minimal.py"
        script.write_text(MINIMAL, encoding="utf-8")
        base_env = {"TERM": os.environ.get("TERM", "xterm-256color")}
        if args.no_bytecode_cache:
            base_env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            # Compiled modules are cached as a user's install has them (pip compiles at install; an editable
            # install on first run), here in a folder of the run's own: nothing is written into the checkout.
            base_env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        for run in range(args.runs + 1):
            sample = {"minimal": first_frame(f"{PYTHON} {script}", "minimal-first-frame", base_env, Path(tmp))}
            for name, (command, cwd) in programs.items():
                # One set of folders per program, kept across runs: run 0 creates the store (a first start,
                # not counted); the counted runs are the everyday start of a returning user.
                home = Path(tmp) / name
                xdg = {n: str(home / n.lower()) for n in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")}
                sample[name] = first_frame(command, "F8Settings", {**base_env, **xdg}, Path(tmp), cwd)
            if run == 0:
                continue  # warms the page cache; not counted
            for name, seconds in sample.items():
                times[name].append(seconds)
            print(f"run {run}: " + ", ".join(f"{n} {t * 1000:.0f} ms" for n, t in sample.items()), flush=True)
    base = statistics.median(times["minimal"])
    print(f"minimal Textual app: {base * 1000:.0f} ms (median of {args.runs})")
    for name in programs:
        ours = statistics.median(times[name])
        ratio = ours / base
        print(
            f"{name}: {ours * 1000:.0f} ms, ratio = {ratio:.2f} (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
