#!/usr/bin/env bash
# Create .venv and install llm-tui with the extras given (default: llama,gemma).
# Idempotent: when pyproject.toml and this script have not changed since the
# last successful install, it does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-llama,gemma}"

python=""
for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python="$candidate"
        break
    fi
done
if [ -z "$python" ]; then
    echo "setup: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi

stamp=".venv/.install-stamp-${extras//,/-}"
want=$(cat pyproject.toml scripts/setup.sh ${PIP_CONSTRAINT:-} | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

# llama.cpp's default build uses -march=native, which on cloud VMs with recent
# Xeons enables AMX and crashes on the first decode. Build for a portable
# x86-64 level instead; set CMAKE_ARGS yourself for CUDA (see README).
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
.venv/bin/python -m pip install --quiet --upgrade pip
echo "setup: installing llm-tui[$extras] into .venv (the first llama-cpp-python build takes a few minutes)" >&2
.venv/bin/python -m pip install --quiet --editable ".[$extras]"
echo "$want" >"$stamp"
