"""Process-wide llama_cpp set-up: a quiet import, its C log captured for error messages, clear load errors; the
cores to run on and the KV-cache size a header implies.

llama.cpp logs from C to stderr, which would scribble over the TUI and over
`llm-tui chat` output; its warnings and errors are kept here instead and
quoted when a load fails ("failed to load model" alone says nothing).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections import deque
from pathlib import Path
from typing import Any

from engines.errors import BadModelFile, EngineUnavailable, InsufficientMemory, LlmTuiError
from engines.types import LaunchOptions

INSTALL_HINT = "pip install 'llm-tui[llama]'"

_c_log = logging.getLogger("llama_cpp.c")
_log_tail: deque[str] = deque(maxlen=12)
"""Recent warning/error lines from llama.cpp's C log."""
_log_sink: Any = None
"""The ctypes log callback; kept referenced so it is never garbage-collected while C holds it."""


def clear_log() -> None:
    """Forget captured log lines (before a load, so its error quotes only its own)."""
    _log_tail.clear()


def import_llama_cpp() -> Any:
    """Import llama_cpp, route its C log into `_log_tail` and stop it redirecting the process's stdout/stderr."""
    global _log_sink
    try:
        import llama_cpp
    except Exception as exc:  # a broken native library fails here too, not only a missing package
        raise EngineUnavailable("llama.cpp", f"cannot import llama_cpp: {exc}", INSTALL_HINT) from None
    if _log_sink is None:
        state = {"keep": False}

        def sink(level: int, text: bytes | None, user_data: Any) -> None:
            # 2 = warning, 3 = error, 5 = continuation of the previous message.
            state["keep"] = level in (2, 3) or (level == 5 and state["keep"])
            line = text.decode("utf-8", "replace").rstrip() if text else ""
            if state["keep"] and line:
                _log_tail.append(line)
            if line:  # every line, at debug level: the instance's log (engines/instance_log.py) keeps them
                _c_log.debug("%s", line)

        _log_sink = llama_cpp.llama_log_callback(sink)
        llama_cpp.llama_log_set(_log_sink, ctypes.c_void_p(0))
        # With verbose=False llama-cpp-python dup2()s fds 1 and 2 to /dev/null while a model loads: that blanks
        # the TUI's terminal output from other threads and is not thread-safe. Our log sink already keeps C quiet.
        for module in ("llama_cpp._internals", "llama_cpp.llama"):
            mod = sys.modules.get(module)
            if mod is not None and hasattr(mod, "suppress_stdout_stderr"):
                setattr(mod, "suppress_stdout_stderr", _NoRedirect)  # noqa: B010 - not a declared attribute
    return llama_cpp


class _NoRedirect:
    """Stand-in for llama_cpp's suppress_stdout_stderr that leaves the file descriptors alone."""

    def __init__(self, disable: bool = True) -> None:
        pass

    def __enter__(self) -> _NoRedirect:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def load_error(path: Path, options: LaunchOptions, exc: Exception) -> LlmTuiError:
    """Turn llama.cpp's bare "failed to load" into an error that says why, from its captured log."""
    said = f"{exc}{quoted_log()}"
    lowered = said.lower()
    if "unknown model architecture" in lowered:
        return EngineUnavailable(
            "llama.cpp", f"this build cannot run {path.name}: {said}", "pip install -U llama-cpp-python"
        )
    if "alloc" in lowered or "out of memory" in lowered:
        return InsufficientMemory(f"not enough memory to load {path.name} with n_ctx={options.n_ctx}: {said}")
    if options.lora_path is not None and "lora" in lowered:
        return BadModelFile(str(options.lora_path), f"the LoRA adapter did not load: {said}")
    return BadModelFile(str(path), f"llama.cpp could not load it: {said}")


def quoted_log() -> str:
    """The last captured warning/error lines, ready to append to an error message."""
    lines = [ln for ln in _log_tail if ln]
    return (" (llama.cpp said: " + " | ".join(lines[-4:]) + ")") if lines else ""


def physical_cores() -> int:
    """Physical cores available to this process: hyper-threads slow llama.cpp's decode down."""
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or 0
    except ImportError:
        physical = 0
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(physical or available, available))


def kv_estimate(header: Any, n_ctx: int) -> int:
    """F16 K+V bytes for `n_ctx` tokens on every layer, from the GGUF header (0 when it lacks the sizes)."""
    layers, kv_heads = header.block_count, header.head_count_kv
    head_dim = header.key_length or (
        header.embedding_length // header.head_count if header.embedding_length and header.head_count else None
    )
    if not (layers and kv_heads and head_dim):
        return 0
    v_dim = header.value_length or head_dim
    return int(n_ctx * layers * kv_heads * (head_dim + v_dim) * 2)


def token_piece(lib: Any, vocab: Any, token: int) -> bytes | None:
    """The bytes `token` stands for in `vocab`, or None for an end-of-generation token."""
    if lib.llama_vocab_is_eog(vocab, token):
        return None
    buf = ctypes.create_string_buffer(64)
    n = lib.llama_token_to_piece(vocab, token, buf, 64, 0, False)
    if n < 0:  # a longer piece: -n is the room it needs
        buf = ctypes.create_string_buffer(-n)
        n = lib.llama_token_to_piece(vocab, token, buf, -n, 0, False)
    return buf.raw[:n]
