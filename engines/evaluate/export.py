"""An evaluation report as Markdown (for people), JSON (everything, items included) or CSV (one row per item),
and the comparison of two runs; `write_export` picks the format from the file's suffix and writes atomically."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from engines.atomic import atomic_write
from engines.errors import BadRequest
from engines.evaluate.stats import unmatched
from engines.evaluate.types import EvalReport, ItemResult, McNemar, Method, SubjectScore

CSV_COLUMNS = ("subject", "index", "answer", "predicted", "correct", "scores")
FORMATS = (".md", ".json", ".csv")


def percent(x: float) -> str:
    return f"{100 * x:.1f}"


def score_row(s: SubjectScore) -> str:
    interval = f"{percent(s.ci_low)}-{percent(s.ci_high)} %"
    return f"| {s.subject} | {s.items} | {s.correct} | {percent(s.accuracy)} % | {interval} |"


def to_markdown(report: EvalReport) -> str:
    """A heading with the run's settings, then a table of the subjects and the overall score with 95 % CIs."""
    limit = "all" if report.limit is None else str(report.limit)
    lines = [
        f"# Evaluation of {report.model} on {report.data_name}",
        "",
        f"- Model: {report.model} ({report.engine})",
        f"- Data: {report.data_name}, sha256 {report.data_sha256}",
        f"- Method: {report.method.value}, {report.shots} shot(s), limit {limit} per subject",
        f"- Items: {len(report.items)} in {report.elapsed_s:.1f} s, {report.items_per_s:.2f} items/s",
        f"- State: {report.state}" + (f" ({report.error})" if report.error else ""),
    ]
    lines += [f"- Note: {note}" for note in report.notes]
    lines += [
        "",
        "| Subject | Items | Correct | Accuracy | 95 % CI |",
        "|---|---:|---:|---:|---:|",
        *(score_row(s) for s in report.subjects),
        score_row(report.overall).replace(f"| {report.overall.subject} |", "| **overall** |", 1),
        "",
        "## Prompt template",
        "",
        "```",
        report.prompt_template,
        "```",
        "",
    ]
    return "\n".join(lines)


def report_to_dict(report: EvalReport, *, items: bool = True) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    data["method"] = report.method.value
    if not items:
        data.pop("items")
    return data


def to_json(report: EvalReport) -> str:
    """Every field, the items included."""
    return json.dumps(report_to_dict(report), indent=2, ensure_ascii=False) + "\n"


def _score_from(data: dict[str, Any]) -> SubjectScore:
    return SubjectScore(
        str(data["subject"]),
        int(data["items"]),
        int(data["correct"]),
        float(data["accuracy"]),
        float(data["ci_low"]),
        float(data["ci_high"]),
    )


def item_from_dict(data: dict[str, Any]) -> ItemResult:
    scores = data.get("scores")
    return ItemResult(
        str(data["subject"]),
        int(data["index"]),
        str(data["answer"]),
        None if data.get("predicted") is None else str(data["predicted"]),
        None if scores is None else tuple(float(x) for x in scores),
    )


def report_from_dict(data: dict[str, Any]) -> EvalReport:
    """The inverse of `report_to_dict`; BadRequest when a field is missing or of the wrong kind."""
    try:
        return EvalReport(
            model=str(data["model"]),
            engine=str(data["engine"]),
            data_name=str(data["data_name"]),
            data_sha256=str(data["data_sha256"]),
            method=Method(data["method"]),
            shots=int(data["shots"]),
            limit=None if data.get("limit") is None else int(data["limit"]),
            prompt_template=str(data["prompt_template"]),
            subjects=tuple(_score_from(s) for s in data["subjects"]),
            overall=_score_from(data["overall"]),
            items=tuple(item_from_dict(i) for i in data.get("items", ())),
            items_per_s=float(data["items_per_s"]),
            elapsed_s=float(data["elapsed_s"]),
            state=str(data.get("state", "finished")),
            error=None if data.get("error") is None else str(data["error"]),
            id=None if data.get("id") is None else int(data["id"]),
            created_at=None if data.get("created_at") is None else float(data["created_at"]),
            notes=tuple(str(n) for n in data.get("notes", ())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"not an evaluation report: {exc!r}") from exc


def from_json(text: str) -> EvalReport:
    """A report written by `to_json`."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"not an evaluation report: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("not an evaluation report: a JSON object was expected")
    return report_from_dict(data)


def to_csv(report: EvalReport) -> str:
    """One row per item: subject, index, answer, predicted, correct (0/1), scores (space-separated)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for item in report.items:
        scores = "" if item.scores is None else " ".join(repr(s) for s in item.scores)
        writer.writerow([item.subject, item.index, item.answer, item.predicted or "", int(item.correct), scores])
    return out.getvalue()


def compare_markdown(a: EvalReport, b: EvalReport, test: McNemar) -> str:
    """Two runs side by side (overall and per subject) with McNemar's test on the items both answered."""
    only_in_a, only_in_b = unmatched(a, b, test)

    def name(r: EvalReport, label: str) -> str:
        return f"{label}{f' (run {r.id})' if r.id is not None else ''}: {r.model}, {r.method.value}, {r.shots} shot(s)"

    lines = [
        f"# {a.model} vs {b.model} on {a.data_name}",
        "",
        f"- {name(a, 'A')}",
        f"- {name(b, 'B')}",
    ]
    if a.data_sha256 != b.data_sha256:
        lines.append("- Warning: the runs read different data (sha256 differs)")
    b_subjects = {s.subject: s for s in b.subjects}
    lines += ["", "| Subject | A | B |", "|---|---:|---:|"]
    for s in a.subjects:
        other = b_subjects.get(s.subject)
        lines.append(
            f"| {s.subject} | {percent(s.accuracy)} % | {'-' if other is None else percent(other.accuracy) + ' %'} |"
        )
    lines.append(f"| **overall** | {percent(a.overall.accuracy)} % | {percent(b.overall.accuracy)} % |")
    lines += [
        "",
        f"McNemar (exact) on {test.items} items both runs answered: both right {test.both_right}, both wrong"
        f" {test.both_wrong}, only A right {test.only_a}, only B right {test.only_b}; p = {test.p_value:.4g}"
        f" ({'significant' if test.p_value < 0.05 else 'not significant'} at 0.05).",
        f"Unmatched items left out: {only_in_a} of A, {only_in_b} of B.",
        "",
    ]
    return "\n".join(lines)


def render(report: EvalReport, suffix: str) -> str:
    """The report in the format of a file suffix (.md, .json, .csv); BadRequest for another."""
    suffix = suffix.lower()
    if suffix == ".md":
        return to_markdown(report)
    if suffix == ".json":
        return to_json(report)
    if suffix == ".csv":
        return to_csv(report)
    raise BadRequest(f"cannot export to {suffix or 'a file without a suffix'}: use {', '.join(FORMATS)}")


def write_export(report: EvalReport, path: Path) -> Path:
    """Write the report to `path` (format from its suffix), atomically; returns the path written."""
    path = Path(path).expanduser()
    text = render(report, path.suffix)
    atomic_write(path, text.encode(), private=False)
    return path
