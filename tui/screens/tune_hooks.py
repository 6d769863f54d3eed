"""What the Tune screen calls outside itself, kept apart so tests can stand in for it: the training process's
start and resume (and the handle they return), whether torch and peft are installed, whether the transformers
engine takes a LoRA adapter, and a run's total steps from its events file."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from engines.config.load import Config
from engines.errors import LlmTuiError
from engines.tune.types import Started, TuneEvent, TuneOptions, TuneRun

INSTALL_HINT = "pip install 'llm-tui[tune]'"


class TuneHandle(Protocol):
    """What the screen uses of a running TuneProcess."""

    @property
    def name(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def stop(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int | None: ...


OnEvent = Callable[[TuneEvent], None]
StartRun = Callable[[Config, str, Path, str, TuneOptions, OnEvent], TuneHandle]
ResumeRun = Callable[[Config, str, OnEvent], TuneHandle]


def missing_packages(find: Callable[[str], object | None] = importlib.util.find_spec) -> str | None:
    """Why runs cannot be trained here (torch or peft not installed), naming the extra; None when they can."""
    missing = [m for m in ("torch", "transformers", "peft") if find(m) is None]
    return f"Fine-tuning needs {', '.join(missing)}: {INSTALL_HINT}" if missing else None


def lora_unsupported() -> str | None:
    """Why the transformers engine cannot load an adapter (not installed, or no LoRA yet); None when it can."""
    from engines.adapters.registry import engine_class
    from engines.types import Capability

    try:
        cls = engine_class("transformers")
    except LlmTuiError as exc:
        return str(exc)
    if not cls.capabilities & Capability.LORA:
        return "The transformers engine cannot load a LoRA adapter yet."
    return None


def total_steps(run: TuneRun) -> int | None:
    """The run's total steps, from the last Started event in its events file (None when unreadable)."""
    path = run.run_dir / "events.jsonl"
    if not path.is_file():
        return run.options.max_steps
    try:
        from engines.tune.events import read_events

        started = [e for e in read_events(path) if isinstance(e, Started)]
    except (LlmTuiError, OSError, ImportError):
        return run.options.max_steps
    return started[-1].total_steps if started else run.options.max_steps
