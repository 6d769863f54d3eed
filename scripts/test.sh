#!/usr/bin/env bash
# Install the test dependencies and run every check and test, the real-model ones included.
set -euo pipefail
cd "$(dirname "$0")/.."
# transformers runs on the CPU build of torch here (scripts/cpu-torch.txt pins it).
PIP_CONSTRAINT="$PWD/scripts/cpu-torch.txt" ./scripts/setup.sh llama,dev,transformers,tune,mlflow,serve,audio
# One test drives the real app in tmux.
if ! command -v tmux >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && apt-get install -y -qq tmux) >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        (sudo apt-get update -qq && sudo apt-get install -y -qq tmux) >/dev/null
    fi
fi
# The `llm-tui web` tests drive the real app in a headless Chromium (Playwright downloads no browser here).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
    fi
fi
.venv/bin/ruff check engines tui cli tests bench
.venv/bin/ruff format --check engines tui cli tests bench
.venv/bin/mypy
# Two processes, a test file each at a time (module fixtures such as the transformers conversion are built once per
# file); LLM_TUI_TEST_WORKERS=0 runs everything in this process (for pdb), a bigger number uses more cores.
.venv/bin/python -m pytest -n "${LLM_TUI_TEST_WORKERS:-2}" --dist loadfile "$@"
