"""The Evaluate screen's two tables as text: the saved runs (one row each) and one run's subjects (with the overall
row). Pure functions over the library's types, so the screen, the compare view and the tests read the same cells."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from rich.text import Text

from engines.evaluate.types import EvalReport, Method, SubjectScore

RUN_COLUMNS = ("#", "When", "Model", "Data", "Method", "Shots", "Items", "Accuracy", "95 % CI", "Items/s")
RUN_DROPS = ("When", "Items/s", "Method", "Shots", "Data")
"""Given up in this order when the table is too narrow (the model is shortened first)."""
SUBJECT_COLUMNS = ("Subject", "Items", "Correct", "Accuracy", "95 % CI")
METHOD_NAMES = {Method.LOGLIK: "log-likelihood", Method.GENERATE: "generated letter"}
METHOD_SHORT = {Method.LOGLIK: "loglik", Method.GENERATE: "generate"}


def when_text(created_at: float | None) -> str:
    """`05-01 12:00` in local time; "unsaved" before the store gave it a time."""
    return datetime.fromtimestamp(created_at).strftime("%m-%d %H:%M") if created_at else "unsaved"


def percent(value: float) -> str:
    """0.75 → `75.0 %`."""
    return f"{value * 100:.1f} %"


def interval(score: SubjectScore) -> str:
    """The 95 % Wilson interval in percent: `40.9–92.9`."""
    return f"{score.ci_low * 100:.1f}–{score.ci_high * 100:.1f}"


def run_cells(
    report: EvalReport, *, marked: bool = False, when: Callable[[float | None], str] = when_text
) -> list[str]:
    """One saved run's cells, in RUN_COLUMNS order; a marked run (for compare) has `●` before its number, a run
    that did not finish says so after its item count."""
    number = f"{'●' if marked else ' '}{report.id if report.id is not None else '–'}"
    items = str(report.overall.items)
    if report.state != "finished":
        items += f" ({report.state})"
    return [
        number,
        when(report.created_at),
        report.model,
        report.data_name,
        METHOD_SHORT.get(report.method, str(report.method)),
        str(report.shots),
        items,
        percent(report.overall.accuracy) if report.overall.items else "–",
        interval(report.overall) if report.overall.items else "–",
        f"{report.items_per_s:.1f}",
    ]


def run_columns(rows: Sequence[Sequence[str]], width: int) -> list[str]:
    """RUN_COLUMNS less the RUN_DROPS (in order) that must go for every model name to show whole in `width` cells
    (each column takes its widest cell and one cell of padding each side); all of them when nothing is known."""
    if width <= 0:
        return list(RUN_COLUMNS)
    natural = {t: max([len(t), *(len(r[i]) for r in rows)]) for i, t in enumerate(RUN_COLUMNS)}
    shown = list(RUN_COLUMNS)
    for drop in RUN_DROPS:
        if sum(natural[t] + 2 for t in shown) + 2 <= width:
            break
        shown.remove(drop)
    return shown


def subject_cells(score: SubjectScore, *, total: int | None = None) -> list[str | Text]:
    """One subject's cells, in SUBJECT_COLUMNS order; the overall row in bold. `total` (while a run is under way)
    shows the items done of those to do."""
    items = f"{score.items}/{total}" if total is not None and total != score.items else str(score.items)
    cells: list[str | Text] = [
        score.subject,
        items,
        str(score.correct),
        percent(score.accuracy) if score.items else "–",
        interval(score) if score.items else "–",
    ]
    if score.subject == "overall":
        return [Text(str(c), style="bold") for c in cells]
    return cells


def run_summary(report: EvalReport) -> str:
    """Two lines under the runs: model, method, shots and limit; then the data and its hash, the state and notes."""
    limit = "all items" if report.limit is None else f"at most {report.limit} a subject"
    name = f"#{report.id} {report.model} ({report.engine})" if report.id is not None else report.model
    method = METHOD_NAMES.get(report.method, str(report.method))
    first = f"{name} · {method} · {report.shots}-shot · {limit}"
    second = [f"data {report.data_name} · sha256 {report.data_sha256[:12] or '–'}"]
    if report.state != "finished":
        second.append(report.state + (f": {report.error}" if report.error else ""))
    second.extend(note.split(":")[0] for note in report.notes)  # the whole notes are in the exports
    return f"{first}\n{' · '.join(second)}"


def done_by_subject(order: Sequence[tuple[str, int]], done: int) -> dict[str, int]:
    """Items done in each subject when `done` items of a run asked in `order` ((subject, items) as the runner
    takes them, one subject after another) are done."""
    out: dict[str, int] = {}
    for subject, items in order:
        out[subject] = min(items, max(0, done))
        done -= items
    return out


def share_correct(
    correct: dict[str, int], done: dict[str, int], order: Sequence[tuple[str, int]], gained: int
) -> dict[str, int]:
    """`correct` with `gained` more right answers, given to the latest subjects with items done and not yet
    counted right (a progress report can span the end of one subject and the start of the next)."""
    out = dict(correct)
    for subject, _ in reversed(order):
        if gained <= 0:
            break
        room = done.get(subject, 0) - out.get(subject, 0)
        take = min(room, gained)
        if take > 0:
            out[subject] = out.get(subject, 0) + take
            gained -= take
    return out


def running_scores(
    order: Sequence[tuple[str, int]],
    done: dict[str, int],
    correct: dict[str, int],
    wilson: Callable[[int, int], tuple[float, float]],
) -> list[tuple[SubjectScore, int]]:
    """(score so far, items to do) for every subject of the run, in the run's order, then the overall row."""
    rows = [(score_of(s, done.get(s, 0), correct.get(s, 0), wilson), items) for s, items in order]
    overall = score_of("overall", sum(done.values()), sum(correct.values()), wilson)
    rows.append((overall, sum(items for _, items in order)))
    return rows


def score_of(subject: str, items: int, correct: int, wilson: Callable[[int, int], tuple[float, float]]) -> SubjectScore:
    """A SubjectScore from counts (its interval from `wilson`)."""
    low, high = wilson(correct, items) if items else (0.0, 0.0)
    return SubjectScore(subject, items, correct, correct / items if items else 0.0, low, high)


def subject_rows(report: EvalReport) -> list[tuple[str, Sequence[str | Text]]]:
    """(key, cells) for a finished run's subjects and its overall row."""
    rows: list[tuple[str, Sequence[str | Text]]] = [(f"s:{s.subject}", subject_cells(s)) for s in report.subjects]
    rows.append(("overall", subject_cells(report.overall)))
    return rows
