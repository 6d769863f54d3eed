"""Accuracy with its 95 % Wilson interval, per subject and overall, and McNemar's exact test between two runs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from engines.evaluate.types import EvalReport, ItemResult, McNemar, SubjectScore

Z95 = 1.959963984540054
"""The standard normal's 97.5th percentile."""


def wilson(correct: int, n: int) -> tuple[float, float]:
    """The Wilson score 95 % interval of a proportion correct/n; (0.0, 1.0) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    z2 = Z95 * Z95
    denominator = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def score(subject: str, correct: int, n: int) -> SubjectScore:
    low, high = wilson(correct, n)
    return SubjectScore(subject, n, correct, correct / n if n else 0.0, low, high)


def score_subjects(items: Sequence[ItemResult]) -> tuple[tuple[SubjectScore, ...], SubjectScore]:
    """Each subject's score (sorted by subject) and the overall one (subject "overall")."""
    tally: dict[str, list[int]] = {}
    for item in items:
        counts = tally.setdefault(item.subject, [0, 0])
        counts[0] += item.correct
        counts[1] += 1
    subjects = tuple(score(s, c, n) for s, (c, n) in sorted(tally.items()))
    return subjects, score("overall", sum(s.correct for s in subjects), len(items))


def binomial_two_sided(b: int, c: int) -> float:
    """p = min(1, 2 P(X <= min(b, c))) with X ~ Bin(b + c, 1/2); 1.0 when b + c is 0."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / (1 << n))


def matched(a: EvalReport, b: EvalReport) -> list[tuple[ItemResult, ItemResult]]:
    """The items both runs answered, paired by (subject, index), in run A's order."""
    by_key = {(item.subject, item.index): item for item in b.items}
    return [(item, by_key[(item.subject, item.index)]) for item in a.items if (item.subject, item.index) in by_key]


def mcnemar(a: EvalReport, b: EvalReport) -> McNemar:
    """McNemar's exact test of runs A and B on the items both answered (the others are left out: see
    `unmatched`)."""
    pairs = matched(a, b)
    both_right = sum(x.correct and y.correct for x, y in pairs)
    both_wrong = sum(not x.correct and not y.correct for x, y in pairs)
    only_a = sum(x.correct and not y.correct for x, y in pairs)
    only_b = sum(y.correct and not x.correct for x, y in pairs)
    return McNemar(len(pairs), both_right, both_wrong, only_a, only_b, binomial_two_sided(only_a, only_b))


def unmatched(a: EvalReport, b: EvalReport, test: McNemar) -> tuple[int, int]:
    """Items of A, and of B, that the other run did not answer (left out of the test)."""
    return len(a.items) - test.items, len(b.items) - test.items
