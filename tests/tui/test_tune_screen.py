"""The Tune screen driven by keys over a fake training process (no torch, no real run): a new run through the dialog
(a bad data file cannot start, a good one runs and the plot and status follow its events), stop, resume, delete,
evaluate, failures, keys on an empty list; and snapshots at 100x30 and 80x24."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input

from engines.config.load import Config
from engines.errors import BadRequest
from engines.store.sessions import Store
from engines.tune.paths import run_dir
from engines.tune.types import (
    Checkpointed,
    Failed,
    Finished,
    Started,
    Status,
    StepDone,
    Stopped,
    TuneEvent,
    TuneOptions,
    TuneRun,
    Validated,
)
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tests.tui.test_instances_screen import drive, table_text
from tests.tui.test_snapshots import SIZES, settle
from tui.app import LlmTuiApp
from tui.screens.modals.confirm import ConfirmModal
from tui.screens.modals.tune_new import TuneNewModal, default_name
from tui.screens.tune import EMPTY_HINT, TuneScreen
from tui.screens.tune_hooks import INSTALL_HINT, missing_packages
from tui.widgets.tune_plot import LearningRatePlot, LossPlot, lr_scale, step_ticks
from tui.widgets.tune_runs import RunView

CHAT_ROW = '{"messages": [{"role": "user", "content": "Hi %d"}, {"role": "assistant", "content": "Hello %d"}]}'
NOW = datetime(2026, 1, 5, 14, 32)


def step(n: int, *, epoch: float | None = None) -> StepDone:
    """A step with figures that follow from its number (the test checks them against these)."""
    return StepDone(
        step=n,
        epoch=epoch if epoch is not None else n / 4,
        loss=round(3.0 / (1 + 0.5 * n), 4),
        learning_rate=2e-4 * (1 - n / 50),
        tokens_per_s=1000.0 + n,
        memory_bytes=1_500_000_000,
        elapsed_s=float(n),
        eta_s=float(20 - n),
    )


class FakeTune:
    """A training process that sends scripted events from a thread and records them as TuneProcess does.

    `gate` holds the run before each event whose index is in `hold_at` until the test calls `release()`; `stop()`
    makes it send Checkpointed and Stopped after the step it is on.
    """

    started: list[FakeTune] = []

    def __init__(self, store: Store, name: str, events: list[TuneEvent], hold_at: tuple[int, ...] = ()) -> None:
        self.store, self.name, self.events, self.hold_at = store, name, events, hold_at
        self.gate = threading.Semaphore(0)
        self.stop_asked = threading.Event()
        self.stops = 0
        self.on_event: Callable[[TuneEvent], None] = lambda e: None
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        """Asks for a checkpoint and a stop; the run goes on to it once released (the test sees "stopping…")."""
        self.stops += 1
        self.stop_asked.set()

    def wait(self, timeout: float | None = None) -> int | None:
        self.thread.join(timeout)
        return None if self.thread.is_alive() else 0

    def release(self) -> None:
        self.gate.release()

    def _send(self, event: TuneEvent) -> None:
        self.store.tunes.record(self.name, event)
        if isinstance(event, Finished):
            self.store.tunes.update(self.name, state="finished", adapter_path=event.adapter_dir)
        elif isinstance(event, Stopped):
            self.store.tunes.update(self.name, state="stopped")
        elif isinstance(event, Failed):
            self.store.tunes.update(self.name, state="failed", error=event.message)
        self.on_event(event)

    def _run(self) -> None:
        last = 0
        for i, event in enumerate(self.events):
            if event is DIES:  # the child is gone without a last word: the reader marks the run as TuneProcess does
                self.store.tunes.update(self.name, state="interrupted", error="the training process was killed (-9)")
                return
            if i in self.hold_at:
                self.gate.acquire(timeout=20)
            if self.stop_asked.is_set():
                self._send(Checkpointed(last, Path(f"/runs/{self.name}/checkpoints/step-{last}")))
                self._send(Stopped(last, Path(f"/runs/{self.name}/checkpoints/step-{last}")))
                return
            if isinstance(event, StepDone):
                last = event.step
            self._send(event)


DIES = Status("(the child dies here)")
"""In a script: the process ends without a Finished, Stopped or Failed event."""


def run_events(total: int, *, first: int = 1, resumed_from: int = 0) -> list[TuneEvent]:
    events: list[TuneEvent] = [Started(total, resumed_from=resumed_from, train_rows=9, val_rows=1, device="cpu")]
    for n in range(first, total + 1):
        events.append(step(n))
        if n % 3 == 0:
            events.append(Validated(n, round(3.2 / (1 + 0.4 * n), 4)))
    events.append(Checkpointed(total, Path(f"/runs/x/checkpoints/step-{total}")))
    events.append(Finished(Path("/runs/x/adapter"), final_loss=1.0, val_loss=1.1))
    return events


class FakeTuning:
    """Stands in for TuneProcess.start / .resume: creates the store row as the real one does, then runs a FakeTune
    with the next script."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.scripts: list[tuple[list[TuneEvent], tuple[int, ...]]] = []
        self.processes: list[FakeTune] = []
        self.calls: list[tuple[str, ...]] = []
        self.refuse: str | None = None

    def start(
        self,
        config: Config,
        base: str,
        data: Path,
        name: str,
        options: TuneOptions,
        on_event: Callable[[TuneEvent], None],
    ) -> FakeTune:
        self.calls.append(("start", base, str(data), name, str(options.rank), str(options.max_steps)))
        if self.refuse:
            raise BadRequest(self.refuse)
        self.store.tunes.create(TuneRun(name, base, data, "0" * 64, options, "running", run_dir(config, name)))
        return self._run(name, on_event)

    def resume(self, config: Config, name: str, on_event: Callable[[TuneEvent], None]) -> FakeTune:
        self.calls.append(("resume", name))
        self.store.tunes.update(name, state="running")
        return self._run(name, on_event)

    def _run(self, name: str, on_event: Callable[[TuneEvent], None]) -> FakeTune:
        events, hold = self.scripts.pop(0)
        process = FakeTune(self.store, name, events, hold)
        process.on_event = on_event
        self.processes.append(process)
        process.thread.start()
        return process


@pytest.fixture
def tuning(monkeypatch: pytest.MonkeyPatch, isolated_dirs: Path) -> Iterator[Callable[[LlmTuiApp], FakeTuning]]:
    """Point the screen at fake processes (and say torch and peft are installed); the test builds it per app."""
    made: list[FakeTuning] = []

    def build(app: LlmTuiApp) -> FakeTuning:
        fake = FakeTuning(app.runtime.store)
        monkeypatch.setattr(TuneScreen, "starter", fake.start)
        monkeypatch.setattr(TuneScreen, "resumer", fake.resume)
        made.append(fake)
        return fake

    monkeypatch.setattr(TuneScreen, "missing", lambda: None)
    monkeypatch.setattr(TuneNewModal, "now", lambda: NOW)
    monkeypatch.chdir(isolated_dirs)
    yield build
    for fake in made:
        for process in fake.processes:
            process.stop()
            process.release()
            process.thread.join(timeout=10)


def tune_app(make_app: AppFactory) -> LlmTuiApp:
    return make_app(screen="tune", launch=False)


def screen_of(app: LlmTuiApp) -> TuneScreen:
    screen = app.screen
    assert isinstance(screen, TuneScreen)
    return screen


def toasts(app: LlmTuiApp) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


def status(app: LlmTuiApp) -> str:
    return str(screen_of(app).query_one("#tune-status").render())


def write_data(folder: Path, name: str, lines: list[str]) -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def good_data(folder: Path) -> Path:
    return write_data(folder, "good.jsonl", [CHAT_ROW % (i, i) for i in range(10)])


def bad_data(folder: Path) -> Path:
    lines = [CHAT_ROW % (i, i) for i in range(6)]
    lines[1] = '{"messages": [{"role": "user", "content": "no answer"}]}'
    lines[3] = "{not json"
    lines[4] = '{"prompt": "x", "completion": "y"}'
    return write_data(folder, "bad.jsonl", lines)


async def fill_dialog(pilot: Pilot[int], base: str, data: str, **fields: str) -> TuneNewModal:
    await pilot.press("n")
    await until(pilot, lambda: isinstance(pilot.app.screen, TuneNewModal), "the new-run dialog")
    modal = pilot.app.screen
    assert isinstance(modal, TuneNewModal)
    modal.query_one("#base", Input).value = base
    modal.query_one("#data", Input).value = data
    for field, value in fields.items():
        modal.query_one(f"#{field}", Input).value = value
    await pilot.pause()
    return modal


def report_text(modal: TuneNewModal) -> str:
    return str(modal.query_one("#tune-report").render())


async def validated(pilot: Pilot[int], modal: TuneNewModal) -> str:
    await pilot.press("ctrl+t")
    await until(pilot, lambda: modal.report is not None, "the data report")
    await pilot.pause()
    return report_text(modal)


def store_run(store: Store, config: Config, name: str, steps: int, state: str, **kw: object) -> TuneRun:
    """A run in the store with a deterministic curve, as a finished (or stopped) run leaves it."""
    options = TuneOptions(max_steps=steps)
    run = store.tunes.create(
        TuneRun(name, "gemma-3-270m", Path("/data/chat.jsonl"), "0" * 64, options, "running", run_dir(config, name))
    )
    for n in range(1, steps + 1):
        store.tunes.record(name, step(n))
        if n % 5 == 0:
            store.tunes.record(name, Validated(n, round(3.2 / (1 + 0.4 * n), 4)))
    store.tunes.update(name, state=state, **kw)  # type: ignore[arg-type]
    return run


# -- tests ------------------------------------------------------------------------------------------------------------


def test_default_name_is_the_base_and_the_date() -> None:
    assert default_name("gemma-3-270m", NOW) == "gemma-3-270m-20260105-1432"
    assert default_name("/models/My Model Q4.gguf", NOW) == "my-model-q4-20260105-1432"
    assert default_name("org/Qwen2.5-0.5B/", NOW) == "qwen2.5-0.5b-20260105-1432"


def test_plot_axes_read_as_people_count_steps() -> None:
    assert step_ticks(range(1, 41)) == [1, 10, 20, 30, 40]
    assert step_ticks(range(1, 7)) == [1, 2, 4, 6]
    assert step_ticks(range(101, 161)) == [101, 120, 140, 160]
    assert step_ticks([7]) == [7] and step_ticks([]) == []
    assert lr_scale([2e-4, 1.5e-4, 1e-5]) == -4 and lr_scale([3e-5]) == -5 and lr_scale([]) == 0


def test_a_run_view_keeps_one_curve_whatever_order_events_come_in() -> None:
    run = TuneRun("r", "base", Path("/d.jsonl"), "0" * 64, TuneOptions(), "running", Path("/runs/r"))
    view = RunView(run, steps=[step(n) for n in range(1, 7)], validations=[Validated(3, 1.5), Validated(6, 1.2)])
    view.apply(step(5))  # queued before the store was read: replaces step 5, keeps step 6
    view.apply(Validated(3, 1.5))
    assert [s.step for s in view.steps] == [1, 2, 3, 4, 5, 6]
    assert [v.step for v in view.validations] == [3, 6]
    view.apply(Started(8, resumed_from=4, device="cuda:0"))  # resumed from step 4: the rest is trained again
    assert [s.step for s in view.steps] == [1, 2, 3, 4] and [v.step for v in view.validations] == [3]
    assert (view.total, view.device, view.state) == (8, "cuda:0", "running")


def test_without_torch_n_names_the_extra(make_app: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TuneScreen, "missing", lambda: missing_packages(lambda m: None if m == "peft" else m))

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen_of(app)
        await pilot.press("n")
        await pilot.pause()
        assert not isinstance(app.screen, TuneNewModal)
        assert "Fine-tuning needs peft: pip install 'llm-tui[tune]'" in toasts(app)
        assert INSTALL_HINT == "pip install 'llm-tui[tune]'"

    drive(tune_app(make_app), test)


def test_keys_on_an_empty_list_say_why(make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning]) -> None:
    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        fake = tuning(app)
        assert status(app) == EMPTY_HINT
        for key in ("enter", "s", "r", "l", "d"):
            app.clear_notifications()
            await pilot.press(key)
            await pilot.pause()
            assert "No run is selected" in toasts(app), key
            assert isinstance(app.screen, TuneScreen), key
        assert fake.calls == []

    drive(tune_app(make_app), test)


def test_a_data_file_with_problems_cannot_start(
    make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning], isolated_dirs: Path
) -> None:
    bad_data(isolated_dirs)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        fake = tuning(app)
        modal = await fill_dialog(pilot, "gemma-3-270m", "bad.jsonl")
        assert modal.query_one("#name", Input).value == "gemma-3-270m-20260105-1432"
        assert modal.query_one("#start", Button).disabled  # not validated yet
        await pilot.press("ctrl+s")
        assert "Validate the data file first" in str(modal.query_one("#error").render())
        text = await validated(pilot, modal)
        assert text.startswith("3 usable rows (3 chat) · train ")
        assert "3 problems" in text
        for line in (2, 4, 5):
            assert f"line {line}:" in text, text
        assert "Cannot start" in text
        assert modal.query_one("#start", Button).disabled
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is modal and "has problems" in str(modal.query_one("#error").render())
        assert fake.calls == []

    drive(tune_app(make_app), test)


def test_ctrl_b_picks_the_base_from_the_local_models(
    make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning]
) -> None:
    from tui.screens.modals.model_picker import ModelPickerModal

    app = tune_app(make_app)
    folder = app.runtime.config.models_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Tiny-Base.Q4.gguf").write_bytes(b"GGUF")

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        tuning(app)
        modal = await fill_dialog(pilot, "", "")
        assert modal.query_one("#name", Input).value == ""  # no base: no name to suggest
        await pilot.press("ctrl+b")
        await until(pilot, lambda: isinstance(app.screen, ModelPickerModal), "the model picker")
        await pilot.press(*"tiny-base", "enter")
        await until(pilot, lambda: app.screen is modal, "back in the dialog")
        assert modal.query_one("#base", Input).value == str(folder / "Tiny-Base.Q4.gguf")
        assert modal.query_one("#name", Input).value == "tiny-base.q4-20260105-1432"
        modal.query_one("#name", Input).value = "mine"  # a typed name stays when the base changes
        modal.query_one("#base", Input).value = "gemma-3-270m"
        await pilot.pause()
        assert modal.query_one("#name", Input).value == "mine"

    drive(app, test)


def test_a_good_run_starts_and_the_plot_and_status_follow_its_events(
    make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning], isolated_dirs: Path
) -> None:
    good_data(isolated_dirs)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        fake = tuning(app)
        events = run_events(6)
        fake.scripts.append((events, (0, 5)))  # held before Started, and before step 4 (Started, 1, 2, 3, val 3, 4…)
        modal = await fill_dialog(pilot, "gemma-3-270m", "good.jsonl", rank="4", max_steps="6")
        text = await validated(pilot, modal)
        assert "10 usable rows (10 chat) · train 9 / val 1 · no problems" in text
        assert not modal.query_one("#start", Button).disabled
        modal.query_one("#epochs", Input).value = "two"
        await pilot.press("ctrl+s")
        assert "Epochs must be a number, not 'two'" in str(modal.query_one("#error").render())
        assert app.screen is modal and fake.calls == []
        modal.query_one("#epochs", Input).value = "2"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, TuneScreen), "the dialog closes")
        screen = screen_of(app)
        name = "gemma-3-270m-20260105-1432"
        await until(pilot, lambda: len(fake.processes) == 1, "the process")
        # Being set up: the row is there, and the data report shows under the plot.
        assert "running" in table_text(app) and status(app) == f"{name}: starting…"
        detail = str(screen.query_one("#tune-detail").render())
        assert detail == "10 usable rows (10 chat) · train 9 / val 1 · no problems"
        fake.processes[0].release()
        await until(pilot, lambda: len(screen.query_one(LossPlot).steps) == 3, "three steps")
        data = str(isolated_dirs / "good.jsonl")
        assert fake.calls == [("start", "gemma-3-270m", data, name, "4", "6")]
        row = next(line for line in table_text(app).splitlines() if name in line)
        assert "running" in row and "3/6" in row and f"{step(3).loss:.3f}" in row
        assert f"{round(3.2 / 2.2, 4):.3f}" in row  # the validation at step 3
        line = status(app)
        for part in ("step 3/6", "epoch 0.75", "1,003 tok/s", "ETA 17 s", "1.5 GB", "cpu"):
            assert part in line, line
        plot = screen.query_one(LossPlot)
        assert [s.loss for s in plot.steps] == [step(n).loss for n in (1, 2, 3)]
        assert [(v.step, v.val_loss) for v in plot.validations] == [(3, round(3.2 / 2.2, 4))]
        assert [s.learning_rate for s in screen.query_one(LearningRatePlot).steps] == [
            step(n).learning_rate for n in (1, 2, 3)
        ]
        fake.processes[0].release()
        await until(pilot, lambda: "finished" in table_text(app), "the run finishes")
        assert [s.step for s in plot.steps] == [1, 2, 3, 4, 5, 6]
        assert [v.step for v in plot.validations] == [3, 6]
        assert "/runs/x/adapter" in str(screen.query_one("#tune-detail").render())
        assert "tok/s" not in status(app)  # a finished run: no live speed
        assert app.runtime.store.tunes.get(name).state == "finished"

    drive(tune_app(make_app), test)


def test_stop_then_resume_continues_the_same_curve(
    make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning], isolated_dirs: Path
) -> None:
    good_data(isolated_dirs)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        fake = tuning(app)
        fake.scripts.append((run_events(8), (5,)))
        fake.scripts.append((run_events(8, first=4, resumed_from=3), ()))
        modal = await fill_dialog(pilot, "gemma-3-270m", "good.jsonl")
        await validated(pilot, modal)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, TuneScreen), "the dialog closes")
        screen = screen_of(app)
        await until(pilot, lambda: len(screen.query_one(LossPlot).steps) == 3, "three steps")
        await pilot.press("r")  # running: not resumable
        assert "is running" in toasts(app)
        await pilot.press("s")
        await pilot.pause()
        assert "stopping…" in table_text(app)
        assert "stopping (saving a checkpoint)" in status(app)
        fake.processes[0].release()
        await until(pilot, lambda: "stopped" in table_text(app), "the run stops")
        assert fake.processes[0].stops == 1
        app.clear_notifications()
        await pilot.press("s")  # stopped: nothing to stop
        assert "not running here: nothing to stop" in toasts(app)
        await pilot.press("r")
        await until(pilot, lambda: "finished" in table_text(app), "the resumed run finishes")
        assert fake.calls[-1] == ("resume", "gemma-3-270m-20260105-1432")
        plot = screen.query_one(LossPlot)
        assert [s.step for s in plot.steps] == list(range(1, 9))
        assert [v.step for v in plot.validations] == [3, 6]
        await pilot.press("enter")  # the curve read back from the store is the same one
        await pilot.pause()
        assert [s.step for s in plot.steps] == list(range(1, 9))
        assert [s.loss for s in plot.steps] == [step(n).loss for n in range(1, 9)]
        app.clear_notifications()
        await pilot.press("s")
        assert "is finished, not running here" in toasts(app)

    drive(tune_app(make_app), test)


def test_a_run_that_fails_shows_its_error(
    make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning], isolated_dirs: Path
) -> None:
    good_data(isolated_dirs)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        fake = tuning(app)
        fake.scripts.append(([Started(4, device="cpu"), step(1), Failed("CUDA out of memory at step 2")], ()))
        modal = await fill_dialog(pilot, "gemma-3-270m", "good.jsonl")
        await validated(pilot, modal)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "failed" in table_text(app), "the failure")
        assert "failed: CUDA out of memory at step 2" in status(app)
        assert "CUDA out of memory" in toasts(app)
        app.clear_notifications()
        await pilot.press("r")
        assert "only a stopped or interrupted run resumes" in toasts(app)
        # A start the process refuses (a base model it does not know): the row says so too.
        fake.refuse = "model 'nope' not found"
        modal = await fill_dialog(pilot, "nope", "good.jsonl", name="second")
        await validated(pilot, modal)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "model 'nope' not found" in toasts(app), "the refusal")
        assert "second failed: model 'nope' not found" in status(app)
        screen_of(app).reload()  # it has no record, and stays listed with its reason until deleted
        await pilot.pause()
        assert "second failed: model 'nope' not found" in status(app)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question")
        await pilot.press("y")
        await until(pilot, lambda: "second" not in table_text(app), "the row goes")
        assert [r.name for r in app.runtime.store.tunes.list()] == ["gemma-3-270m-20260105-1432"]

    drive(tune_app(make_app), test)


def test_the_real_process_refusing_a_base_shows_why(
    make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning], isolated_dirs: Path
) -> None:
    """TuneProcess.start itself (no fake; it refuses before spawning anything): the row says what it said."""
    good_data(isolated_dirs)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        assert TuneScreen.starter is None
        modal = await fill_dialog(pilot, str(isolated_dirs / "no-such-model.gguf"), "good.jsonl", name="real")
        await validated(pilot, modal)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "failed" in table_text(app), "the refusal")
        assert status(app).startswith("real failed: ") and "no-such-model.gguf" in status(app)
        assert app.runtime.store.tunes.list() == []  # refused before the run was created

    drive(tune_app(make_app), test)


def test_a_process_that_dies_without_a_word_shows_as_interrupted(
    make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning], isolated_dirs: Path
) -> None:
    good_data(isolated_dirs)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        fake = tuning(app)
        fake.scripts.append(([Started(4, device="cpu"), step(1), DIES], ()))
        modal = await fill_dialog(pilot, "gemma-3-270m", "good.jsonl")
        await validated(pilot, modal)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(fake.processes) == 1 and not fake.processes[0].running, "the process ends")
        screen = screen_of(app)
        await until(pilot, lambda: "1/4" in table_text(app), "its step")
        screen.reload()  # what the timer does every few seconds
        await pilot.pause()
        assert "interrupted" in table_text(app)
        name = "gemma-3-270m-20260105-1432"
        assert status(app) == (
            f"{name} interrupted: the training process was killed (-9) · r resumes from its last checkpoint"
        )
        assert screen.handles == {}
        assert [s.step for s in screen.query_one(LossPlot).steps] == [1]  # from the store now

    drive(tune_app(make_app), test)


def test_delete_asks_and_keeps_the_folder(make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning]) -> None:
    app = tune_app(make_app)
    store_run(app.runtime.store, app.runtime.config, "old-run", 10, "finished", adapter_path=Path("/runs/old/adapter"))

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        tuning(app)
        await until(pilot, lambda: "old-run" in table_text(app), "the stored run")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question")
        await pilot.press("n")
        await pilot.pause()
        assert [r.name for r in app.runtime.store.tunes.list()] == ["old-run"]
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question")
        await pilot.press("y")
        await until(pilot, lambda: "old-run" not in table_text(app), "the row goes")
        assert app.runtime.store.tunes.list() == []
        assert "its folder" in toasts(app)

    drive(app, test)


def test_e_opens_evaluate_and_l_launches_the_base_with_the_adapter(
    make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tune_app(make_app)
    store_run(app.runtime.store, app.runtime.config, "done", 10, "finished", adapter_path=Path("/runs/done/adapter"))
    launched: list[tuple[object, ...]] = []

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        tuning(app)
        monkeypatch.setattr(app, "launch_model", lambda *a, **k: launched.append(a))
        await until(pilot, lambda: "done" in table_text(app), "the stored run")
        monkeypatch.setattr(TuneScreen, "lora_check", lambda: "The transformers engine cannot load a LoRA adapter yet.")
        await pilot.press("l")
        assert "cannot load a LoRA adapter yet" in toasts(app) and launched == []
        monkeypatch.setattr(TuneScreen, "lora_check", lambda: None)
        await pilot.press("l")
        await until(pilot, lambda: app.current_mode == "chat", "the chat")
        ref, engine, options = launched[0]
        assert (ref, engine) == ("gemma-3-270m", "transformers")
        assert options.lora_path == Path("/runs/done/adapter")  # type: ignore[attr-defined]
        app.switch_mode("tune")
        await until(pilot, lambda: isinstance(app.screen, TuneScreen), "back on the tune screen")
        await pilot.press("e")
        await until(pilot, lambda: app.current_mode == "evaluate", "the evaluate screen")

    drive(app, test)


def test_a_stored_run_shows_its_whole_curve(make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning]) -> None:
    app = tune_app(make_app)
    store_run(app.runtime.store, app.runtime.config, "stopped-run", 12, "stopped")

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        tuning(app)
        await until(pilot, lambda: "stopped-run" in table_text(app), "the stored run")
        screen = screen_of(app)
        plot = screen.query_one(LossPlot)
        assert [s.step for s in plot.steps] == list(range(1, 13))
        assert [v.step for v in plot.validations] == [5, 10]
        row = table_text(app)
        assert "12/12" in row and f"{step(12).loss:.3f}" in row
        assert status(app) == f"stopped-run stopped · step 12/12 · epoch 3.00 · loss {step(12).loss:.3f} · val 0.640"

    drive(app, test)


def test_every_key_leaves_the_app_standing(make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning]) -> None:
    """Each letter and the keys a table takes, on a stopped run, at 80x24 (the crash guard fails the test)."""
    app = tune_app(make_app)
    store_run(app.runtime.store, app.runtime.config, "halfway", 6, "stopped")

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        fake = tuning(app)
        fake.scripts += [(run_events(6, first=4, resumed_from=3), ())] * 3
        keys = [*"abcdefghijklmnopqrstuvwxyz", "enter", "delete", "escape", "up", "down", "home", "end", "space"]
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
            while not isinstance(app.screen, TuneScreen):
                if app.current_mode != "tune":
                    await app.switch_mode("tune")
                else:
                    await pilot.press("escape")
                await pilot.pause()
        assert "halfway" in table_text(app)

    drive(app, test, size=(80, 24))


# -- snapshots ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_tune_snapshot(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning], size
) -> None:
    app = tune_app(make_app)
    store = app.runtime.store
    store_run(store, app.runtime.config, "qwen-notes", 8, "stopped")
    store_run(store, app.runtime.config, "gemma-support", 40, "finished", adapter_path=Path("/runs/gemma/adapter"))

    async def show(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: "gemma-support" in table_text(pilot.app), "the runs")  # type: ignore[arg-type]
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES)
def test_tune_new_dialog_snapshot(  # type: ignore[no-untyped-def]
    snap_compare, make_app: AppFactory, tuning: Callable[[LlmTuiApp], FakeTuning], isolated_dirs: Path, size
) -> None:
    bad_data(isolated_dirs)

    async def show(pilot: Pilot[int]) -> None:
        modal = await fill_dialog(pilot, "gemma-3-270m", "bad.jsonl")
        await validated(pilot, modal)
        await settle(pilot)

    assert snap_compare(tune_app(make_app), terminal_size=size, run_before=show)
