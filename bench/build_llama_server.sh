#!/usr/bin/env bash
# Bench-only: build llama.cpp's own `llama-server` from the llama.cpp sources that the installed
# llama-cpp-python vendors (same version, same kernels), for bench/parallel_serve.py to compare against.
# Not a dependency of llm-tui; nothing here is installed into the venv except, if missing, cmake.
#
#   bash bench/build_llama_server.sh            # prints the binary's path at the end
#   PYTHON=/path/to/python bash bench/build_llama_server.sh
#
# Result: ~/.cache/llm-tui-bench/llama-server-<version>/llama-server (plus the shared libraries it links),
# skipped when already there. Portable x86-64 flags (AVX2/FMA/F16C, no -march=native): the native build
# enables AMX on the dev VM and segfaults there. Takes several minutes on 2 cores.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
jobs="${JOBS:-2}"

ver="$("$python" -c 'import llama_cpp; print(llama_cpp.__version__)')"
dest="${LLAMA_SERVER_DIR:-$HOME/.cache/llm-tui-bench/llama-server-$ver}"
bin="$dest/llama-server"

if [[ -x "$bin" ]]; then
    echo "llama-server $ver already built" >&2
    echo "$bin"
    exit 0
fi

cmake_bin="$(command -v cmake || true)"
if [[ -z "$cmake_bin" ]]; then
    venv_bin="$(dirname "$python")"
    if [[ ! -x "$venv_bin/cmake" ]]; then
        echo "cmake not found: installing it into the venv ($venv_bin/pip install cmake)" >&2
        "$venv_bin/pip" install cmake >&2 || {
            echo "could not install cmake; install it (apt-get install cmake, or pip install cmake)" >&2
            exit 1
        }
    fi
    cmake_bin="$venv_bin/cmake"
fi
for tool in cc c++; do
    command -v "$tool" >/dev/null || {
        echo "no $tool: install a C/C++ toolchain (apt-get install build-essential)" >&2
        exit 1
    }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/llama-server-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "downloading the llama-cpp-python $ver sdist" >&2
"$python" -m pip download "llama-cpp-python==$ver" --no-binary :all: --no-deps -d "$work" >&2
sdist="$(find "$work" -maxdepth 1 \( -name 'llama_cpp_python-*.tar.gz' -o -name 'llama-cpp-python-*.tar.gz' \) | head -n 1)"
[[ -n "$sdist" ]] || {
    echo "no sdist downloaded into $work" >&2
    exit 1
}
tar -xzf "$sdist" -C "$work"
src="$(find "$work" -mindepth 3 -maxdepth 3 -type d -path '*/vendor/llama.cpp' | head -n 1)"
[[ -n "$src" && -f "$src/CMakeLists.txt" ]] || {
    echo "no vendor/llama.cpp in $sdist" >&2
    exit 1
}

echo "building llama-server from $src ($jobs jobs)" >&2
start=$SECONDS
"$cmake_bin" -S "$src" -B "$work/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    -DBUILD_SHARED_LIBS=OFF >&2
"$cmake_bin" --build "$work/build" --config Release --target llama-server -j "$jobs" >&2
echo "built in $((SECONDS - start)) s" >&2

built="$(find "$work/build" -type f -name llama-server -perm -u+x | head -n 1)"
[[ -n "$built" ]] || {
    echo "the build produced no llama-server binary" >&2
    exit 1
}
mkdir -p "$dest"
# Static libraries were asked for; copy any shared ones anyway, in case this llama.cpp ignores the option.
find "$work/build" -name '*.so*' \( -type f -o -type l \) -exec cp -P {} "$dest/" \;
cp "$built" "$bin.tmp"
mv "$bin.tmp" "$bin"
# A shared build looks for its libraries next to the binary only via RPATH; LD_LIBRARY_PATH covers the rest.
LD_LIBRARY_PATH="$dest${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$bin" --version >&2 || {
    echo "the built llama-server does not run" >&2
    exit 1
}
echo "$bin"
