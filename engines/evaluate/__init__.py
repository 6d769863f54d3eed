"""Multiple-choice evaluation (MMLU / C-Eval layout): data, prompts, scoring runs, statistics, reports."""
