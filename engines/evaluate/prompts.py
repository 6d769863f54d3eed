"""The MMLU prompt (Hendrycks et al.): k answered dev questions of the same subject, then the question."""

from __future__ import annotations

from collections.abc import Sequence

from engines.evaluate.types import LETTERS, EvalItem

PROMPT_TEMPLATE = (
    "The following are multiple choice questions (with answers) about {subject}.\n\n"
    "{shots}"
    "{question}\nA. {A}\nB. {B}\n...\nAnswer:"
    "\n---\n"
    "{subject}: the subject with underscores as spaces. {shots}: the subject's first k dev items, each as"
    ' "{question}\\nA. {A}\\nB. {B}\\n...\\nAnswer: {answer}\\n\\n". One line "X. {X}" per choice.'
    ' Log-likelihood scores the continuations " A", " B", ...; generation reads the first letter A-J of the reply.'
    " When a prompt does not fit the model's context, shots are dropped from the end until it fits"
    " (an item that does not fit with none is counted wrong, with no answer)."
)
"""How every prompt is built (stored in each report, so a run can be reproduced)."""


def CHOICE_TOKENS(n: int) -> tuple[str, ...]:
    """The continuations scored for n choices: " A", " B", ..."""
    return tuple(f" {letter}" for letter in LETTERS[:n])


def subject_title(subject: str) -> str:
    """Underscores as spaces: high_school_physics reads "high school physics"."""
    return subject.replace("_", " ").strip()


def format_question(item: EvalItem) -> str:
    """The question and its lettered choices, ending with "Answer:"."""
    lines = [item.question]
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, item.choices, strict=False)]
    return "\n".join(lines) + "\nAnswer:"


def build_prompt(item: EvalItem, shots: Sequence[EvalItem]) -> str:
    """The whole prompt for `item`, after the answered `shots` (see PROMPT_TEMPLATE)."""
    head = f"The following are multiple choice questions (with answers) about {subject_title(item.subject)}.\n\n"
    parts = [head]
    parts += [f"{format_question(shot)} {shot.answer}\n\n" for shot in shots]
    parts.append(format_question(item))
    return "".join(parts)
