#!/usr/bin/env bash
# Create .venv and install llm-tui with the extras given (default: llama,gemma).
# Idempotent: when pyproject.toml and this script have not changed since the
# last successful install, it does nothing.
# It says what it is doing: each step, pip's own lines, a heartbeat while a
# native build runs silently, and the elapsed time at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-llama,gemma}"
started=$SECONDS

say() { echo "setup: $*" >&2; }
elapsed() { printf '%dm%02ds' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)); }

python=""
for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python="$candidate"
        break
    fi
done
if [ -z "$python" ]; then
    say "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)"
    exit 1
fi

stamp=".venv/.install-stamp-${extras//,/-}"
want=$(cat pyproject.toml scripts/setup.sh ${PIP_CONSTRAINT:-} | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

if [ ! -x .venv/bin/python ]; then
    say "[1/3] creating .venv with $("$python" --version 2>&1)"
    "$python" -m venv .venv
else
    say "[1/3] .venv exists; updating it (pyproject.toml or the extras changed)"
fi
.venv/bin/python -m pip install --quiet --upgrade pip

# llama.cpp's default build uses -march=native, which on cloud VMs with recent
# Xeons enables AMX and crashes on the first decode. Build for a portable
# x86-64 level instead; set CMAKE_ARGS yourself for CUDA (see README).
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
if [[ ",$extras," == *,llama,* ]] && ! .venv/bin/python -c 'import llama_cpp' 2>/dev/null; then
    say "[2/3] llama-cpp-python: building from source unless pip has a wheel cached (about 4 minutes on 2 cores the first time)"
else
    say "[2/3] llama-cpp-python: nothing to build"
fi

say "[3/3] installing llm-tui[$extras] and its dependencies"
# pip prints nothing while a native extension compiles; a heartbeat says it is alive.
(
    while sleep 30; do say "  … still installing ($(elapsed) so far)"; done
) &
heartbeat=$!
trap 'kill $heartbeat 2>/dev/null || true' EXIT
# Collecting/Downloading/Building lines show; "Requirement already satisfied" ones do not.
set +e
.venv/bin/python -m pip install --progress-bar on --editable ".[$extras]" 2>&1 |
    grep --line-buffered -v -e '^Requirement already satisfied' -e 'is ignored: it is neither a file nor a directory' -e '^\s*$' >&2
status=${PIPESTATUS[0]}
set -e
kill $heartbeat 2>/dev/null || true
if [ "$status" -ne 0 ]; then
    say "pip failed after $(elapsed) (exit $status); the lines above say why"
    exit "$status"
fi
echo "$want" >"$stamp"
say "done in $(elapsed)"
