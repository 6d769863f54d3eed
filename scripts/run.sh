#!/usr/bin/env bash
# Install llm-tui with llama.cpp and the default model, then open the app with that model loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh llama,gemma,serve
exec .venv/bin/llm-tui --model gemma-3-270m "$@"
