"""Tune events as JSON lines: every kind round-trips, bad or unknown lines give None, and a run's events.jsonl is
read back bounded, with the torn last line of a killed writer left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.tune import events as tune_events
from engines.tune.events import from_line, read_events, to_line
from engines.tune.types import (
    EVENT_TYPES,
    Checkpointed,
    Failed,
    Finished,
    Started,
    Status,
    StepDone,
    Stopped,
    TuneEvent,
    Validated,
)

ALL: list[TuneEvent] = [
    Started(total_steps=40, resumed_from=10, train_rows=90, val_rows=10, trainable_params=7, total_params=99),
    Status("converting the GGUF"),
    StepDone(
        step=3,
        epoch=0.25,
        loss=2.5,
        learning_rate=1e-4,
        tokens_per_s=812.5,
        memory_bytes=2**31,
        elapsed_s=4.0,
        eta_s=None,
    ),
    Validated(step=10, val_loss=1.75),
    Checkpointed(step=10, path=Path("/runs/a/checkpoints/step-10")),
    Finished(adapter_dir=Path("/runs/a/adapter"), merged_dir=None, final_loss=0.5, val_loss=0.75),
    Stopped(step=12, checkpoint=None),
    Failed("CUDA out of memory"),
]


def test_every_kind_round_trips() -> None:
    assert {type(e) for e in ALL} == set(EVENT_TYPES.values())
    for event in ALL:
        line = to_line(event)
        assert "\n" not in line
        assert from_line(line) == event


def test_the_line_is_the_documented_json() -> None:
    assert json.loads(to_line(ALL[4])) == {"event": "checkpoint", "step": 10, "path": "/runs/a/checkpoints/step-10"}
    assert json.loads(to_line(Stopped(3, Path("c")))) == {"event": "stopped", "step": 3, "checkpoint": "c"}


def test_whole_numbers_are_read_as_floats_and_extra_keys_are_ignored() -> None:
    event = from_line('{"event": "validated", "step": 4, "val_loss": 2, "later_field": true}')
    assert event == Validated(4, 2.0) and isinstance(event.val_loss, float)
    assert from_line('{"event": "started", "total_steps": 5}') == Started(total_steps=5)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "not json",
        "[]",
        '{"event": "exploded"}',
        '{"kind": "status", "message": "x"}',
        '{"event": "status"}',  # a field without default is missing
        '{"event": "status", "message": 3}',
        '{"event": "validated", "step": "4", "val_loss": 1.0}',
        '{"event": "validated", "step": 4.5, "val_loss": 1.0}',
        '{"event": "validated", "step": true, "val_loss": 1.0}',
        '{"event": "finished", "adapter_dir": null}',
        '{"event": "status", "message": "' + "x" * 70_000 + '"}',
    ],
)
def test_bad_lines_give_none(line: str) -> None:
    assert from_line(line) is None


def test_read_events_skips_bad_lines_and_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    whole = "\n".join(to_line(e) for e in ALL[:4])
    torn = to_line(ALL[4])[:-1]
    path.write_text(whole + "\ngarbage\n" + to_line(ALL[5]) + "\n" + torn, encoding="utf-8")
    assert read_events(path) == [*ALL[:4], ALL[5]]
    path.write_text(whole + "\n" + to_line(ALL[4]) + "\n", encoding="utf-8")
    assert read_events(path) == ALL[:5]
    assert read_events(tmp_path / "missing.jsonl") == []


def test_read_events_is_bounded_to_the_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.jsonl"
    steps = [Validated(step=i, val_loss=1.0) for i in range(100)]
    path.write_text("".join(to_line(e) + "\n" for e in steps), encoding="utf-8")
    monkeypatch.setattr(tune_events, "MAX_EVENTS", 7)
    assert read_events(path) == steps[-7:]
    monkeypatch.setattr(tune_events, "MAX_EVENTS", 1000)
    size = len(to_line(steps[-1])) + 1
    monkeypatch.setattr(tune_events, "MAX_FILE_BYTES", 5 * size + 3)  # starts mid-line: that line is dropped
    assert read_events(path) == steps[-5:]
