"""The native self-test keeps a crashing native library out of the app's own process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from engines.adapters import selftest
from engines.errors import EngineUnavailable

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SEGFAULT = (
    "import os, signal, sys; print('ggml: ldtilecfg', file=sys.stderr, flush=True); "
    "os.kill(os.getpid(), signal.SIGSEGV)"
)
EXIT_3 = "import sys; print('llama_cpp: something broke', file=sys.stderr); sys.exit(3)"
HANG = "import threading; threading.Event().wait()"


@pytest.fixture(autouse=True)
def _needs_llama_cpp() -> None:
    pytest.importorskip("llama_cpp")


@pytest.fixture
def spawns(monkeypatch: pytest.MonkeyPatch) -> list[Sequence[str]]:
    """Record every child process the self-test starts."""
    seen: list[Sequence[str]] = []
    real = selftest._run_child

    def counting(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        seen.append(argv)
        return real(argv, timeout_s)

    monkeypatch.setattr(selftest, "_run_child", counting)
    return seen


def _child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_segfault_names_the_signal_the_cause_and_the_fix(tmp_path: Path, spawns: list[Sequence[str]]) -> None:
    with pytest.raises(EngineUnavailable) as info:
        selftest.ensure_native_engine_works("llama.cpp", tmp_path / "m.gguf", tmp_path, probe_argv=_child(SEGFAULT))
    text = str(info.value)
    assert "SIGSEGV" in text
    assert "ldtilecfg" in text  # the child's last stderr lines
    assert "AMX" in text
    assert "-DGGML_NATIVE=OFF" in text and "pip install --force-reinstall --no-cache-dir llama-cpp-python" in text
    assert not (tmp_path / selftest.VERDICT_FILE).exists()  # failures are not remembered
    with pytest.raises(EngineUnavailable):
        selftest.ensure_native_engine_works("llama.cpp", tmp_path / "m.gguf", tmp_path, probe_argv=_child(SEGFAULT))
    assert len(spawns) == 2  # ...so the next attempt checks again


def test_nonzero_exit_quotes_stderr(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="exit status 3") as info:
        selftest.ensure_native_engine_works("llama.cpp", tmp_path / "m.gguf", tmp_path, probe_argv=_child(EXIT_3))
    assert "llama_cpp: something broke" in str(info.value)


def test_hang_is_a_timeout_failure(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match=r"did not finish within 1\.5 s"):
        selftest.ensure_native_engine_works(
            "llama.cpp", tmp_path / "m.gguf", tmp_path, probe_argv=_child(HANG), timeout_s=1.5
        )


@pytest.mark.real_model
def test_real_probe_passes_once_and_is_remembered(
    gemma_path: Path, tmp_path: Path, spawns: list[Sequence[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    selftest.ensure_native_engine_works("llama.cpp", gemma_path, tmp_path)
    assert len(spawns) == 1
    selftest.ensure_native_engine_works("llama.cpp", gemma_path, tmp_path)
    assert len(spawns) == 1  # in-process memory
    verdict = json.loads((tmp_path / selftest.VERDICT_FILE).read_text())
    assert verdict["engines"]["llama.cpp"]["verdict"] == "passed"
    assert any("libllama" in lib[0] for lib in verdict["engines"]["llama.cpp"]["identity"]["libraries"])

    monkeypatch.setattr(selftest, "_passed", set())  # a new launch: only the file remembers
    selftest.ensure_native_engine_works("llama.cpp", gemma_path, tmp_path)
    assert len(spawns) == 1

    identity = selftest.native_identity("llama.cpp")
    identity["libraries"][0][2] += 1  # the library was rebuilt (new mtime)
    monkeypatch.setattr(selftest, "_passed", set())
    monkeypatch.setattr(selftest, "native_identity", lambda engine: identity)
    selftest.ensure_native_engine_works("llama.cpp", gemma_path, tmp_path)
    assert len(spawns) == 2
