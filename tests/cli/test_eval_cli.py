"""`llm-tui eval` on the fake engine: the table, JSON lines, saving, export, --compare, and bad data."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from cli.main import main
from engines.config.load import load_config
from engines.store.sessions import Store


@pytest.fixture
def model_file(isolated_dirs: Path) -> Path:
    path = isolated_dirs / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return path


@pytest.fixture
def marked(isolated_dirs: Path) -> Path:
    """12 items over two subjects, the even ones marked right (the fake then answers them), so 50 % exactly."""
    rows = []
    for i in range(12):
        answer = "ABCD"[i % 4]
        shown = answer if i % 2 == 0 else "ABCD"[(i + 1) % 4]
        subject = "astro" if i < 6 else "law"
        rows.append(
            {"question": f"Q{i}? <<{shown}>>", "choices": ["w", "x", "y", "z"], "answer": answer, "subject": subject}
        )
    rows.append(
        {"question": "Shot?", "choices": ["w", "x", "y", "z"], "answer": "D", "subject": "astro", "split": "dev"}
    )
    path = isolated_dirs / "marked.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["eval", *args, "--engine", "fake"])
    out, err = capsys.readouterr()
    return status, out, err


def test_table_with_ci_overall_speed_method_and_saved_id(
    model_file: Path, marked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, str(model_file), str(marked), "--shots", "1")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["subject", "items", "correct", "accuracy", "95", "%", "CI"]
    assert lines[1].split() == ["astro", "6", "3", "50.0%", "18.8-81.2", "%"]  # Wilson 3/6: 0.1876-0.8124
    assert lines[3].split()[:4] == ["overall", "12", "6", "50.0%"]
    assert "loglik, 1 shot(s): 12 items" in out and "items/s" in out
    assert "saved as run 1" in out
    with Store(load_config(None, env={}).db_path) as store:
        saved = store.evals.get(1)
    assert saved.overall.correct == 6 and len(saved.items) == 12 and saved.model == "tiny"


def test_json_lines_progress_then_report(model_file: Path, marked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, str(model_file), str(marked), "--json", "--limit", "2", "--no-save")
    assert status == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert {e["event"] for e in events[:-1]} == {"progress"} and events[-2]["done"] == 4 == events[-2]["total"]
    final = events[-1]
    assert final["event"] == "report" and final["id"] is None and "items" not in final
    assert final["overall"]["items"] == 4 and final["overall"]["correct"] == 2 and final["limit"] == 2


def test_compare_with_a_saved_run_and_export(
    model_file: Path, marked: Path, capsys: pytest.CaptureFixture[str], isolated_dirs: Path
) -> None:
    assert run(capsys, str(model_file), str(marked))[0] == 0
    export = isolated_dirs / "out" / "report.md"
    status, out, err = run(
        capsys, str(model_file), str(marked), "--method", "generate", "--compare", "1", "--export", str(export)
    )
    assert status == 0
    assert "generate, 5 shot(s)" in out and "saved as run 2" in out
    assert "McNemar (exact) on 12 items both runs answered: both right 6, both wrong 6" in out and "p = 1" in out
    assert export.read_text().startswith("# Evaluation of tiny on marked") and str(export) in err


def test_bad_rows_listed_with_lines_then_the_rest_runs(
    model_file: Path, isolated_dirs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = isolated_dirs / "s_test.csv"
    data.write_text("Good? <<A>>,a,b,c,d,A\n" + "bad,row\n" * 25)
    status, out, err = run(capsys, str(model_file), str(data), "--no-save")
    assert status == 0 and "overall" in out
    assert "25 row(s) of s_test refused:" in err
    assert "  s_test.csv:2: expected 6 columns (question, A, B, C, D, answer), got 2" in err
    assert "s_test.csv:21:" in err and "s_test.csv:22:" not in err and "... and 5 more" in err


def test_nothing_usable_exits_2(model_file: Path, isolated_dirs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = isolated_dirs / "s_test.csv"
    data.write_text("bad,row\n")
    status, out, err = run(capsys, str(model_file), str(data))
    assert status == 2 and out == ""
    assert "no usable test items" in err and "s_test.csv:1: expected 6 columns" in err


def test_bad_export_suffix_and_unknown_compare_run(
    model_file: Path, marked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, str(model_file), str(marked), "--export", "r.txt")
    assert status == 1 and "give a path ending in .md, .json, .csv" in err
    status, _, err = run(capsys, str(model_file), str(marked), "--compare", "99")
    assert status == 1 and "saved evaluation run 99 does not exist" in err
    status, _, err = run(capsys, str(model_file), str(marked), "--subject", "astro", "--subject", "bio")
    assert status == 1 and "no subject bio in marked; it has astro, law" in err
    status, _, err = run(capsys, str(model_file), str(marked), "--limit", "0")
    assert status == 1 and "limit must be at least 1" in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(
    model_file: Path, marked: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    status, out, _ = run(capsys, str(model_file), str(marked), "--no-save")
    assert status == 0 and "overall" in out
    drawn = screen.getvalue()
    assert "\reval: [####################] 12/12  accuracy 50.0 %" in drawn and "items/s  law" in drawn
    assert drawn.endswith("\n")
