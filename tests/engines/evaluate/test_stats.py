"""Wilson intervals and McNemar's exact test against values computed by hand."""

from __future__ import annotations

import pytest

from engines.evaluate.prompts import PROMPT_TEMPLATE
from engines.evaluate.stats import binomial_two_sided, mcnemar, score_subjects, unmatched, wilson
from engines.evaluate.types import EvalReport, ItemResult, Method, SubjectScore


def report(items: list[ItemResult]) -> EvalReport:
    subjects, overall = score_subjects(items)
    return EvalReport(
        "m", "fake", "d", "0" * 64, Method.LOGLIK, 0, None, PROMPT_TEMPLATE, subjects, overall, tuple(items), 1.0, 1.0
    )


def test_wilson_hand_values() -> None:
    # 8/10: center (0.8 + 1.92/10) / 1.384 = 0.7167, half 1.96 * sqrt(0.016 + 0.0096) / 1.384 = 0.2266
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    # 0/10: [0, z^2 / (n + z^2)] = [0, 3.8415 / 13.8415]
    assert wilson(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson(10, 10)[1] == pytest.approx(1.0) and wilson(10, 10)[0] == pytest.approx(1 - 0.27753, abs=1e-5)
    assert wilson(0, 0) == (0.0, 1.0)


def test_score_subjects_per_subject_and_overall() -> None:
    items = [
        ItemResult("b", 0, "A", "A"),
        ItemResult("a", 0, "B", "B"),
        ItemResult("a", 1, "C", None),
        ItemResult("a", 2, "D", "A"),
    ]
    subjects, overall = score_subjects(items)
    assert [(s.subject, s.items, s.correct) for s in subjects] == [("a", 3, 1), ("b", 1, 1)]
    assert subjects[0].accuracy == pytest.approx(1 / 3)
    assert overall == SubjectScore("overall", 4, 2, 0.5, *wilson(2, 4))


def test_binomial_two_sided_hand_values() -> None:
    assert binomial_two_sided(1, 9) == pytest.approx(22 / 1024)  # 2 * (1 + 10) / 2^10
    assert binomial_two_sided(8, 2) == pytest.approx(112 / 1024)  # 2 * (1 + 10 + 45) / 2^10
    assert binomial_two_sided(0, 0) == 1.0
    assert binomial_two_sided(5, 5) == 1.0
    assert binomial_two_sided(0, 3000) == pytest.approx(0.0, abs=1e-300)  # big n stays exact, no overflow


def test_mcnemar_matches_by_subject_and_index_and_counts_unmatched() -> None:
    a_items = [ItemResult("s", i, "A", "A" if i < 6 else "B") for i in range(10)]  # right on 0-5
    a_items.append(ItemResult("other", 0, "A", "A"))  # not in B
    b_items = [ItemResult("s", i, "A", "A" if i in (0, 1, 2, 6) else "C") for i in reversed(range(12))]
    a, b = report(a_items), report(b_items)
    test = mcnemar(a, b)
    # both right 0,1,2; only A 3,4,5; only B 6; both wrong 7,8,9
    assert (test.items, test.both_right, test.only_a, test.only_b, test.both_wrong) == (10, 3, 3, 1, 3)
    assert test.p_value == pytest.approx(2 * (1 + 4) / 16)  # b+c = 4, min 1
    assert unmatched(a, b, test) == (1, 2)
