#!/usr/bin/env bash
# Install the test dependencies and run every check and test, the real-model ones included.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh llama,dev
.venv/bin/ruff check engines tui tests bench
.venv/bin/ruff format --check engines tui tests bench
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
