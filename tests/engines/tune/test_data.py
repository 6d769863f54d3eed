"""Training data: the three JSONL shapes, every kind of refused row with its line, the file bounds, the hash, the
validation split."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from engines.errors import BadRequest
from engines.tune import data as tune_data
from engines.tune.data import TrainRow, read_rows, split_rows, validate_data
from engines.tune.types import DataShape, RowProblem
from engines.types import ChatMessage


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": "Hello."}]}  # fmt: skip


def test_the_three_shapes_become_messages_or_text(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            CHAT,
            {"instruction": "Translate to French", "input": "cat", "output": "chat"},
            {"instruction": "Say yes", "output": "yes"},
            {"text": "Plain text to learn."},
        ],
    )
    rows, problems = read_rows(path)
    assert problems == []
    assert [r.line for r in rows] == [1, 2, 3, 4]
    assert rows[0] == TrainRow(
        1,
        DataShape.CHAT,
        (ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello.")),
    )
    assert rows[1].messages == (ChatMessage("user", "Translate to French\n\ncat"), ChatMessage("assistant", "chat"))
    assert rows[2].messages == (ChatMessage("user", "Say yes"), ChatMessage("assistant", "yes"))
    assert rows[3] == TrainRow(4, DataShape.TEXT, (), "Plain text to learn.")


def test_each_bad_row_is_named_by_line_with_its_reason(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            CHAT,  # 1 ok
            "{not json",  # 2
            "[1, 2]",  # 3
            {"prompt": "x", "completion": "y"},  # 4
            {"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]},  # 5
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]},  # 6
            {"messages": [{"role": "user", "content": "only a question"}]},  # 7
            {"messages": [{"role": "user", "content": ["parts"]}, {"role": "assistant", "content": "y"}]},  # 8
            {"instruction": "x"},  # 9
            {"text": ""},  # 10
            "",  # 11: blank, skipped
            {"text": 5},  # 12
        ],
    )
    report = validate_data(path)
    assert report.rows == 1 and not report.ok
    got = {p.line: p.message for p in report.problems}
    assert sorted(got) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 12]
    assert got[2].startswith("not JSON")
    assert got[3] == "not a JSON object but a list"
    assert "unknown shape" in got[4] and "'prompt', 'completion'" in got[4]
    assert "bad role 'tool'" in got[5]
    assert got[6] == "message 2 (assistant): empty content"
    assert "no assistant message" in got[7]
    assert "content is a list, not a string" in got[8]
    assert got[9] == "instruction row without 'output'"
    assert got[10] == "text is empty"
    assert got[12] == "text is a number, not a string"


def test_a_line_over_the_limit_is_refused_without_losing_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tune_data, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(tune_data, "_CHUNK", 64)  # the long line spans many reads
    path = write_jsonl(tmp_path / "long.jsonl", [{"text": "a" * 5000}, {"text": "short"}, {"text": "b" * 999}])
    rows, problems = read_rows(path)
    assert [p.line for p in problems] == [1, 3]  # {"text": "bbb..."} is over 1000 bytes with its key
    assert all("longer than" in p.message for p in problems)
    assert [(r.line, r.text) for r in rows] == [(2, "short")]


def test_the_last_line_needs_no_newline_and_a_bom_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "one"}\r\n{"text": "two"}')
    rows, problems = read_rows(path)
    assert problems == [] and [r.text for r in rows] == ["one", "two"]


def test_not_utf8_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "caf\xe9"}\n')
    assert read_rows(path)[1] == [RowProblem(1, "not UTF-8 text (byte 14)")]


def test_sha256_counts_and_split(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [CHAT] * 6 + [{"text": f"t{i}"} for i in range(4)])
    report = validate_data(path, val_fraction=0.2, seed=3)
    assert report.ok and report.rows == 10
    assert report.shapes == {"chat": 6, "text": 4}
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (report.train_rows, report.val_rows) == (8, 2)
    assert report.lengths is None and report.notes == ()


def test_split_is_seeded_disjoint_ordered_and_never_empty(tmp_path: Path) -> None:
    rows = [TrainRow(i, DataShape.TEXT, (), f"t{i}") for i in range(1, 21)]
    train, val = split_rows(rows, val_fraction=0.25, seed=7)
    again = split_rows(rows, val_fraction=0.25, seed=7)
    other = split_rows(rows, val_fraction=0.25, seed=8)
    assert (train, val) == again and val != other[1]
    assert len(val) == 5 and sorted(train + val, key=lambda r: r.line) == rows
    assert train == sorted(train, key=lambda r: r.line) and val == sorted(val, key=lambda r: r.line)
    two = rows[:2]
    assert [len(part) for part in split_rows(two, val_fraction=0.01, seed=0)] == [1, 1]
    assert [len(part) for part in split_rows(two, val_fraction=0.99, seed=0)] == [1, 1]
    assert split_rows(rows[:1], val_fraction=0.5, seed=0) == (rows[:1], [])
    assert split_rows(rows, val_fraction=0.0, seed=0) == (rows, [])
    with pytest.raises(BadRequest, match="fraction"):
        split_rows(rows, val_fraction=1.0, seed=0)


def test_one_row_says_there_is_no_validation(tmp_path: Path) -> None:
    report = validate_data(write_jsonl(tmp_path / "d.jsonl", [CHAT]))
    assert (report.train_rows, report.val_rows) == (1, 0)
    assert report.ok and "only one usable row" in report.notes[0]


def test_a_validation_file_is_its_own_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [CHAT] * 3)
    val = write_jsonl(tmp_path / "v.jsonl", [{"text": "v"}, "oops"])
    report = validate_data(path, val_file=val, val_fraction=0.5)
    assert (report.rows, report.train_rows, report.val_rows) == (3, 3, 1)
    assert report.problems == (RowProblem(2, "validation file v.jsonl: " + read_rows(val)[1][0].message),)
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BadRequest, match="not found"):
        validate_data(tmp_path / "missing.jsonl")
    with pytest.raises(BadRequest, match="not a file"):
        validate_data(tmp_path)
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}] * 5)
    monkeypatch.setattr(tune_data, "MAX_ROWS", 4)
    with pytest.raises(BadRequest, match="more than 4 rows"):
        read_rows(path)
    monkeypatch.setattr(tune_data, "MAX_FILE_BYTES", 10)
    with pytest.raises(BadRequest, match="at most 1 GiB"):
        read_rows(path)


def test_problems_past_the_cap_are_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tune_data, "MAX_PROBLEMS", 3)
    path = write_jsonl(tmp_path / "d.jsonl", ["bad"] * 7 + [{"text": "x"}])
    rows, problems = read_rows(path)
    assert len(rows) == 1 and [p.line for p in problems] == [1, 2, 3, 0]
    assert problems[-1].message.startswith("and 4 more refused rows")
