"""The instances screen and the launch dialog, driven by keys, with fake engines in every state."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from engines.adapters.fake import FakeEngine
from engines.catalog.fit import GpuFree, ModelShape, Resources
from engines.errors import BadModelFile, InstanceNotFound
from engines.types import ChatMessage, InstanceState, LaunchOptions, ModelSpec
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import run, until
from tui.app import LlmTuiApp
from tui.screens.instances import COLUMNS, NARROW_DROPS, InstancesScreen, duration
from tui.screens.modals.launch import LaunchModal, LaunchTarget, engine_options, read_options
from tui.screens.modals.log_view import LogModal
from tui.widgets.api_status import ERROR_CHARS, shorten_words
from tui.widgets.live_table import fit_columns, shorten

GB = 10**9
RESOURCES = Resources(ram_free_bytes=16 * GB, gpus=(GpuFree(0, "GPU 0", 20 * GB),), disk_free_bytes=100 * GB)


def start_four(app: LlmTuiApp, fake_model: Path, gates: tuple[threading.Event, threading.Event]) -> list[str]:
    """Ready, busy (a reply held at its first token), loading (held) and error instances."""
    load_gate, token_gate = gates
    manager = app.runtime.manager
    spec = ModelSpec(id="tiny", path=fake_model, format="gguf")
    ready = manager.start(spec, LaunchOptions(), FakeEngine(ram_bytes=300 * 10**6))
    busy = manager.start(ModelSpec(id="chatty", path=fake_model), LaunchOptions(), FakeEngine(gate=token_gate))
    manager.submit(busy, [ChatMessage("user", "hi")])
    loading = manager.start(
        ModelSpec(id="slow", path=fake_model), LaunchOptions(), FakeEngine(load_gate=load_gate), wait=False
    )
    broken = manager.start(
        ModelSpec(id="broken", path=fake_model),
        LaunchOptions(),
        FakeEngine(load_error=BadModelFile(str(fake_model), "truncated")),
        wait=False,
    )
    return [ready, busy, loading, broken]


def drive(app: LlmTuiApp, test: object, size: tuple[int, int] = (100, 30)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await test(app, pilot)  # type: ignore[operator]

    run(main())


def table_text(app: LlmTuiApp) -> str:
    table = app.screen.query_one(DataTable)
    return "\n".join(" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count))


def test_every_state_shows_and_keys_act_on_the_selected_instance(
    make_app: AppFactory, fake_model: Path, gates: tuple[threading.Event, threading.Event]
) -> None:
    app = make_app(screen="instances", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        ready, busy, loading, broken = start_four(app, fake_model, gates)
        screen = app.screen
        assert isinstance(screen, InstancesScreen)
        await until(pilot, lambda: app.runtime.manager.info(broken).state is InstanceState.ERROR, "the load fails")
        await until(pilot, lambda: app.runtime.manager.info(busy).state is InstanceState.BUSY, "busy")
        screen.refresh_table()
        text = table_text(app)
        for run_id, state in ((ready, "ready"), (busy, "busy"), (loading, "loading"), (broken, "error")):
            line = next(ln for ln in text.splitlines() if run_id in ln)
            assert state in line, line
        assert "300 MB" in text and "4 instances" in str(screen.query_one("#instances-status").render())

        await pilot.press("down", "down", "down")  # the broken one: its error shows below the table
        assert "truncated" in str(screen.query_one("#instances-detail").render())
        await pilot.press("enter")  # cannot chat with a broken instance
        assert app.current_mode == "instances"
        await pilot.press("s")  # stopping a failed instance clears it
        await until(pilot, lambda: broken not in table_text(app), "the broken instance is gone")

        # The cursor moved to the row that took the broken one's place: the loading one.
        assert screen.selected is not None and screen.selected.run_id == loading
        await pilot.press("s")  # stopping it cancels the load
        gates[0].set()
        await until(pilot, lambda: loading not in table_text(app), "the load is cancelled")

        await pilot.press("home", "enter")  # chat with the ready instance
        assert app.current_mode == "chat"
        assert app.runtime.active is not None and app.runtime.active.run_id == ready

    drive(app, test)


def test_restart_relaunches_with_the_same_options_and_log_opens(make_app: AppFactory, fake_model: Path) -> None:
    app = make_app(screen="instances", launch=False)
    options = LaunchOptions(n_ctx=2048, n_threads=2)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        app.launch_model(str(fake_model), None, options)
        await until(pilot, lambda: app.runtime.active is not None, "launched")
        first = app.runtime.active.run_id  # type: ignore[union-attr]
        screen = app.screen
        assert isinstance(screen, InstancesScreen)
        screen.refresh_table()
        await pilot.pause()
        assert "context 2,048 · GPU layers 0 · threads 2" in str(screen.query_one("#instances-detail").render())
        await pilot.press("l")
        assert isinstance(app.screen, LogModal)
        await pilot.press("escape")
        await pilot.press("r")
        await until(
            pilot,
            lambda: app.runtime.active is not None and app.runtime.active.run_id != first,
            "relaunched under a new run id",
        )
        new = app.runtime.active.run_id  # type: ignore[union-attr]
        assert app.runtime.launches[new].options == options
        await until(pilot, lambda: first not in [i.run_id for i in app.runtime.manager.instances()], "old one gone")

    drive(app, test)


def test_a_stop_that_fails_says_why_and_a_restart_of_a_gone_instance_still_launches(
    make_app: AppFactory, fake_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F4's stop and restart workers dropped their errors (exit_on_error=False): a failed stop said nothing."""
    app = make_app(screen="instances", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        app.launch_model(str(fake_model))
        await until(pilot, lambda: app.runtime.active is not None, "launched")
        first = app.runtime.active.run_id  # type: ignore[union-attr]
        screen = app.screen
        assert isinstance(screen, InstancesScreen)
        screen.refresh_table()
        await pilot.pause()
        real_stop = app.runtime.manager.stop

        def gone(run_id: str, timeout: float | None = None) -> None:
            raise InstanceNotFound(f"no instance {run_id} (it was stopped meanwhile)")

        monkeypatch.setattr(app.runtime.manager, "stop", gone)
        await pilot.press("s")
        await until(
            pilot, lambda: any("stopped meanwhile" in n.message for n in app._notifications), "the stop's error said"
        )
        await pilot.press("r")  # the restart goes on: the old one is gone either way
        await until(
            pilot,
            lambda: app.runtime.active is not None and app.runtime.active.run_id != first,
            "relaunched under a new run id",
        )
        monkeypatch.setattr(app.runtime.manager, "stop", real_stop)

    drive(app, test)


def test_launch_dialog_offers_capable_engines_and_refuses_bad_fields(make_app: AppFactory, fake_model: Path) -> None:
    app = make_app(screen="chat", launch=False)
    target = LaunchTarget(str(fake_model), "Tiny", "gguf", ("llama.cpp", "mlx"), ModelShape(weights_bytes=GB))

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        app.runtime.resources = lambda: RESOURCES  # type: ignore[method-assign]
        app.open_launch_dialog(target)
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, LaunchModal)
        assert "mlx: not built yet" in str(modal.query_one("#launch-engines").render())
        assert "fits in RAM" in str(modal.query_one("#launch-fit").render())
        modal.query_one("#n_ctx", Input).value = "lots"
        await pilot.pause()
        assert "Context: 'lots' is not a whole number" in str(modal.query_one("#error").render())
        await pilot.press("ctrl+s")
        assert app.screen is modal  # refused, the dialog stays
        modal.query_one("#n_ctx", Input).value = "8192"
        modal.query_one("#lora_path", Input).value = "/no/such/adapter.gguf"
        await pilot.pause()
        assert "LoRA adapter: no such file" in str(modal.query_one("#error").render())
        modal.query_one("#lora_path", Input).value = ""
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.runtime.active is not None, "launched")
        assert app.runtime.launches[app.runtime.active.run_id].options.n_ctx == 8192  # type: ignore[union-attr]

    drive(app, test)


def test_read_options_follows_device_and_engine() -> None:
    base = LaunchOptions(n_ctx=4096)
    llama = ("device", "n_ctx", "n_gpu_layers", "n_threads", "lora_path", "idle_unload_s")
    cpu = read_options({"device": "cpu", "n_gpu_layers": "20", "idle_unload_min": "5"}, base, llama)
    assert cpu.n_gpu_layers == 0 and cpu.idle_unload_s == 300.0
    gpu = read_options({"device": "cuda:0", "n_gpu_layers": ""}, base, llama)
    assert gpu.n_gpu_layers == -1 and gpu.device == "cuda:0"
    assert read_options({"dtype": "bfloat16"}, base, llama).dtype is None  # llama.cpp has no dtype
    with pytest.raises(Exception, match="needs a CUDA GPU"):
        read_options({"device": "cpu", "quantization": "4bit"}, base, (*llama, "quantization"))
    assert [o.name for o in engine_options(LaunchTarget("x", "x", "gguf", ("ollama",)))][-1] == "ollama"


def test_duration() -> None:
    assert [duration(s) for s in (None, 5, 125, 7300, 90000)] == ["-", "5 s", "2 m", "2 h 1 m", "1 d"]


def test_n_picks_a_model_then_asks_how_to_launch_it(make_app: AppFactory, tmp_path: Path) -> None:
    from tests.engines.gguf_corpus import write_gguf
    from tui.screens.modals.model_picker import ModelPickerModal

    model = write_gguf(tmp_path / "picked.gguf", "llama", context_length=8192)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00")
    app = make_app(screen="instances", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        app.runtime.resources = lambda: RESOURCES  # type: ignore[method-assign]
        await pilot.press("n")
        assert isinstance(app.screen, ModelPickerModal)
        app.screen.query_one("#model-query", Input).value = str(broken)
        await pilot.press("enter")
        await until(pilot, lambda: any("Cannot launch" in (n.title or "") for n in app._notifications), "refused")
        assert isinstance(app.screen, InstancesScreen)

        await pilot.press("n")
        app.screen.query_one("#model-query", Input).value = str(model)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LaunchModal), "the launch dialog")
        assert "Launch picked" in str(app.screen.query_one(".dialog-title").render())
        assert "fits in RAM" in str(app.screen.query_one("#launch-fit").render())  # the shape came from its header
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.runtime.active is not None, "launched")
        assert app.runtime.active is not None and app.runtime.active.model_id == "picked"

    drive(app, test)


WIDE_ROW = (
    "▶ r12-llama.cpp",
    "qwen2.5-7b-instruct-q4_k_m",
    "llama.cpp",
    "cuda:0",
    "loading 12 s",
    "4.7 GB",
    "5.2 GB",
    "45.3",
    "120",
    "2 h 5 m",
    "1 h 3 m",
)


def test_columns_fit_80_columns_keeping_state_memory_and_idle() -> None:
    shown, model_width = fit_columns([WIDE_ROW], 78, COLUMNS, NARROW_DROPS)
    assert {"Run", "State", "RAM", "VRAM", "Idle"} <= set(shown) and "Engine" not in shown
    widths = {t: max(len(t), len(WIDE_ROW[COLUMNS.index(t)])) for t in shown if t != "Model"}
    assert sum(w + 2 for w in widths.values()) + model_width + 2 <= 78
    assert shorten(WIDE_ROW[1], model_width).endswith("…") and len(shorten(WIDE_ROW[1], model_width)) == model_width
    assert fit_columns([WIDE_ROW], 200, COLUMNS, NARROW_DROPS) == (
        list(COLUMNS),
        len(WIDE_ROW[1]),
    )  # wide: every column, nothing cut


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_the_table_never_scrolls_sideways(make_app: AppFactory, fake_model: Path, size: tuple[int, int]) -> None:
    """Was: at 80x24 the last column (Idle) was off screen."""
    app = make_app(screen="instances", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        spec = ModelSpec(id="qwen2.5-7b-instruct-q4_k_m", path=fake_model)
        app.runtime.manager.start(spec, LaunchOptions(), FakeEngine(ram_bytes=4_700_000_000))
        screen = app.screen
        assert isinstance(screen, InstancesScreen)
        screen.refresh_table()
        await pilot.pause()
        table = screen.table
        labels = [str(c.label) for c in table.columns.values()]
        assert {"State", "VRAM", "Idle"} <= set(labels)
        assert table.virtual_size.width <= table.scrollable_content_region.width, labels
        await pilot.resize_terminal(120, 30)  # wider again: every column comes back
        await until(pilot, lambda: len(table.columns) == len(COLUMNS), "all columns")

    drive(app, test, size)


def test_a_long_api_error_is_cut_at_a_word_and_points_to_the_log() -> None:
    error = "404 /v1/chat/completions: " + "the model 'gpt-4' does not exist or is not running " * 4
    short = shorten_words(error, ERROR_CHARS)
    assert len(short) <= ERROR_CHARS and short.endswith("… (A: all of it)")
    assert short.removesuffix("… (A: all of it)") in error and error[len(short) - 16] == " "  # cut between words
    assert shorten_words("404 /v1/models: no", ERROR_CHARS) == "404 /v1/models: no"


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_columns_widen_when_a_loading_instance_becomes_ready(
    make_app: AppFactory, fake_model: Path, size: tuple[int, int]
) -> None:
    """Was: a column kept the width of its first cells, so RAM read "474" (not "474 MB") once the load finished."""
    app = make_app(screen="instances", launch=False)
    load_gate = threading.Event()

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = app.screen
        assert isinstance(screen, InstancesScreen)
        engine = FakeEngine(ram_bytes=474 * 10**6, load_gate=load_gate)
        run_id = app.runtime.manager.start(ModelSpec(id="m", path=fake_model), LaunchOptions(), engine, wait=False)
        await until(pilot, lambda: app.runtime.manager.info(run_id).state is InstanceState.LOADING, "loading")
        screen.refresh_table()
        await pilot.pause()
        assert "loading" in str(screen.table.get_cell(run_id, "State"))
        load_gate.set()
        await until(pilot, lambda: app.runtime.manager.info(run_id).state is InstanceState.READY, "ready")
        screen.refresh_table()
        await pilot.pause()
        table = screen.table
        for column in table.columns.values():
            widest = max(len(str(table.get_cell(run_id, column.key))), len(str(column.label)))
            assert column.content_width >= widest, f"{column.label} is cut"

    try:
        drive(app, test, size)
    finally:
        load_gate.set()
