"""Two evaluation runs side by side: overall and per-subject accuracy, then item by item (both right, only A,
only B, both wrong) with McNemar's test and what it says in one sentence."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label, Static

from engines.evaluate.types import EvalReport, McNemar, SubjectScore
from tui.widgets.eval_tables import METHOD_SHORT, percent

SIGNIFICANCE = 0.05


def p_text(p_value: float) -> str:
    """`0.003`, `< 0.001`, `1.000`."""
    return "< 0.001" if p_value < 0.001 else f"{p_value:.3f}"


def verdict(test: McNemar) -> str:
    """One sentence: which run is better on the items both answered, or that the difference is not significant."""
    p = p_text(test.p_value)
    equals = "p" + (" " if p.startswith("<") else " = ")
    if test.items == 0:
        return "The runs share no item: nothing to compare."
    if test.p_value < SIGNIFICANCE and test.only_a != test.only_b:
        better, worse = ("B", "A") if test.only_b > test.only_a else ("A", "B")
        return f"{better} is better than {worse} on these items ({equals}{p})."
    return f"No significant difference on these items ({equals}{p})."


def counts_line(test: McNemar) -> str:
    """The four counts of the paired table."""
    return (
        f"{test.items} items both answered:\n"
        f"both right {test.both_right} · only A {test.only_a} · only B {test.only_b} · both wrong {test.both_wrong}"
    )


def run_line(tag: str, report: EvalReport) -> str:
    """`A  #1 gemma-3-270m · loglik · 5-shot · mmlu`."""
    method = METHOD_SHORT.get(report.method, str(report.method))
    return f"{tag}  #{report.id} {report.model} · {method} · {report.shots}-shot · {report.data_name}"


def _accuracy(score: SubjectScore | None) -> str:
    return percent(score.accuracy) if score is not None and score.items else "–"


def _delta(a: SubjectScore | None, b: SubjectScore | None) -> str:
    if a is None or b is None or not a.items or not b.items:
        return ""
    return f"{(b.accuracy - a.accuracy) * 100:+.1f}"


class EvalCompareModal(ModalScreen[None]):
    """Esc closes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]
    DEFAULT_CSS = """
    EvalCompareModal #eval-compare-table { height: auto; max-height: 10; }
    EvalCompareModal .eval-compare-line { width: 100%; height: auto; }
    """

    def __init__(self, a: EvalReport, b: EvalReport, test: McNemar) -> None:
        super().__init__()
        self.a, self.b, self.test = a, b, test

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="eval-compare"):
            yield Label(f"Compare #{self.a.id} (A) and #{self.b.id} (B)", classes="dialog-title")
            yield Static(run_line("A", self.a), classes="eval-compare-line", markup=False)
            yield Static(run_line("B", self.b), classes="eval-compare-line", markup=False)
            yield DataTable(id="eval-compare-table", cursor_type="row", zebra_stripes=True)
            yield Static(counts_line(self.test), classes="eval-compare-line", id="eval-compare-counts", markup=False)
            yield Static(verdict(self.test), classes="eval-compare-line", id="eval-compare-verdict", markup=False)
            yield Label("Esc closes", classes="dialog-hint")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Subject", "A", "B", "B − A")
        a_by = {s.subject: s for s in self.a.subjects}
        b_by = {s.subject: s for s in self.b.subjects}
        for subject in sorted(a_by.keys() | b_by.keys()):
            a, b = a_by.get(subject), b_by.get(subject)
            table.add_row(subject, _accuracy(a), _accuracy(b), _delta(a, b), key=subject)
        overall = [_accuracy(self.a.overall), _accuracy(self.b.overall), _delta(self.a.overall, self.b.overall)]
        table.add_row(*(Text(c, style="bold") for c in ["overall", *overall]), key="overall")
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
