"""Native engine self-test: load and decode once in a child process before trusting the library in this one.

A llama-cpp-python built with `-march=native` may use CPU instructions (AMX,
AVX-512) that the machine or its VM forbids; the first decode then dies with
SIGILL or SIGSEGV, which would take the whole app down. So before the first
in-process load, a child process loads the model being launched (n_ctx=64)
and decodes two tokens. Loading a large model twice is slow, but it happens
once per install: a pass is remembered on disk, keyed by the engine's version
and the size/mtime of its shared libraries, so a rebuild is re-checked. A
failure is never remembered: the next launch tries again (the user may have
rebuilt in between).

Run as `python -m engines.adapters.selftest ENGINE MODEL_PATH` to probe by hand.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engines.errors import EngineUnavailable

DEFAULT_TIMEOUT_S = 300.0
"""Loading a multi-GB model from a cold disk takes a while; a hang is still caught."""

VERDICT_FILE = "native-selftest.json"

PORTABLE_REBUILD = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" '
    "pip install --force-reinstall --no-cache-dir llama-cpp-python"
)

# Engine name -> (importable package, distribution name) of its native library.
_NATIVE: dict[str, tuple[str, str]] = {"llama.cpp": ("llama_cpp", "llama_cpp_python")}
_LIB_SUFFIXES = (".so", ".dylib", ".dll")
_EXIT_MODEL_LOAD_FAILED = 4
"""The child could not load the model (a Python exception, no crash): the in-process load reports why."""

_passed: set[tuple[str, str]] = set()
"""(cache_dir, identity) pairs that passed in this process."""


def native_identity(engine: str) -> dict[str, Any]:
    """The engine's version and shared-library fingerprints, found without importing (loading) the library."""
    package, dist = _NATIVE[engine]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(engine, f"Python package {package!r} is not installed", "pip install 'llm-tui[llama]'")
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    libs: list[list[Any]] = []
    for lib in sorted(pkg_dir.rglob("*")):
        if lib.is_file() and any(s in lib.name for s in _LIB_SUFFIXES):
            st = lib.stat()
            libs.append([str(lib.relative_to(pkg_dir)), st.st_size, st.st_mtime_ns])
    return {"engine": engine, "version": version, "package_dir": str(pkg_dir), "libraries": libs}


def ensure_native_engine_works(
    engine: str,
    model_path: Path,
    cache_dir: Path,
    *,
    probe_argv: Sequence[str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Return if `engine`'s native library loads and decodes `model_path` in a child; else EngineUnavailable.

    `probe_argv` replaces the child command (tests make it crash on purpose).
    """
    identity = native_identity(engine)
    key = (str(cache_dir), json.dumps(identity, sort_keys=True))
    if key in _passed or _stored_identity(cache_dir, engine) == identity:
        _passed.add(key)
        return
    argv = (
        list(probe_argv)
        if probe_argv is not None
        else [sys.executable, "-m", "engines.adapters.selftest", engine, str(model_path)]
    )
    what = f"loading {model_path.name} and decoding 2 tokens in a test process"
    try:
        proc = _run_child(argv, timeout_s)
    except subprocess.TimeoutExpired as exc:
        tail = _tail(exc.stderr)
        raise EngineUnavailable(
            engine,
            f"the native self-test did not finish within {timeout_s:g} s ({what}){tail}; the library may hang on "
            "this machine, or the disk is very slow",
            f"retry; if it persists, rebuild portably: {PORTABLE_REBUILD}",
        ) from None
    if proc.returncode == 0:
        _passed.add(key)
        _store_identity(cache_dir, engine, identity)
        return
    if proc.returncode == _EXIT_MODEL_LOAD_FAILED and probe_argv is None:
        return  # not a crash: the model itself is the problem, and loading it in-process raises a clear error
    tail = _tail(proc.stderr)
    if proc.returncode < 0:
        raise EngineUnavailable(engine, _signal_reason(-proc.returncode, what, tail), f"rebuild it: {PORTABLE_REBUILD}")
    raise EngineUnavailable(
        engine,
        f"the native self-test failed with exit status {proc.returncode} ({what}){tail}",
        f"if the library was built for another CPU, rebuild it: {PORTABLE_REBUILD}",
    )


def _run_child(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run the probe; separate so tests can count spawns."""
    env = dict(os.environ)
    # The child must import this package even when it is used from a source checkout.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout_s,
        env=env,
        check=False,
    )


def _signal_reason(signum: int, what: str, tail: str) -> str:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    if name in ("SIGILL", "SIGSEGV", "SIGBUS"):
        why = (
            "likely cause: the library was compiled for CPU instructions this machine or VM forbids "
            "(e.g. AMX or AVX-512 enabled by a -march=native build)"
        )
    elif name == "SIGKILL":
        why = "likely cause: the system ran out of memory and killed it"
    elif name == "SIGABRT":
        why = "the library aborted on an internal check (see its last output)"
    else:
        why = "the native library crashed"
    return f"the native library was killed by {name} while {what}{tail}; {why}"


def _tail(output: str | bytes | None, lines: int = 5, width: int = 160) -> str:
    """The child's last stderr lines on one line, for an error message."""
    if not output:
        return ""
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    last = [ln.strip() for ln in text.strip().splitlines()[-lines:] if ln.strip()]
    last = [ln if len(ln) <= width else ln[: width - 1] + "…" for ln in last]
    return f" (its last output: {' | '.join(last)})" if last else ""


def _stored_identity(cache_dir: Path, engine: str) -> dict[str, Any] | None:
    try:
        data = json.loads((cache_dir / VERDICT_FILE).read_text(encoding="utf-8"))
        entry = data["engines"][engine]
        return entry["identity"] if entry.get("verdict") == "passed" else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store_identity(cache_dir: Path, engine: str, identity: dict[str, Any]) -> None:
    path = cache_dir / VERDICT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.get("engines"), dict):
            raise ValueError
    except (OSError, ValueError, AttributeError):
        data = {"version": 1, "engines": {}}
    data["engines"][engine] = {"identity": identity, "verdict": "passed", "checked_at": time.time()}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only means the probe runs again next launch


def _probe_llama_cpp(model_path: str) -> int:
    """Child side: load with a tiny context and greedily decode two tokens."""
    print("selftest: importing llama_cpp", file=sys.stderr, flush=True)
    try:
        import llama_cpp
    except Exception as exc:
        print(f"selftest: cannot import llama_cpp: {exc!r}", file=sys.stderr)
        return 3
    print(f"selftest: loading {model_path}", file=sys.stderr, flush=True)
    try:
        # verbose=True keeps llama.cpp's own log on stderr: its last lines show where a crash happened.
        llm = llama_cpp.Llama(model_path=model_path, n_ctx=64, n_batch=64, n_gpu_layers=0, verbose=True)
    except Exception as exc:
        print(f"selftest: model did not load: {exc}", file=sys.stderr)
        return _EXIT_MODEL_LOAD_FAILED
    print("selftest: decoding", file=sys.stderr, flush=True)
    tokens = llm.tokenize(b"Hello", add_bos=True)
    for decoded, _ in enumerate(llm.generate(tokens, temp=0.0), start=1):
        if decoded == 2:
            break
    llm.close()
    print("selftest: ok", file=sys.stderr, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the child process: `python -m engines.adapters.selftest ENGINE MODEL_PATH`."""
    # No faulthandler: its Python stack would push llama.cpp's own last log lines (the useful ones) out of
    # the tail the parent quotes; the "selftest: <phase>" markers already say where it died.
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in _NATIVE:
        print(f"usage: python -m engines.adapters.selftest {{{','.join(_NATIVE)}}} MODEL_PATH", file=sys.stderr)
        return 2
    return _probe_llama_cpp(args[1])


if __name__ == "__main__":
    sys.exit(main())
