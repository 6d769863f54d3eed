"""What crosses the evaluation's boundaries: items read from a data set, the options of a run, its progress,
and the report it ends with (saved in the store, exported, compared)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

LETTERS = "ABCDEFGHIJ"
"""Choice letters, in order: MMLU and C-Eval have four (A-D); a JSONL item may have two to ten."""


class Method(enum.StrEnum):
    """How a run picked each answer."""

    LOGLIK = "loglik"
    """The choice letter with the highest log-probability after the prompt (`Engine.score_choices`)."""
    GENERATE = "generate"
    """One letter generated greedily, constrained to the choices (a JSON-schema enum) where the engine can."""


@dataclass(frozen=True, slots=True)
class EvalItem:
    """One multiple-choice question."""

    subject: str
    index: int
    """Its position among the subject's test (or dev) rows, from 0; with the subject, the item's identity."""
    question: str
    choices: tuple[str, ...]
    answer: str
    """The right choice's letter."""
    source: str
    """Where it was read: "abstract_algebra_test.csv:12" (file name and 1-based line)."""


@dataclass(frozen=True, slots=True)
class DataProblem:
    """A row that was refused, and why; the rest of the file is still used."""

    source: str
    """File name and 1-based line, like EvalItem.source."""
    message: str


@dataclass(frozen=True, slots=True)
class EvalSet:
    """A multiple-choice data set: test items by subject, optional dev items for k-shot prompts."""

    name: str
    test: tuple[EvalItem, ...]
    dev: dict[str, tuple[EvalItem, ...]] = field(default_factory=dict)
    problems: tuple[DataProblem, ...] = ()
    sha256: str = ""
    """Of the files read, in name order: two runs on the same data say the same."""

    def subjects(self) -> list[str]:
        """The test items' subjects, sorted."""
        return sorted({item.subject for item in self.test})


@dataclass(frozen=True, slots=True)
class EvalOptions:
    """How to run an evaluation."""

    shots: int = 5
    """Dev items (of the same subject) shown before each question, with their answers."""
    limit: int | None = None
    """At most this many test items per subject (the first ones), None for all."""
    method: Method | None = None
    """None picks log-likelihood where the engine can score, else generation."""
    subjects: tuple[str, ...] = ()
    """Only these subjects; empty for every one."""


@dataclass(frozen=True, slots=True)
class EvalProgress:
    """Posted as items finish (at most a few times a second)."""

    done: int
    total: int
    correct: int
    items_per_s: float
    subject: str
    """The subject of the last item done."""


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What the model answered to one item."""

    subject: str
    index: int
    answer: str
    predicted: str | None
    """The letter it chose; None when a generated answer was no letter of the choices."""
    scores: tuple[float, ...] | None = None
    """Log-probabilities of each choice letter (log-likelihood runs only)."""

    @property
    def correct(self) -> bool:
        return self.predicted == self.answer


@dataclass(frozen=True, slots=True)
class SubjectScore:
    """Accuracy over one subject (or over all, with subject "overall") with its 95 % Wilson interval."""

    subject: str
    items: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True, slots=True)
class EvalReport:
    """A finished (or cancelled) run: enough to reproduce its prompts and to compare it item by item."""

    model: str
    engine: str
    data_name: str
    data_sha256: str
    method: Method
    shots: int
    limit: int | None
    prompt_template: str
    """The prompt's wording with placeholders, as the run built every prompt (see engines.evaluate.prompts)."""
    subjects: tuple[SubjectScore, ...]
    overall: SubjectScore
    items: tuple[ItemResult, ...]
    items_per_s: float
    elapsed_s: float
    state: str = "finished"
    """"finished", "cancelled" (the items done so far are kept) or "failed"."""
    error: str | None = None
    id: int | None = None
    """Its row in the store, once saved."""
    created_at: float | None = None
    notes: tuple[str, ...] = ()
    """What the run had to change on the way (a switch to generation when the server gave no log-probabilities,
    items whose shots were dropped to fit the context)."""


@dataclass(frozen=True, slots=True)
class McNemar:
    """Two runs compared item by item on the items both answered."""

    items: int
    both_right: int
    both_wrong: int
    only_a: int
    """Right in run A, wrong in run B."""
    only_b: int
    p_value: float
    """Exact two-sided binomial (McNemar) test on the discordant pairs; 1.0 when there are none."""
