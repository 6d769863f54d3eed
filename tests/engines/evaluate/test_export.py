"""Reports as Markdown, JSON and CSV (round trips), the comparison, the atomic export."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from engines.errors import BadRequest
from engines.evaluate.export import compare_markdown, from_json, to_csv, to_json, to_markdown, write_export
from engines.evaluate.prompts import PROMPT_TEMPLATE
from engines.evaluate.stats import mcnemar, score_subjects
from engines.evaluate.types import EvalReport, ItemResult, Method


def make_report(items: list[ItemResult] | None = None, **changes: object) -> EvalReport:
    items = items or [
        ItemResult("astronomy", 0, "B", "B", (-2.5, -0.25, -3.0, -4.0)),
        ItemResult("astronomy", 1, "C", "A", (-0.5, -1.0, -2.0, -3.0)),
        ItemResult("law, civil", 0, "A", None),
    ]
    subjects, overall = score_subjects(items)
    fields: dict[str, object] = dict(
        model="gemma-3-270m",
        engine="llama.cpp",
        data_name="mmlu",
        data_sha256="ab" * 32,
        method=Method.LOGLIK,
        shots=5,
        limit=10,
        prompt_template=PROMPT_TEMPLATE,
        subjects=subjects,
        overall=overall,
        items=tuple(items),
        items_per_s=12.5,
        elapsed_s=0.24,
        notes=("1 item(s) ran with fewer shots",),
    )
    fields.update(changes)
    return EvalReport(**fields)  # type: ignore[arg-type]


def test_json_round_trip_keeps_everything() -> None:
    report = make_report(id=3, created_at=1700000000.5, state="cancelled", error=None)
    assert from_json(to_json(report)) == report
    data = json.loads(to_json(report))
    assert data["method"] == "loglik" and len(data["items"]) == 3 and data["items"][0]["scores"][1] == -0.25


def test_from_json_refuses_other_text() -> None:
    with pytest.raises(BadRequest, match="not an evaluation report"):
        from_json('{"model": "m"}')
    with pytest.raises(BadRequest, match="not an evaluation report"):
        from_json("[1]")


def test_csv_one_row_per_item_reads_back() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(make_report()))))
    assert [r["subject"] for r in rows] == ["astronomy", "astronomy", "law, civil"]
    assert [r["correct"] for r in rows] == ["1", "0", "0"]
    assert rows[2]["predicted"] == "" and rows[2]["scores"] == ""
    assert [float(x) for x in rows[0]["scores"].split()] == [-2.5, -0.25, -3.0, -4.0]


def test_markdown_has_settings_and_a_row_per_subject_with_ci() -> None:
    text = to_markdown(make_report())
    assert "# Evaluation of gemma-3-270m on mmlu" in text
    assert "- Method: loglik, 5 shot(s), limit 10 per subject" in text
    assert f"sha256 {'ab' * 32}" in text and "12.50 items/s" in text
    assert "| astronomy | 2 | 1 | 50.0 % | 9.5-90.5 % |" in text  # Wilson 1/2: 0.0945-0.9055
    assert "| **overall** | 3 | 1 | 33.3 % |" in text
    assert "The following are multiple choice questions" in text and "- Note: 1 item(s)" in text


def test_compare_markdown_names_counts_and_p_value() -> None:
    a = make_report(id=1)
    b_items = [ItemResult("astronomy", 0, "B", "A"), ItemResult("astronomy", 1, "C", "C")]
    b = make_report(b_items, id=2, model="other")
    text = compare_markdown(a, b, mcnemar(a, b))
    assert "A (run 1): gemma-3-270m" in text and "B (run 2): other" in text
    assert "on 2 items both runs answered" in text and "only A right 1, only B right 1; p = 1" in text
    assert "Unmatched items left out: 1 of A, 0 of B." in text


def test_write_export_by_suffix_atomic(tmp_path: Path) -> None:
    report = make_report()
    for suffix in (".md", ".json", ".csv"):
        path = write_export(report, tmp_path / "out" / f"report{suffix}")
        assert path.read_text().startswith({".md": "# Evaluation", ".json": "{", ".csv": "subject,"}[suffix])
    assert from_json((tmp_path / "out" / "report.json").read_text()) == report
    with pytest.raises(BadRequest, match=r"cannot export to \.txt"):
        write_export(report, tmp_path / "report.txt")
    assert not (tmp_path / "report.txt").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.csv", "report.json", "report.md"]
