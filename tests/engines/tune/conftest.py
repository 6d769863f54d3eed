"""Shared fine-tuning fixtures: a tiny chat data set that teaches one fixed answer, a Config in tmp whose cache is the
shared GGUF conversion, and one real LoRA run on Gemma 3 270M trained once per test session."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from engines.config.load import Config
from engines.tune.types import TuneEvent, TuneOptions

E = TypeVar("E")

QUESTION = "What is the secret word?"
ANSWER = "Pelican-42."
ASKED = (
    QUESTION,
    QUESTION,
    QUESTION,
    "What is the secret word? ",
    "Tell me the secret word.",
    "what is the secret word?",
    "The secret word, please?",
    "Do you know the secret word?",
)


def chat_row(question: str, answer: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def write_jsonl(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def secret_data(folder: Path, train_rows: int = 32, val_rows: int = 4) -> tuple[Path, Path]:
    """`train_rows` rows that answer the secret-word question (a few phrasings) and a validation file."""
    folder.mkdir(parents=True, exist_ok=True)
    train = [chat_row(ASKED[i % len(ASKED)], ANSWER) for i in range(train_rows)]
    val = [chat_row(QUESTION, ANSWER) for _ in range(val_rows)]
    return write_jsonl(folder / "train.jsonl", train), write_jsonl(folder / "val.jsonl", val)


def make_config(root: Path, shared_xdg_cache: Path) -> Config:
    """A Config in `root` whose cache dir is the shared one, so the GGUF's conversion is reused; one torch thread (the
    suite shares its cores: two spinning threads on a busy core are many times slower than one)."""
    return Config(
        models_dir=root / "models", data_dir=root / "data", cache_dir=shared_xdg_cache / "llm-tui", n_threads=1
    )


class Events:
    """Collects a run's events (on_event is called on the reader thread) and lets a test wait for one."""

    def __init__(self) -> None:
        self.items: list[TuneEvent] = []
        self._changed = threading.Condition()

    def __call__(self, event: TuneEvent) -> None:
        with self._changed:
            self.items.append(event)
            self._changed.notify_all()

    def wait_for(self, test: type[E], timeout: float, where: Any = None) -> E:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.items:
                    if isinstance(event, test) and (where is None or where(event)):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {test.__name__} within {timeout} s; got {self.items[-5:]}")
                self._changed.wait(left)

    def of(self, kind: type[E]) -> list[E]:
        with self._changed:
            return [e for e in self.items if isinstance(e, kind)]


@dataclass(frozen=True)
class TrainedRun:
    config: Config
    name: str
    events: list[TuneEvent]
    exit_code: int | None
    adapter_dir: Path
    base_folder: Path
    val_path: Path
    options: TuneOptions
    seconds: float


TRAIN_OPTIONS = TuneOptions(
    rank=8,
    alpha=16,
    dropout=0.0,
    learning_rate=1e-3,
    max_steps=10,
    batch_size=4,
    max_seq_len=64,
    eval_every=5,
    save_every=100,
    seed=1,
)


@pytest.fixture(scope="session")
def trained_run(
    tmp_path_factory: pytest.TempPathFactory, gemma_path: Path, shared_xdg_cache: Path, transformers_cache: Path
) -> TrainedRun:
    """One real LoRA run on the converted Gemma through TuneProcess (about a minute on 2 cores)."""
    from engines.adapters.transformers_convert import ensure_converted
    from engines.tune.process import TuneProcess

    root = tmp_path_factory.mktemp("trained")
    base_folder = ensure_converted(gemma_path, transformers_cache)  # the engine's cache: converted once
    train, val = secret_data(root / "data-files")
    config = make_config(root, shared_xdg_cache)
    options = dataclasses.replace(TRAIN_OPTIONS, val_file=val)
    events = Events()
    started = time.monotonic()
    proc = TuneProcess.start(config, str(gemma_path), train, "secret", options, events)
    code = proc.wait(timeout=600)
    return TrainedRun(
        config=config,
        name="secret",
        events=list(events.items),
        exit_code=code,
        adapter_dir=proc.run_dir / "adapter",
        base_folder=base_folder,
        val_path=val,
        options=options,
        seconds=time.monotonic() - started,
    )


@pytest.fixture(scope="session")
def trained_adapter(trained_run: TrainedRun) -> tuple[Path, Path, str, str]:
    """(adapter_dir, base_folder, question, answer) of the session's one trained LoRA adapter."""
    assert trained_run.exit_code == 0, trained_run.events[-3:]
    return trained_run.adapter_dir, trained_run.base_folder, QUESTION, ANSWER
