"""The MMLU prompt, character for character."""

from __future__ import annotations

from engines.evaluate.prompts import PROMPT_TEMPLATE, build_prompt
from engines.evaluate.types import EvalItem


def test_mmlu_prompt_with_one_shot() -> None:
    shot = EvalItem("high_school_physics", 0, "Unit of force?", ("Newton", "Joule", "Watt", "Pascal"), "A", "d:1")
    item = EvalItem("high_school_physics", 3, "Unit of energy?", ("Newton", "Joule", "Watt"), "B", "t:4")
    assert build_prompt(item, [shot]) == (
        "The following are multiple choice questions (with answers) about high school physics.\n\n"
        "Unit of force?\nA. Newton\nB. Joule\nC. Watt\nD. Pascal\nAnswer: A\n\n"
        "Unit of energy?\nA. Newton\nB. Joule\nC. Watt\nAnswer:"
    )
    assert build_prompt(item, []).endswith("physics.\n\nUnit of energy?\nA. Newton\nB. Joule\nC. Watt\nAnswer:")


def test_template_documents_the_placeholders() -> None:
    for placeholder in ("{subject}", "{shots}", "{question}", "{A}", "Answer:", "dropped"):
        assert placeholder in PROMPT_TEMPLATE
