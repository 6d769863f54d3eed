"""Reading multiple-choice data sets: the MMLU and C-Eval folder layouts, one CSV, or one JSONL file.

Every bound is checked before the data is used (file size, file count, rows, field length); a bad row becomes a
DataProblem naming its file and line, and the rest is still used. BadRequest only when nothing usable is found.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.errors import BadRequest
from engines.evaluate.types import LETTERS, DataProblem, EvalItem, EvalSet

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_FILES = 5000
MAX_ROWS = 200_000
MAX_FIELD_CHARS = 16 * 1024
MAX_LINE_CHARS = 16 * MAX_FIELD_CHARS
"""A JSONL line: a question and ten choices at their longest, with room for the keys."""
SPLITS = ("dev", "val", "test")
SHOWN_PROBLEMS = 20
"""How many problems a BadRequest's message lists."""


@dataclass
class _Reader:
    """What the files read so far gave: items by split and subject, problems, the hash, the rows counted."""

    items: dict[str, dict[str, list[EvalItem]]] = field(default_factory=lambda: {s: {} for s in SPLITS})
    problems: list[DataProblem] = field(default_factory=list)
    digest: Any = field(default_factory=hashlib.sha256)
    rows: int = 0
    full: bool = False
    """MAX_ROWS reached: later rows are not read."""

    def count_row(self, source: str) -> bool:
        """False (with one problem) once MAX_ROWS rows have been read."""
        if self.rows >= MAX_ROWS:
            if not self.full:
                self.problems.append(DataProblem(source, f"stopped reading here: more than {MAX_ROWS} rows"))
            self.full = True
            return False
        self.rows += 1
        return True

    def read_bytes(self, path: Path, shown: str) -> str | None:
        """The file's text (hashed with its name), or None with a problem when it is too big or not UTF-8."""
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                self.problems.append(DataProblem(shown, f"file is {size} bytes, over the {MAX_FILE_BYTES} limit"))
                return None
            with path.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            self.problems.append(DataProblem(shown, f"cannot read: {exc.strerror or exc}"))
            return None
        if len(data) > MAX_FILE_BYTES:
            self.problems.append(DataProblem(shown, f"file grew over the {MAX_FILE_BYTES} byte limit"))
            return None
        self.digest.update(shown.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.problems.append(DataProblem(shown, f"not UTF-8 text (byte {exc.start})"))
            return None

    def add(self, split: str, item: EvalItem) -> None:
        self.items[split].setdefault(item.subject, []).append(item)


def load_eval_set(path: Path, *, name: str | None = None) -> EvalSet:
    """Read a data set: a folder in the MMLU or C-Eval layout (dev/, val/, test/ of `<subject>_<split>.csv`),
    one CSV (its subject from the file name) or one JSONL file. Raises BadRequest when no test item is usable."""
    path = Path(path).expanduser()
    reader = _Reader()
    if path.is_dir():
        what = "dev/, val/ and test/ folders of <subject>_test.csv files (MMLU or C-Eval layout)"
        dev, test = _read_folder(_layout_root(path), reader)
    elif path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            what = "JSON lines with question, choices and answer"
            _read_jsonl(path, reader)
        elif suffix == ".csv":
            what = "CSV rows of question, choices and answer"
            _read_csv(path, path.name, "test", _subject_of(path), reader)
        else:
            raise BadRequest(f"{path}: give a folder in the MMLU or C-Eval layout, a .csv file or a .jsonl file")
        dev, test = reader.items["dev"], reader.items["test"]
    else:
        raise BadRequest(f"{path}: no such file or folder")
    test_items = tuple(item for subject in sorted(test) for item in test[subject])
    if not test_items:
        raise BadRequest(_nothing_usable(path, what, reader.problems))
    return EvalSet(
        name=name or (path.name if path.is_dir() else path.stem),
        test=test_items,
        dev={subject: tuple(items) for subject, items in sorted(dev.items())},
        problems=tuple(reader.problems),
        sha256=reader.digest.hexdigest(),
    )


def _nothing_usable(path: Path, what: str, problems: list[DataProblem]) -> str:
    lines = [f"{path}: no usable test items; looked for {what}"]
    if problems:
        lines.append(f"{len(problems)} problem(s):")
        lines += [f"  {p.source}: {p.message}" for p in problems[:SHOWN_PROBLEMS]]
    return "\n".join(lines)


def _layout_root(path: Path) -> Path:
    """The folder holding dev/ val/ test/: the one given, or its data/ (as MMLU's archive unpacks)."""
    if not any((path / s).is_dir() for s in SPLITS) and (path / "data").is_dir():
        return path / "data"
    return path


def _read_folder(root: Path, reader: _Reader) -> tuple[dict[str, list[EvalItem]], dict[str, list[EvalItem]]]:
    """dev items and test items by subject. C-Eval's test split has no answers: val is then the test set."""
    files: list[tuple[str, Path]] = []
    for split in SPLITS:
        folder = root / split
        if folder.is_dir():
            for file in sorted(folder.iterdir()):
                if file.suffix.lower() == ".csv" and file.is_file():
                    files.append((split, file))
    if len(files) > MAX_FILES:
        reader.problems.append(DataProblem(root.name, f"{len(files)} CSV files; only the first {MAX_FILES} are read"))
        files = files[:MAX_FILES]
    for split, file in sorted(files, key=lambda f: f"{f[0]}/{f[1].name}"):
        if reader.full:
            break
        _read_csv(file, f"{split}/{file.name}", split, _subject_of(file), reader)
    test = reader.items["test"] or reader.items["val"]
    return reader.items["dev"], test


def _subject_of(path: Path) -> str:
    stem = path.stem
    for split in SPLITS:
        if stem.endswith(f"_{split}"):
            return stem[: -len(split) - 1] or stem
    return stem


def _read_csv(path: Path, shown: str, split: str, subject: str, reader: _Reader) -> None:
    text = reader.read_bytes(path, shown)
    if text is None:
        return
    rows = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    line = 1
    index = 0
    try:
        for row in rows:
            start, line = line, rows.line_num + 1
            if not row or all(not cell.strip() for cell in row):
                continue
            source = f"{shown}:{start}"
            if header is None and start == 1 and _is_header(row):
                header = [cell.strip().lower() for cell in row]
                if "answer" not in header:  # C-Eval's test split: questions without answers
                    return
                continue
            if not reader.count_row(source):
                return
            item = _csv_item(row, header, subject, index, source, reader.problems)
            if item is not None:
                reader.add(split, item)
                index += 1
    except csv.Error as exc:
        reader.problems.append(DataProblem(f"{shown}:{line}", f"CSV cannot be parsed here, rest skipped: {exc}"))


def _is_header(row: list[str]) -> bool:
    names = {cell.strip().lower() for cell in row}
    return "question" in names and "a" in names


def _csv_item(
    row: list[str], header: list[str] | None, subject: str, index: int, source: str, problems: list[DataProblem]
) -> EvalItem | None:
    if header is None:  # MMLU: question, A, B, C, D, answer
        if len(row) != 6:
            problems.append(DataProblem(source, f"expected 6 columns (question, A, B, C, D, answer), got {len(row)}"))
            return None
        return _item(subject, index, row[0], row[1:5], row[5], source, problems)
    if len(row) != len(header):
        problems.append(DataProblem(source, f"expected {len(header)} columns as in the header, got {len(row)}"))
        return None
    cells = dict(zip(header, row, strict=True))
    letters = [letter for letter in LETTERS if letter.lower() in cells]
    return _item(
        subject, index, cells["question"], [cells[x.lower()] for x in letters], cells["answer"], source, problems
    )


def _item(
    subject: str,
    index: int,
    question: str,
    choices: list[str],
    answer: str,
    source: str,
    problems: list[DataProblem],
) -> EvalItem | None:
    """Validate one item's fields; None (with a problem) when one is bad."""
    for label, value in [("question", question), *zip(LETTERS, choices, strict=False), ("answer", answer)]:
        if len(value) > MAX_FIELD_CHARS:
            problems.append(DataProblem(source, f"{label} is {len(value)} characters, over {MAX_FIELD_CHARS}"))
            return None
    if not question.strip():
        problems.append(DataProblem(source, "empty question"))
        return None
    if not 2 <= len(choices) <= len(LETTERS):
        problems.append(DataProblem(source, f"{len(choices)} choices; give 2 to {len(LETTERS)}"))
        return None
    empty = [LETTERS[i] for i, c in enumerate(choices) if not c.strip()]
    if empty:
        problems.append(DataProblem(source, f"empty choice {', '.join(empty)}"))
        return None
    letters = LETTERS[: len(choices)]
    letter = answer.strip().upper()
    if len(letter) != 1 or letter not in letters:
        problems.append(DataProblem(source, f"answer {answer.strip()[:20]!r} is not one of {', '.join(letters)}"))
        return None
    return EvalItem(subject, index, question.strip(), tuple(c.strip() for c in choices), letter, source)


def _read_jsonl(path: Path, reader: _Reader) -> None:
    text = reader.read_bytes(path, path.name)
    if text is None:
        return
    default_subject = _subject_of(path)
    counts: dict[tuple[str, str], int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        source = f"{path.name}:{number}"
        if not reader.count_row(source):
            return
        if len(line) > MAX_LINE_CHARS:
            reader.problems.append(DataProblem(source, f"line is {len(line)} characters, over {MAX_LINE_CHARS}"))
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            reader.problems.append(DataProblem(source, f"not JSON: {exc}"))
            continue
        parsed = _json_fields(obj, default_subject, source, reader.problems)
        if parsed is None:
            continue
        subject, split, question, choices, answer = parsed
        index = counts.get((split, subject), 0)
        item = _item(subject, index, question, choices, answer, source, reader.problems)
        if item is not None:
            counts[(split, subject)] = index + 1
            reader.add(split, item)


def _json_fields(
    obj: object, default_subject: str, source: str, problems: list[DataProblem]
) -> tuple[str, str, str, list[str], str] | None:
    """(subject, split, question, choices, answer letter) of a JSONL object; None with a problem when malformed."""
    if not isinstance(obj, dict):
        problems.append(DataProblem(source, "each line must be a JSON object"))
        return None
    question = obj.get("question")
    if not isinstance(question, str):
        problems.append(DataProblem(source, "question missing or not a string"))
        return None
    raw = obj.get("choices")
    if raw is None:
        raw = [obj[x] for x in LETTERS if x in obj]
    if not isinstance(raw, list) or not all(isinstance(c, str | int | float) and not isinstance(c, bool) for c in raw):
        problems.append(DataProblem(source, "choices must be a list of strings (or keys A, B, ...)"))
        return None
    choices = [str(c) for c in raw]
    answer = obj.get("answer")
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < min(len(choices), len(LETTERS)):
            problems.append(DataProblem(source, f"answer index {answer} is not one of 0..{len(choices) - 1}"))
            return None
        answer = LETTERS[answer]
    if not isinstance(answer, str):
        problems.append(DataProblem(source, "answer must be a letter or a 0-based index"))
        return None
    subject = obj.get("subject", default_subject)
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 200:
        problems.append(DataProblem(source, "subject must be a non-empty string (at most 200 characters)"))
        return None
    split = obj.get("split", "test")
    if split not in ("dev", "test"):
        problems.append(DataProblem(source, f"split must be 'dev' or 'test', got {str(split)[:20]!r}"))
        return None
    return subject.strip(), split, question, choices, answer
