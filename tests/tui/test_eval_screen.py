"""The Evaluate screen driven by keys: a whole run on the fake engine (whose `<<X>>` markers make the accuracy known
exactly), progress, saving, cancel keeping the items done, export read back, compare's paired counts, bad data by
line, every key on an empty list; and its snapshots (two saved runs, the compare view) at 100x30 and 80x24."""

from __future__ import annotations

import csv
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

import engines.evaluate.runner as runner
from engines.adapters.fake import FakeEngine
from engines.evaluate.stats import score_subjects
from engines.evaluate.types import EvalProgress, EvalReport, ItemResult, McNemar, Method
from engines.tracking import mlflow_installed
from engines.types import Capability, LaunchOptions, ModelSpec
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tests.tui.test_instances_screen import drive
from tests.tui.test_snapshots import SIZES, settle
from tui.app import LlmTuiApp
from tui.screens.evaluate import EvaluateScreen
from tui.screens.modals.confirm import ConfirmModal
from tui.screens.modals.eval_compare import EvalCompareModal, verdict
from tui.screens.modals.eval_new import NewEvalModal
from tui.screens.modals.text_prompt import TextPromptModal
from tui.widgets.eval_tables import done_by_subject, share_correct

Z95 = 1.959963984540054

# (subject, question marker, answer): the fake picks the marked letter, so 6 of these 8 are right.
ITEMS = [
    ("algebra", "A", "A"),
    ("algebra", "B", "B"),
    ("algebra", "C", "C"),
    ("algebra", "D", "A"),  # wrong
    ("algebra", "A", "A"),
    ("biology", "B", "B"),
    ("biology", "C", "D"),  # wrong
    ("biology", "D", "D"),
]


def wilson_reference(correct: int, n: int) -> tuple[float, float]:
    """The Wilson score interval, written out from its textbook formula."""
    p = correct / n
    centre = p + Z95**2 / (2 * n)
    spread = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2))
    return (centre - spread) / (1 + Z95**2 / n), (centre + spread) / (1 + Z95**2 / n)


def write_set(root: Path, items: Sequence[tuple[str, str, str]] = ITEMS) -> Path:
    """An MMLU-layout folder: test/<subject>_test.csv from `items`, dev/<subject>_dev.csv with two rows each."""
    for split in ("dev", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
    by_subject: dict[str, list[list[str]]] = {}
    for n, (subject, marker, answer) in enumerate(items):
        by_subject.setdefault(subject, []).append(
            [f"Question {n} <<{marker}>>?", "one", "two", "three", "four", answer]
        )
    for subject, rows in by_subject.items():
        with (root / "test" / f"{subject}_test.csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)
        with (root / "dev" / f"{subject}_dev.csv").open("w", newline="") as f:
            csv.writer(f).writerows(
                [["Example one?", "a", "b", "c", "d", "B"], ["Example two?", "a", "b", "c", "d", "C"]]
            )
    return root


def start_instance(app: LlmTuiApp, fake_model: Path, engine: FakeEngine | None = None) -> str:
    return app.runtime.manager.start(
        ModelSpec(id="tiny", path=fake_model, format="gguf"), LaunchOptions(), engine or FakeEngine()
    )


def report(
    model: str, right: Sequence[bool], *, ips: float = 12.5, shots: int = 5, method: Method = Method.LOGLIK
) -> EvalReport:
    """A finished run over items of two subjects (the first half algebra), right where `right` says."""
    half = (len(right) + 1) // 2
    items = tuple(
        ItemResult("algebra" if i < half else "biology", i, "A", "A" if ok else "B") for i, ok in enumerate(right)
    )
    subjects, overall = score_subjects(items)
    return EvalReport(
        model=model,
        engine="llama.cpp",
        data_name="quiz",
        data_sha256="3f9a" * 16,
        method=method,
        shots=shots,
        limit=None,
        prompt_template="{question}",
        subjects=subjects,
        overall=overall,
        items=items,
        items_per_s=ips,
        elapsed_s=len(items) / ips,
    )


def screen_of(app: LlmTuiApp) -> EvaluateScreen:
    screen = app.screen
    assert isinstance(screen, EvaluateScreen), screen
    return screen


def toasts(app: LlmTuiApp) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


def rows_of(app: LlmTuiApp, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(f"#{table_id}", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(app: LlmTuiApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def open_new(pilot: Pilot[int], data: Path, *, shots: str = "2", limit: str = "") -> NewEvalModal:
    app: LlmTuiApp = pilot.app  # type: ignore[assignment]
    await pilot.press("n")
    await until(pilot, lambda: isinstance(pilot.app.screen, NewEvalModal), "the new-evaluation dialog")
    modal = pilot.app.screen
    assert isinstance(modal, NewEvalModal)
    modal.query_one("#eval-shots", Input).value = shots
    modal.query_one("#eval-limit", Input).value = limit
    modal.query_one("#eval-data", Input).value = str(data)
    modal.query_one("#eval-data", Input).focus()
    await pilot.press("enter")  # reads the data
    await until(
        pilot,
        lambda: "test items" in text_of(app, "#eval-data-info") or bool(text_of(app, "#eval-error").strip()),
        "the data to be read",
    )
    return modal


def test_a_whole_run_shows_progress_and_saves_the_exact_accuracy(
    make_app: AppFactory, fake_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "PROGRESS_INTERVAL_S", 0.0)  # a progress report per item
    data = write_set(tmp_path / "quiz")
    app = make_app(screen="evaluate", launch=False)
    seen: list[EvalProgress] = []

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        start_instance(app, fake_model)
        screen = screen_of(app)

        def progressed(progress: EvalProgress) -> None:
            seen.append(progress)
            screen.post_message(screen.Progressed(progress))

        monkeypatch.setattr(screen, "_progressed", progressed)
        modal = await open_new(pilot, data)
        info = text_of(app, "#eval-data-info")
        assert "8 test items in 2 subjects" in info and "4 dev items" in info, info
        await pilot.click("#start")
        await until(pilot, lambda: app.screen is screen and screen.running is None and bool(screen.reports), "the run")
        assert modal.data is not None
        saved = app.runtime.store.evals.list()
        assert len(saved) == 1 and saved[0].state == "finished"
        assert (saved[0].overall.items, saved[0].overall.correct) == (8, 6)
        low, high = wilson_reference(6, 8)
        assert saved[0].overall.ci_low == pytest.approx(low) and saved[0].overall.ci_high == pytest.approx(high)
        runs = rows_of(app, "eval-runs")
        assert len(runs) == 1
        line = " ".join(runs[0])
        assert "75.0 %" in line and f"{low * 100:.1f}–{high * 100:.1f}" in line and "tiny" in line, line
        subjects = {r[0]: r for r in rows_of(app, "eval-subjects")}
        assert subjects["algebra"][1:4] == ["5", "4", "80.0 %"]
        assert subjects["biology"][1:4] == ["3", "2", "66.7 %"]
        assert subjects["overall"][1:4] == ["8", "6", "75.0 %"]
        assert "log-likelihood" in text_of(app, "#eval-detail") and "2-shot" in text_of(app, "#eval-detail")
        assert [p.done for p in seen][-1] == 8 and seen[-1].total == 8 and seen[-1].correct == 6
        assert len({p.done for p in seen}) >= 4  # the bar moved item by item, not only at the end
        assert "Evaluation saved" in "\n".join(str(n.title) for n in app._notifications)
        if mlflow_installed():  # logged too, in a worker, after the run was saved
            await until(pilot, lambda: "logged as run" in toasts(app), "the run to be logged to MLflow", timeout=60)

    drive(app, test)


class NoScoreEngine(FakeEngine):
    """The fake without log-probabilities: the run generates one letter per item."""

    capabilities: ClassVar[Capability] = FakeEngine.capabilities & ~Capability.SCORE


def test_an_engine_without_scores_is_evaluated_by_generated_letters(
    make_app: AppFactory, fake_model: Path, tmp_path: Path
) -> None:
    data = write_set(tmp_path / "quiz")
    app = make_app(screen="evaluate", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        start_instance(app, fake_model, NoScoreEngine())
        screen = screen_of(app)
        await open_new(pilot, data, shots="0", limit="2")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is screen and screen.running is None and bool(screen.reports), "the run")
        saved = app.runtime.store.evals.list()[0]
        assert saved.method is Method.GENERATE and saved.limit == 2 and saved.shots == 0
        # The first two of each subject: algebra A/A and B/B right, biology B/B right and C/D wrong.
        assert (saved.overall.items, saved.overall.correct) == (4, 3)
        assert "generated letter" in text_of(app, "#eval-detail") and "at most 2 a subject" in text_of(
            app, "#eval-detail"
        )

    drive(app, test)


class HeldEngine(FakeEngine):
    """Scores `free` prompts, then holds the next until `hold` is set or the job is cancelled."""

    def __init__(self, free: int, hold: threading.Event) -> None:
        super().__init__()
        self.free = free
        self.hold = hold
        self.score_calls = 0

    def score_choices(self, prompt: str, choices: Sequence[str], cancel: threading.Event) -> list[float]:
        if self.score_calls >= self.free:
            while not self.hold.wait(0.01) and not cancel.is_set():
                pass
        self.score_calls += 1
        return super().score_choices(prompt, choices, cancel)


def test_s_stops_a_run_and_keeps_the_items_done(
    make_app: AppFactory, fake_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "PROGRESS_INTERVAL_S", 0.0)
    data = write_set(tmp_path / "quiz")
    hold = threading.Event()
    engine = HeldEngine(3, hold)
    app = make_app(screen="evaluate", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        start_instance(app, fake_model, engine)
        screen = screen_of(app)
        await open_new(pilot, data)
        await pilot.click("#start")
        await until(
            pilot,
            lambda: screen.running is not None and screen.running.last is not None and screen.running.last.done == 3,
            "three items done",
        )
        status = text_of(app, "#eval-status")
        assert "3/8" in status and "s stops" in status, status
        running_rows = {r[0]: r for r in rows_of(app, "eval-subjects")}
        assert running_rows["algebra"][1] == "3/5" and running_rows["overall"][1] == "3/8"
        await pilot.press("s")
        await until(pilot, lambda: screen.running is None and bool(screen.reports), "the run to stop and be saved")
        hold.set()
        saved = app.runtime.store.evals.get(screen.reports[0].id or 0)
        assert saved.state == "cancelled"
        assert len(saved.items) == saved.overall.items and 3 <= len(saved.items) < 8
        assert [(i.subject, i.index) for i in saved.items][:3] == [("algebra", 0), ("algebra", 1), ("algebra", 2)]
        assert "cancelled" in " ".join(rows_of(app, "eval-runs")[0])

    drive(app, test)


def test_bad_rows_show_with_their_lines_and_no_instance_points_to_the_instances_screen(
    make_app: AppFactory, fake_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    bad = folder / "physics.csv"
    bad.write_text("Good one <<A>>?,a,b,c,d,A\nNo answer?,a,b,c,d,Z\nShort row,a,b\nGood two?,a,b,c,d,B\n")
    app = make_app(screen="evaluate", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await pilot.press("n")
        assert "No instance is running" in toasts(app) and "Instances screen (F4)" in toasts(app)
        assert not isinstance(app.screen, NewEvalModal)
        start_instance(app, fake_model)
        modal = await open_new(pilot, bad)
        info = text_of(app, "#eval-data-info")
        assert "2 test items in 1 subject" in info, info
        assert "2 rows refused" in info and "physics.csv:2" in info and "physics.csv:3" in info, info
        modal.query_one("#eval-data", Input).value = str(tmp_path / "missing.csv")
        await pilot.press("enter")
        assert "No such file or folder" in text_of(app, "#eval-error")
        modal.query_one("#eval-data", Input).value = str(bad)
        modal.query_one("#eval-shots", Input).value = "many"
        modal.query_one("#eval-shots", Input).focus()
        await pilot.press("enter")  # Enter on shots or limit starts
        assert "Shots must be a whole number" in text_of(app, "#eval-error")
        modal.query_one("#eval-shots", Input).value = "0"
        modal.query_one("#eval-limit", Input).value = "0"
        await pilot.press("enter")
        assert "at least 1 item" in text_of(app, "#eval-error")
        await pilot.press("escape")
        assert isinstance(app.screen, EvaluateScreen) and not app.runtime.store.evals.list()

    drive(app, test)


def test_every_key_on_an_empty_list_says_why(make_app: AppFactory) -> None:
    app = make_app(screen="evaluate", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        assert "No evaluation saved yet" in text_of(app, "#eval-status")
        for key in ("space", "c", "x", "d", "s", "escape", "enter", "delete"):
            await pilot.press(key)
            assert isinstance(app.screen, EvaluateScreen), key
        said = toasts(app)
        assert "No evaluation is running" in said
        for doing in ("mark", "compare", "export", "delete", "show"):
            assert f"No saved run to {doing}" in said, doing

    drive(app, test)


def test_export_writes_md_and_csv_and_refuses_a_bad_suffix(make_app: AppFactory, tmp_path: Path) -> None:
    app = make_app(screen="evaluate", launch=False)
    out = tmp_path / "out"
    out.mkdir()
    right = [True, True, False, True, False, True]

    async def export_to(pilot: Pilot[int], path: Path) -> None:
        await pilot.press("x")
        await until(pilot, lambda: isinstance(pilot.app.screen, TextPromptModal), "the export prompt")
        pilot.app.screen.query_one(Input).value = str(path)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, EvaluateScreen), "the prompt to close")

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        saved = app.runtime.store.evals.save(report("gemma", right))
        screen = screen_of(app)
        screen.reload()
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, TextPromptModal), "the export prompt")
        assert app.screen.query_one(Input).value == str(Path.cwd() / f"eval-{saved.id}.md")
        await pilot.press("escape")
        await export_to(pilot, out / "run.md")
        markdown = (out / "run.md").read_text()
        assert "66.7" in markdown and "gemma" in markdown and "biology" in markdown
        await export_to(pilot, out / "run.csv")
        with (out / "run.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 6
        assert [r["correct"] for r in rows] == ["1" if ok else "0" for ok in right]
        app.clear_notifications()
        await export_to(pilot, out / "run.txt")
        assert "Export failed" in "\n".join(str(n.title) for n in app._notifications) and ".txt" in toasts(app)
        assert not (out / "run.txt").exists()
        blocker = out / "a-file"
        blocker.write_text("")
        app.clear_notifications()
        await export_to(pilot, blocker / "run.md")  # its folder is a file: cannot be written
        assert "Export failed" in "\n".join(str(n.title) for n in app._notifications)
        assert sorted(p.name for p in out.iterdir()) == ["a-file", "run.csv", "run.md"]  # no temp file left

    drive(app, test)


def paired(only_a: int, only_b: int, both_right: int, both_wrong: int) -> tuple[list[bool], list[bool]]:
    a = [True] * only_a + [False] * only_b + [True] * both_right + [False] * both_wrong
    b = [False] * only_a + [True] * only_b + [True] * both_right + [False] * both_wrong
    return a, b


def test_compare_shows_the_paired_counts_and_mcnemar(make_app: AppFactory) -> None:
    app = make_app(screen="evaluate", launch=False)
    a_right, b_right = paired(only_a=1, only_b=9, both_right=6, both_wrong=4)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        evals = app.runtime.store.evals
        a = evals.save(report("base", a_right))
        b = evals.save(report("tuned", b_right))
        screen = screen_of(app)
        screen.reload()  # newest first: b, then a
        await pilot.press("c")
        assert "Mark a run with space first" in toasts(app)
        await pilot.press("down", "space")
        assert screen.marked == a.id and rows_of(app, "eval-runs")[1][0].startswith("●")
        await pilot.press("c")
        assert f"#{a.id} is the marked run" in toasts(app)
        await pilot.press("up", "c")
        await until(pilot, lambda: isinstance(app.screen, EvalCompareModal), "the compare view")
        counts = text_of(app, "#eval-compare-counts")
        assert counts == "20 items both answered:\nboth right 6 · only A 1 · only B 9 · both wrong 4", counts
        p = 2 * sum(math.comb(10, i) for i in range(2)) / 2**10  # exact two-sided binomial, 1 of 10 discordant
        assert text_of(app, "#eval-compare-verdict") == f"B is better than A on these items (p = {p:.3f})."
        table = {r[0]: r for r in rows_of(app, "eval-compare-table")}
        assert table["overall"][1:] == ["35.0 %", "75.0 %", "+40.0"]
        await pilot.press("escape")
        assert isinstance(app.screen, EvaluateScreen)
        assert b.id is not None

    drive(app, test)


def test_d_deletes_after_asking_and_t_goes_to_tune(make_app: AppFactory) -> None:
    app = make_app(screen="evaluate", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        app.runtime.store.evals.save(report("base", [True, False]))
        keep = app.runtime.store.evals.save(report("tuned", [True, True]))
        screen = screen_of(app)
        screen.reload()
        await pilot.press("down", "d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question")
        await pilot.press("n")
        assert len(app.runtime.store.evals.list()) == 2
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question")
        await pilot.press("y")
        assert [r.id for r in app.runtime.store.evals.list()] == [keep.id]
        assert [r.id for r in screen.reports] == [keep.id]
        await pilot.press("t")
        await until(pilot, lambda: app.current_mode == "tune", "the Tune screen")

    drive(app, test)


# -- snapshots -----------------------------------------------------------------------------------------------------


def saved_pair(app: LlmTuiApp) -> None:
    """Two saved runs with fixed speeds and times (the first, older: a base model; the second, newer: tuned)."""
    a_right, b_right = paired(only_a=2, only_b=8, both_right=14, both_wrong=6)
    app.runtime.store.evals.save(report("gemma-3-270m-it-Q4_K_M", a_right, ips=41.3))
    app.runtime.store.evals.save(report("gemma-3-270m-tuned-quiz", b_right, ips=38.9, shots=0, method=Method.GENERATE))


@pytest.mark.parametrize("size", SIZES)
def test_eval_screen_snapshot(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, size
) -> None:
    monkeypatch.setattr(EvaluateScreen, "when", staticmethod(lambda _t: "12-07 18:30"))
    app = make_app(screen="evaluate", launch=False)

    async def show(pilot: Pilot[int]) -> None:
        saved_pair(pilot.app)  # type: ignore[arg-type]
        screen = screen_of(pilot.app)  # type: ignore[arg-type]
        screen.reload()
        await pilot.press("down", "space", "up")
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES)
def test_eval_compare_snapshot(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, size
) -> None:
    monkeypatch.setattr(EvaluateScreen, "when", staticmethod(lambda _t: "12-07 18:30"))
    app = make_app(screen="evaluate", launch=False)

    async def show(pilot: Pilot[int]) -> None:
        saved_pair(pilot.app)  # type: ignore[arg-type]
        screen_of(pilot.app).reload()  # type: ignore[arg-type]
        await pilot.press("down", "space", "up", "c")
        await until(pilot, lambda: isinstance(pilot.app.screen, EvalCompareModal), "the compare view")
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=show)


def test_the_verdict_sentence_and_the_running_counts() -> None:
    assert verdict(McNemar(20, 6, 4, 9, 1, 0.0215)) == "A is better than B on these items (p = 0.021)."
    assert verdict(McNemar(20, 6, 4, 1, 9, 0.0004)) == "B is better than A on these items (p < 0.001)."
    assert verdict(McNemar(30, 14, 6, 2, 8, 0.109)) == "No significant difference on these items (p = 0.109)."
    assert verdict(McNemar(0, 0, 0, 0, 0, 1.0)) == "The runs share no item: nothing to compare."
    order = [("algebra", 5), ("biology", 3)]
    assert done_by_subject(order, 6) == {"algebra": 5, "biology": 1}
    # A report spanning the end of algebra (2 done there, 1 right so far) and biology's first item, both right.
    done = done_by_subject(order, 6)
    assert share_correct({"algebra": 3}, done, order, 2) == {"algebra": 4, "biology": 1}
