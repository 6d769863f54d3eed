#!/usr/bin/env bash
# Install llm-tui with llama.cpp and the default model, then open the app with that model loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh llama,gemma,serve,mcp,web
# Bytecode for our own modules, even where PYTHONDONTWRITEBYTECODE is set: the app starts ~100 ms sooner
# (only changed files are compiled again).
.venv/bin/python -m compileall -q engines tui cli >/dev/null || true
exec .venv/bin/llm-tui --model gemma-3-270m "$@"
