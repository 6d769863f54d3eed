"""Reading evaluation data: every layout, each kind of bad row (with its file and line), the bounds, the hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from engines.errors import BadRequest
from engines.evaluate import data as data_module
from engines.evaluate.data import load_eval_set


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def mmlu(root: Path) -> Path:
    write(root / "dev" / "astronomy_dev.csv", "What is the Sun?,A star,A planet,A moon,A comet,A\n" * 2)
    write(
        root / "test" / "astronomy_test.csv",
        'How many planets?,7,8,9,"ten,\nwith a line break",B\nRed planet?,Venus,Earth,Mars,Jupiter,c\n',
    )
    write(root / "test" / "high_school_physics_test.csv", "Unit of force?,Newton,Joule,Watt,Pascal,A\n")
    write(root / "val" / "astronomy_val.csv", "Ignored?,a,b,c,d,A\n")
    return root


def test_mmlu_layout_reads_subjects_splits_and_multiline_fields(tmp_path: Path) -> None:
    data = load_eval_set(mmlu(tmp_path / "mmlu"))
    assert data.name == "mmlu"
    assert data.subjects() == ["astronomy", "high_school_physics"]
    first, second, physics = data.test
    assert first.choices == ("7", "8", "9", "ten,\nwith a line break") and first.answer == "B"
    assert first.source == "test/astronomy_test.csv:1" and first.index == 0
    assert second.answer == "C" and second.index == 1 and second.source == "test/astronomy_test.csv:3"
    assert physics.subject == "high_school_physics" and physics.question == "Unit of force?"
    assert [i.question for i in data.dev["astronomy"]] == ["What is the Sun?"] * 2
    assert data.problems == ()


def test_mmlu_archive_root_with_data_folder(tmp_path: Path) -> None:
    mmlu(tmp_path / "archive" / "data")
    assert len(load_eval_set(tmp_path / "archive").test) == 3


def test_sha256_is_over_the_files_read_and_changes_with_them(tmp_path: Path) -> None:
    root = mmlu(tmp_path / "m")
    first = load_eval_set(root).sha256
    assert first == load_eval_set(root).sha256 and len(first) == 64
    write(root / "val" / "astronomy_val.csv", "Changed?,a,b,c,d,A\n")
    assert load_eval_set(root).sha256 != first


def test_ceval_layout_uses_val_when_test_has_no_answers(tmp_path: Path) -> None:
    root = tmp_path / "ceval"
    header = "id,question,A,B,C,D,answer,explanation\n"
    write(root / "dev" / "computer_network_dev.csv", header + "0,Shot?,a,b,c,d,D,because\n")
    write(
        root / "val" / "computer_network_val.csv", header + "0,TCP is?,stream,datagram,frame,bit,A,\n1,Q2?,a,b,c,d,B,\n"
    )
    write(root / "test" / "computer_network_test.csv", "id,question,A,B,C,D\n0,Unknown?,a,b,c,d\n")
    data = load_eval_set(root)
    assert [(i.question, i.answer, i.source) for i in data.test] == [
        ("TCP is?", "A", "val/computer_network_val.csv:2"),
        ("Q2?", "B", "val/computer_network_val.csv:3"),
    ]
    assert data.dev["computer_network"][0].answer == "D"
    assert data.problems == ()


def test_single_csv_subject_from_file_name_with_or_without_header(tmp_path: Path) -> None:
    plain = load_eval_set(write(tmp_path / "world_history_test.csv", "Q?,a,b,c,d,D\n"))
    assert plain.test[0].subject == "world_history" and plain.name == "world_history_test"
    headed = load_eval_set(write(tmp_path / "law.csv", "question,A,B,C,answer\nQ?,x,y,z,C\n"))
    assert headed.test[0].choices == ("x", "y", "z") and headed.test[0].answer == "C"


def test_jsonl_choices_as_list_or_keys_answers_as_letter_or_index(tmp_path: Path) -> None:
    rows = [
        {"question": "2+2?", "choices": ["3", "4"], "answer": 1, "subject": "math"},
        {"question": "Capital of France?", "A": "Paris", "B": "Rome", "C": "Oslo", "answer": "a"},
        {"question": "Shot?", "choices": ["x", "y"], "answer": "B", "subject": "math", "split": "dev"},
    ]
    path = write(tmp_path / "quiz.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_eval_set(path, name="my quiz")
    assert data.name == "my quiz"
    by_subject = {i.subject: i for i in data.test}
    assert by_subject["math"].answer == "B" and by_subject["math"].choices == ("3", "4")
    assert by_subject["quiz"].answer == "A" and by_subject["quiz"].source == "quiz.jsonl:2"
    assert data.dev["math"][0].question == "Shot?"


def test_bad_rows_become_problems_with_lines_and_the_rest_is_used(tmp_path: Path) -> None:
    long = "x" * (data_module.MAX_FIELD_CHARS + 1)
    text = (
        "Good?,a,b,c,d,A\n"  # 1
        "Too few,a,b,c\n"  # 2
        ",a,b,c,d,A\n"  # 3: empty question
        "Empty choice?,a,,c,d,A\n"  # 4
        "Bad answer?,a,b,c,d,E\n"  # 5
        f"{long},a,b,c,d,A\n"  # 6
        "Also good?,a,b,c,d,D\n"  # 7
    )
    data = load_eval_set(write(tmp_path / "s_test.csv", text))
    assert [i.question for i in data.test] == ["Good?", "Also good?"]
    assert [i.index for i in data.test] == [0, 1]
    problems = {p.source: p.message for p in data.problems}
    assert set(problems) == {f"s_test.csv:{n}" for n in (2, 3, 4, 5, 6)}
    assert "expected 6 columns" in problems["s_test.csv:2"] and "got 4" in problems["s_test.csv:2"]
    assert problems["s_test.csv:3"] == "empty question"
    assert problems["s_test.csv:4"] == "empty choice B"
    assert "'E' is not one of A, B, C, D" in problems["s_test.csv:5"]
    assert "over 16384" in problems["s_test.csv:6"]


def test_bad_jsonl_lines(tmp_path: Path) -> None:
    lines = [
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"question": "Q?", "choices": ["a", "b"], "answer": 5}),
        json.dumps({"question": "Q?", "choices": ["a", "b"], "answer": "A", "split": "train"}),
        json.dumps({"question": "Ok?", "choices": ["a", "b"], "answer": "A"}),
        json.dumps({"question": "Big?", "choices": ["a", "b" * (data_module.MAX_LINE_CHARS + 1)], "answer": "A"}),
    ]
    data = load_eval_set(write(tmp_path / "q.jsonl", "\n".join(lines)))
    assert len(data.test) == 1 and data.test[0].source == "q.jsonl:5"
    messages = [p.message for p in data.problems]
    assert messages[0].startswith("not JSON") and messages[1] == "each line must be a JSON object"
    assert "answer index 5" in messages[2] and "split must be" in messages[3]
    assert data.problems[4].source == "q.jsonl:6" and "over 262144" in messages[4]


def test_nothing_usable_says_what_was_looked_for_and_lists_problems(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match=r"no usable test items; looked for dev/, val/ and test/"):
        load_eval_set(tmp_path)
    with pytest.raises(BadRequest, match=r"(?s)1 problem.*bad.csv:1: expected 6 columns"):
        load_eval_set(write(tmp_path / "bad.csv", "only,three,cols\n"))
    with pytest.raises(BadRequest, match="no such file"):
        load_eval_set(tmp_path / "missing")
    with pytest.raises(BadRequest, match=r"\.csv file or a \.jsonl"):
        load_eval_set(write(tmp_path / "x.txt", "hi"))


def test_bounds_file_size_rows_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_module, "MAX_FILE_BYTES", 40)
    root = tmp_path / "m"
    write(root / "test" / "a_test.csv", "Q?,a,b,c,d,A\n")
    write(root / "test" / "b_test.csv", "Q?,a,b,c,d,A\n" * 5)  # 65 bytes
    data = load_eval_set(root)
    assert data.subjects() == ["a"]
    assert data.problems[0].source == "test/b_test.csv" and "over the 40 limit" in data.problems[0].message

    monkeypatch.setattr(data_module, "MAX_FILE_BYTES", 1 << 20)
    monkeypatch.setattr(data_module, "MAX_ROWS", 3)
    data = load_eval_set(root)
    assert len(data.test) == 3
    assert data.problems[-1].source == "test/b_test.csv:3" and "more than 3 rows" in data.problems[-1].message

    monkeypatch.setattr(data_module, "MAX_ROWS", 100)
    monkeypatch.setattr(data_module, "MAX_FILES", 1)
    data = load_eval_set(root)
    assert data.subjects() == ["a"] and "only the first 1 are read" in data.problems[0].message


def test_not_utf8_file_is_a_problem(tmp_path: Path) -> None:
    root = tmp_path / "m"
    write(root / "test" / "a_test.csv", "Q?,a,b,c,d,A\n")
    (root / "test" / "b_test.csv").write_bytes(b"\xff\xfe,a,b,c,d,A\n")
    data = load_eval_set(root)
    assert data.problems[0].source == "test/b_test.csv" and "not UTF-8" in data.problems[0].message


def test_hash_matches_an_independent_computation(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "Q?,a,b,c,d,A\n")
    raw = path.read_bytes()
    expected = hashlib.sha256(b"s.csv\0" + len(raw).to_bytes(8, "big") + raw).hexdigest()
    assert load_eval_set(path).sha256 == expected
