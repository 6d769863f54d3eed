"""The states a user reaches on every screen, built for the key sweep and the monkey run, and the checks both make
after each key: the app still runs, nothing was raised, and the crash log (the last line of defence) stayed empty."""

from __future__ import annotations

import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from textual import events
from textual.keys import key_to_character
from textual.pilot import Pilot
from textual.screen import Screen

from engines.adapters import registry
from engines.adapters.fake import FakeEngine
from engines.catalog.discover import Discovery
from engines.catalog.listing import Listing, build_listing
from engines.catalog.local_model import LocalModel, finish_models
from engines.config.load import Config, user_config_path
from engines.downloads.tasks import TaskStatus
from engines.telemetry.fake import FakeGpuSource
from tests.tui.catalog_fixture import ENTRIES, RESOURCES
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import until
from tui.app import LlmTuiApp
from tui.screen_list import SCREENS

GB = 10**9
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((100, 30), id="100x30")]
QUIT_ACTIONS = {"quit", "app.quit", "suspend_process", "app.suspend_process"}
"""Bindings that end or suspend the app on purpose: the sweep does not press them."""
SKIPPED_KEYS = {"ctrl+q", "ctrl+c", "ctrl+z"}
EVERY_STOP = ["enter", "escape", "backspace", "a"]
"""Pressed at every focus stop: what a field does with them depends on the field (parsers, submit, revert)."""
ONCE_PER_WIDGET_CLASS = ["up", "down", "left", "right", "home", "end", "pageup", "pagedown", "delete", "tab"]
ONCE_PER_WIDGET_CLASS += ["shift+tab", "x", "j", "k", "q", "space", "question_mark"]
"""Pressed at the first stop of each widget class in a run: moving acts alike on every widget of a class."""
NAVIGATION = [*EVERY_STOP[:3], *ONCE_PER_WIDGET_CLASS[:11]]
LETTERS = [*EVERY_STOP[3:], *ONCE_PER_WIDGET_CLASS[11:]]
SCREEN_KEYS = [entry.key for entry in SCREENS if entry.key]
Keyed = Callable[[Pilot[int]], Awaitable[None]]
NO_HUB = "http://127.0.0.1:9"
"""The Hub endpoint of the sweep's apps: the discard port, closed on test machines (the Hub states use a fake)."""


@dataclass
class Env:
    """What a state builder gets: the app factory, a scratch folder, monkeypatch, and what to undo at the end."""

    make_app: AppFactory
    folder: Path
    monkeypatch: pytest.MonkeyPatch
    releases: list[threading.Event] = field(default_factory=list)
    closers: list[Callable[[], object]] = field(default_factory=list)
    """Run at the end too: stop the servers states started."""
    hub: Any = None
    """The fake Hub of the Hub screens' states (tests/tui/sweep_hub.py), started by the first that needs it."""

    def hold(self) -> threading.Event:
        """An event that holds a fake engine until the test ends."""
        event = threading.Event()
        self.releases.append(event)
        return event

    def release_all(self) -> None:
        """Let every held engine (and header read) finish, so the runtime closes at once; stop the servers."""
        for event in self.releases:
            event.set()
        for close in self.closers:
            close()


@dataclass(frozen=True)
class State:
    """A screen in a state: `build` makes the app, `setup` brings it there once, `open` (re)opens the modal or
    palette the state is about, and `keep` puts back what a key ended (a reply streaming, a compare running)."""

    name: str
    mode: str
    build: Callable[[Env], LlmTuiApp]
    setup: Callable[[Pilot[int], Env], Awaitable[None]] | None = None
    open: Keyed | None = None
    keep: Keyed | None = None


# -- the checks --------------------------------------------------------------------------------------------------


def crash_log_text(app: LlmTuiApp) -> str:
    """What the app's last line of defence caught: its log ("" when it caught nothing)."""
    path = app.crash_log_path
    text = path.read_text(errors="replace") if path.exists() else ""
    if app.crash_guard.caught and not text:
        return f"{app.crash_guard.caught} exceptions caught, none written to {path}"
    return text


def problem(app: LlmTuiApp) -> str | None:
    """Why the app is not well after a key, or None."""
    if app._exception is not None:
        return f"exception: {type(app._exception).__name__}: {app._exception}"
    if app.return_code is not None or not app.is_running:
        return f"the app exited (return code {app.return_code})"
    if log := crash_log_text(app):
        return f"the crash guard caught something:\n{log}"
    return None


async def press(pilot: Pilot[int], key: str) -> None:
    """Send `key` as the terminal driver would and let the app handle it and what it led to.

    Not pilot.press: its two idle waits (20 ms sleeps until the process looks idle) cost 60-180 ms a key here,
    and the sweep presses thousands. Waiting for the screen's queues three times covers a key forwarded to the
    focused widget, bubbling to its screen, and the screen an action pushes."""
    app = pilot.app
    event = events.Key(key, key_to_character(key))
    event.set_sender(app)
    app.post_message(event)
    for _ in range(3):
        await pilot.pause(0)


def guard_quit(app: LlmTuiApp) -> list[str]:
    """Make quitting (the palette's Quit command) a no-op that is counted, so only a crash can end the app."""
    quits: list[str] = []

    async def no_quit() -> None:
        quits.append("quit")

    app.action_quit = no_quit  # type: ignore[method-assign]
    return quits


def keys_here(app: LlmTuiApp, pressed: set[tuple[str, str]]) -> list[str]:
    """The keys to press at this focus stop. Every time: the screen's own bindings and EVERY_STOP. Once per widget
    class in a run: the focused widget's bindings and ONCE_PER_WIDGET_CLASS. Once per run: the app's and priority
    bindings, which act the same whatever has focus. `pressed` remembers what was pressed; quitting is left out."""
    screen = app.screen
    focused = type(app.focused).__name__ if app.focused is not None else "-"
    keys: list[str] = []

    def once(scope: str, key: str) -> None:
        if (scope, key) not in pressed:
            pressed.add((scope, key))
            keys.append(key)

    for key, active in screen.active_bindings.items():
        if key in SKIPPED_KEYS or active.binding.action in QUIT_ACTIONS:
            continue
        node = active.node
        if active.binding.priority or node is app:
            once("app", key)
        elif node is screen:
            keys.append(key)
        else:
            once(type(node).__name__, key)
    keys.extend(EVERY_STOP)
    for key in ONCE_PER_WIDGET_CLASS:
        once(focused, key)
    return list(dict.fromkeys(keys))


def all_keys() -> list[str]:
    """The monkey's alphabet: every binding of every screen, widget and modal class, navigation, letters, F1-F8."""
    from textual.binding import Binding
    from textual.dom import DOMNode

    import tui.screens.catalog
    import tui.screens.compare
    import tui.screens.downloads
    import tui.screens.embeddings
    import tui.screens.gauges
    import tui.screens.hub_files
    import tui.screens.hub_search
    import tui.screens.instances
    import tui.screens.modals.compare_runs
    import tui.screens.modals.confirm
    import tui.screens.modals.endpoint_edit
    import tui.screens.modals.launch
    import tui.screens.modals.log_view
    import tui.screens.modals.model_picker
    import tui.screens.modals.params
    import tui.screens.modals.text_prompt
    import tui.screens.settings
    import tui.widgets.compare_pane
    import tui.widgets.live_table
    import tui.widgets.model_table
    import tui.widgets.session_list
    import tui.widgets.settings_lists  # noqa: F401  (imported so their classes are walked below)

    keys: list[str] = []
    seen: set[type[DOMNode]] = set()
    todo: list[type[DOMNode]] = [DOMNode]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    for cls in sorted(seen, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        if not cls.__module__.startswith(("tui.", "textual.")):
            continue
        for item in cls.__dict__.get("BINDINGS", []):
            binding = item if isinstance(item, Binding) else Binding(*item)
            if binding.action in QUIT_ACTIONS:
                continue
            keys.extend(k.strip() for k in binding.key.split(",") if k.strip() not in SKIPPED_KEYS)
    return sorted(set(keys) | set(NAVIGATION) | set(LETTERS) | set(SCREEN_KEYS))


def shell(pilot: Pilot[int]) -> LlmTuiApp:
    """The app, typed."""
    app = pilot.app
    assert isinstance(app, LlmTuiApp)
    return app


def screen_of(app: LlmTuiApp, mode: str) -> Any:
    """The bottom screen of `mode` (the screen itself, under any modal); Any: each state calls its own screen's API."""
    stack = app._screen_stacks.get(mode) or []
    assert stack, f"mode {mode} has no screen"
    return stack[0]


async def restore(pilot: Pilot[int], state: State) -> None:
    """Back to the state after a key moved away: close what it opened, go back to the state's screen, reopen the
    state's modal, and put back what the key ended."""
    app = shell(pilot)
    for _ in range(8):  # a modal over a modal at most; a bound keeps a surprise from looping
        if app.current_mode == state.mode and (len(app.screen_stack) == 1 or (state.open and _is_target(app))):
            break
        if len(app.screen_stack) > 1:
            await pilot.pause(0)  # let a screen a key just pushed finish mounting, as it would before the next key
            await app.pop_screen()
        elif app.current_mode != state.mode:
            await app.switch_mode(state.mode)
        await pilot.pause(0)
    if state.open is not None and not _is_target(app):
        await pilot.pause()  # a dismissed modal leaves the app only once its removal has run
        await state.open(pilot)
        await pilot.pause(0)
    if state.keep is not None:
        await state.keep(pilot)


def _is_target(app: LlmTuiApp) -> bool:
    """True when the top screen is the one the state opened (marked by `mark`)."""
    return bool(getattr(app.screen, "_sweep_target", False))


def mark(screen: Screen[Any]) -> None:
    """Remember that this modal (or palette) is the state's own, so restore() keeps it."""
    screen._sweep_target = True  # type: ignore[attr-defined]


# -- listings and fixtures ---------------------------------------------------------------------------------------


def sweep_listing(config: Config, n_ctx: int | None) -> Listing:
    """The catalog fixture (local, broken, not downloaded, Ollama) plus a remote endpoint's model."""
    remote = LocalModel(
        id="remote:box/gpt-4o-mini", source="remote", format="remote", name="gpt-4o-mini", endpoint="box"
    )
    ollama = LocalModel(id="ollama:llama3.2:1b", source="ollama", format="ollama", name="llama3.2:1b", size_bytes=GB)
    from engines.catalog import discover_net
    from engines.catalog.discover import discover

    found = discover(config, include_network=False, hf_cache_dir=config.cache_dir / "no-hf-cache")
    with mock.patch.dict(sys.modules, {"ollama": None}):  # the status line of a machine without the client
        no_client = discover_net.list_ollama("127.0.0.1:11434").status
    discovery = Discovery(finish_models([*found.models, ollama, remote], ENTRIES), [no_client, "box: 1 model"])
    return build_listing(config, n_ctx=n_ctx, resources=RESOURCES, catalog=ENTRIES, discovery=discovery)


def without_transformers(env: Env) -> None:
    """Pretend the transformers engine is not installed (rows and dialogs that need an engine the user lacks)."""
    real = registry.is_installed
    env.monkeypatch.setattr(registry, "is_installed", lambda name: name != "transformers" and real(name))


def app_for(env: Env, *, mode: str, launch: bool, engine: FakeEngine | None = None) -> LlmTuiApp:
    """An app on `mode` with the sweep's catalog and two fake GPUs, its Hub a port nothing listens on (`h` on the
    catalog opens the Hub search, where keys type queries: they must not reach huggingface.co)."""
    from dataclasses import replace

    from tests.tui.catalog_fixture import populate

    app = env.make_app(
        screen=mode, launch=launch, engine=engine, listing=sweep_listing, gpu_source=lambda: FakeGpuSource()
    )
    app.runtime.apply_config(replace(app.runtime.config, hf_endpoint=NO_HUB))
    models_dir = app.runtime.config.models_dir
    if not models_dir.exists():
        models_dir.mkdir(parents=True)
        populate(models_dir)
    return app


async def model_ready(pilot: Pilot[int]) -> None:
    """Wait for the launched fake model to be the active instance."""
    app = shell(pilot)
    await until(pilot, lambda: app.runtime.active is not None and "ready" in app.status_text, "the model to load")


def chat_screen(app: LlmTuiApp) -> Any:
    """The chat screen (in its mode, whatever is shown)."""
    return screen_of(app, "chat")


async def one_exchange(pilot: Pilot[int], env: Env) -> None:
    """The model ready and one message answered, so copy, edit and regenerate have something to act on."""
    await model_ready(pilot)
    app = shell(pilot)
    chat = chat_screen(app)
    if app.current_mode != "chat":
        await app.switch_mode("chat")
        await pilot.pause()
    chat.send("Name three colours.")
    await until(pilot, lambda: chat.turn is None and len(chat.query_one("#chat-log").messages) == 2, "the reply")


def streaming_engine() -> FakeEngine:
    """A reply that streams for about ten seconds (keep() starts another when it ends or Esc stops it). Not longer:
    an embedding asked for on F7 queues behind it, and quitting waits for that embedding to end."""
    return FakeEngine(reply=" ".join(f"word{i}" for i in range(500)), token_delay_s=0.02)


async def editing(pilot: Pilot[int], env: Env) -> None:
    """One exchange, then Ctrl+G: the last message is back in the prompt to be resent."""
    await one_exchange(pilot, env)
    chat = chat_screen(shell(pilot))
    chat.action_edit()
    await until(pilot, lambda: chat.editing is not None, "the edit to start")


async def keep_streaming(pilot: Pilot[int]) -> None:
    """Start a new reply when a key stopped the last one (and no modal is in the way)."""
    app = shell(pilot)
    chat = chat_screen(app)
    if chat.turn is None and app.runtime.active is not None and chat.editing is None:
        chat.send("Keep talking.")
        await pilot.pause()


async def streaming(pilot: Pilot[int], env: Env) -> None:
    """The model ready and a reply streaming."""
    await model_ready(pilot)
    app = shell(pilot)
    mode = app.current_mode
    if mode != "chat":
        await app.switch_mode("chat")
    await keep_streaming(pilot)
    await until(pilot, lambda: chat_screen(app).turn is not None, "the reply to start")
    if mode != "chat":
        await app.switch_mode(mode)
    await pilot.pause()


async def every_download_status(pilot: Pilot[int], env: Env) -> None:
    """A queue holding a download in every status (the table only: nothing starts a transfer)."""
    app = shell(pilot)
    tasks = app.runtime.downloads.tasks
    models = app.runtime.config.models_dir
    for n, status in enumerate(TaskStatus):
        file = f"model-{n}-{status.value}-Q4_K_M.gguf"
        task = tasks.add("hf", models / file, repo=f"org/model-{n}-GGUF", file=file, total_bytes=2 * GB)
        tasks.record_progress(task.id, GB // (n + 1), None, 38.5e6 if status is TaskStatus.DOWNLOADING else None)
        if status is not TaskStatus.PENDING:
            tasks.set_status(task.id, TaskStatus.DOWNLOADING)
        if status not in (TaskStatus.PENDING, TaskStatus.DOWNLOADING):
            tasks.set_status(task.id, status, "sha256 mismatch" if status is TaskStatus.FAILED else None)
    refresh = getattr(app.screen, "refresh_table", None)
    if refresh is not None:
        refresh()
    await pilot.pause()


def compare_models(pilot: Pilot[int], env: Env, names: Sequence[str]) -> Any:
    """Add fake-engine models to the compare screen."""
    from engines.compare.types import CompareModel
    from engines.types import LaunchOptions
    from tests.engines.gguf_corpus import write_gguf

    screen = screen_of(shell(pilot), "compare")
    for name in names:
        path = write_gguf(env.folder / f"{name}.gguf")
        screen.add_model(CompareModel(ref=str(path), engine="llama.cpp", options=LaunchOptions(n_ctx=1024), label=name))
    return screen


def compare_app(env: Env, *, held: bool) -> LlmTuiApp:
    """The compare screen whose models are fake engines (held mid-reply when `held`)."""
    app = app_for(env, mode="compare", launch=False)
    hold = env.hold()

    def engine(ref: str) -> FakeEngine:
        reply = "Red, green and blue are the **primary colours** of light."
        if held:
            from tests.tui.test_snapshots_compare import HeldEngine

            return HeldEngine(words=3, hold=hold, reply=reply)
        return FakeEngine(reply=reply)

    app.runtime._engine_choice = engine
    return app


async def compare_run(pilot: Pilot[int], env: Env) -> None:
    """Two models, a prompt, the run started."""
    from tui.widgets.prompt import PromptInput

    screen = compare_models(pilot, env, ["alpha", "beta"])
    await pilot.pause()
    screen.query_one(PromptInput).text = "Name the three primary colours."
    screen.action_run()
    await until(pilot, lambda: screen.runner is not None or screen.shown is not None, "the run to start")


async def keep_compare_running(pilot: Pilot[int]) -> None:
    """Run again when a key stopped the run or removed the models (two are needed)."""
    from tui.widgets.prompt import PromptInput

    app = shell(pilot)
    screen = screen_of(app, "compare")
    if screen.runner is None and len(screen.models) >= 2 and len(app.screen_stack) == 1:
        screen.query_one(PromptInput).text = "Again."
        screen.action_run()
        await pilot.pause()


async def compare_finished(pilot: Pilot[int], env: Env) -> None:
    """A run that ended, and was saved (so the saved-runs dialog lists it)."""
    await compare_run(pilot, env)
    screen = screen_of(shell(pilot), "compare")
    await until(pilot, lambda: screen.runner is None and screen.shown is not None, "the run to end")
    screen.action_save()
    await pilot.pause()


async def invalid_setting(pilot: Pilot[int], env: Env) -> None:
    """A settings field holding a value it refuses."""
    from textual.widgets import Input

    screen = screen_of(shell(pilot), "settings")
    editor = screen.query_one(f"#{screen.row('defaults.temperature').field.id}", Input)
    editor.value = "-1"
    await pilot.pause()
    assert screen.row("defaults.temperature").error, "the invalid field shows no error"


def settings_app(env: Env) -> LlmTuiApp:
    """Settings over a user file with an endpoint and an alias (so the lists have rows)."""
    path = user_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '[aliases]\ntiny = "gemma-3-270m"\n\n[[remote_endpoints]]\nname = "box"\nurl = "http://127.0.0.1:9/v1"\n'
    )
    return app_for(env, mode="settings", launch=False)


def presets_app(env: Env) -> LlmTuiApp:
    """The chat over a user file with two presets (F12 opens their picker)."""
    path = user_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '[presets.terse]\ndescription = "One-sentence answers"\nsystem = "Answer in one sentence."\n'
        'temperature = 0.2\n\n[presets.coder]\nmodel = "gemma-3-270m"\nmax_tokens = 512\n'
    )
    return app_for(env, mode="chat", launch=True)


def _approval(app: LlmTuiApp, screen: Any) -> None:
    """A model's call of an MCP tool, waiting for the user's answer."""
    from engines.mcp.types import McpTool
    from engines.types import ToolCall
    from tui.screens.modals.tool_approval import ToolApprovalModal

    call = ToolCall("call_1", "demo__add", '{"a": 2, "b": 3}')
    app.push_screen(ToolApprovalModal(call, McpTool("demo", "add", "Add two integers."), "round 1/8"))


# -- modals ------------------------------------------------------------------------------------------------------


def opener(mode: str, open_it: Callable[[LlmTuiApp, Any], object]) -> Keyed:
    """Open a modal from `mode`'s screen and mark it as the state's own."""

    async def open_modal(pilot: Pilot[int]) -> None:
        app = shell(pilot)
        if app.current_mode != mode:
            await app.switch_mode(mode)
        base = screen_of(app, mode)
        before = app.screen
        open_it(app, base)
        await until(pilot, lambda: app.screen is not before, f"the modal over {mode}")
        await pilot.pause()
        mark(app.screen)

    return open_modal


def catalog_row(app: LlmTuiApp, screen: Any, kind: Callable[[Any], bool]) -> None:
    """Put the catalog's cursor on the first row of a kind."""
    rows = screen.table.rows
    screen.table.cursor = next(i for i, row in enumerate(rows) if kind(row))


def launch_from_catalog(kind: Callable[[Any], bool]) -> Callable[[LlmTuiApp, Any], object]:
    """Enter on a catalog row: the launch dialog."""

    def open_it(app: LlmTuiApp, screen: Any) -> None:
        catalog_row(app, screen, kind)
        screen.action_launch()

    return open_it


async def catalog_listed(pilot: Pilot[int], env: Env) -> None:
    """The catalog's rows are shown."""
    app = shell(pilot)
    if app.current_mode != "catalog":
        await app.switch_mode("catalog")
    screen = screen_of(app, "catalog")
    await until(pilot, lambda: len(screen.table.rows) > 5, "the catalog rows")


def without_engines(env: Env) -> None:
    """Pretend no engine is installed (the launch dialog of a user who installed no extra)."""
    env.monkeypatch.setattr(registry, "is_installed", lambda name: False)


async def catalog_without_engines(pilot: Pilot[int], env: Env) -> None:
    """The catalog listed while neither llama.cpp nor transformers is installed."""
    without_engines(env)
    await catalog_listed(pilot, env)


async def catalog_without_transformers(pilot: Pilot[int], env: Env) -> None:
    """The catalog listed while transformers is not installed."""
    without_transformers(env)
    await catalog_listed(pilot, env)


def _confirm(app: LlmTuiApp, screen: Any) -> None:
    from tui.screens.modals.confirm import ConfirmModal

    app.push_screen(ConfirmModal("Delete the chat “Name three colours.” and all its messages?"))


def _palette(app: LlmTuiApp, screen: Any) -> None:
    app.action_command_palette()


def fleet_app(env: Env) -> LlmTuiApp:
    """The fleet screen over canned hosts of every kind and state (up, busy with a queue, vLLM, down); their URLs
    are closed loopback ports, so what a key sends there is refused, as from a host that went away."""
    from dataclasses import replace

    from tests.tui.fleet_views import MEMBERS, use_canned_fleet

    use_canned_fleet(env.monkeypatch)
    app = app_for(env, mode="fleet", launch=True)
    app.runtime.config = replace(app.runtime.config, fleet=MEMBERS)
    return app


async def fleet_polled(pilot: Pilot[int], env: Env) -> None:
    await model_ready(pilot)
    await until(pilot, lambda: len(screen_of(pilot.app, "fleet").views) == 5, "the first poll")  # type: ignore[arg-type]


def _host_models(app: LlmTuiApp, screen: Any) -> None:
    """The launch picker of another host (gpu-a)."""
    screen.table.move_cursor(row=screen.table.keys.index("h:gpu-a"))
    screen.action_launch_new()


def tune_app(env: Env) -> LlmTuiApp:
    """The Tune screen over two stored runs: a finished one with a curve and a stopped one (resumable)."""
    from tests.tui.test_tune_screen import store_run

    app = app_for(env, mode="tune", launch=False)
    config = app.runtime.config
    store_run(app.runtime.store, config, "finished-run", 20, "finished", adapter_path=config.data_dir / "adapter")
    store_run(app.runtime.store, config, "stopped-run", 6, "stopped")
    return app


async def tune_listed(pilot: Pilot[int], env: Env) -> None:
    await until(pilot, lambda: len(screen_of(pilot.app, "tune").views) == 2, "the stored runs")  # type: ignore[arg-type]


def evaluate_app(env: Env) -> LlmTuiApp:
    """The Evaluate screen with a model running (so `n` opens its dialog) and two saved runs to compare."""
    from tests.tui.test_eval_screen import report

    app = app_for(env, mode="evaluate", launch=True)
    app.runtime.store.evals.save(report("base", [True, False, True, False, True, True]))
    app.runtime.store.evals.save(report("tuned", [True, True, True, False, True, True]))
    return app


async def evaluate_listed(pilot: Pilot[int], env: Env) -> None:
    await model_ready(pilot)
    await until(pilot, lambda: len(screen_of(pilot.app, "evaluate").reports) == 2, "the saved runs")  # type: ignore[arg-type]


def _ready_app(mode: str, engine: Callable[[], FakeEngine] | None = None) -> Callable[[Env], LlmTuiApp]:
    return lambda env: app_for(env, mode=mode, launch=True, engine=engine() if engine else None)


def _idle_app(mode: str) -> Callable[[Env], LlmTuiApp]:
    return lambda env: app_for(env, mode=mode, launch=False)


async def _ready(pilot: Pilot[int], env: Env) -> None:
    await model_ready(pilot)


MODES = ("chat", "catalog", "gauges", "instances", "downloads", "embeddings", "compare", "settings")
"""The app's eight screens (F1-F8)."""


def _screens() -> list[State]:
    states: list[State] = []
    for mode in MODES:
        if mode != "settings":  # settings is swept with an invalid field (below): no model changes it
            states.append(State(f"{mode}/no-model", mode, _idle_app(mode)))
        if mode not in ("settings", "downloads"):  # neither shows instances
            setup = one_exchange if mode == "chat" else _ready
            states.append(State(f"{mode}/ready", mode, _ready_app(mode), setup))
    states.append(State("chat/editing", "chat", _ready_app("chat"), editing))
    for mode in ("chat", "instances", "gauges"):
        states.append(
            State(f"{mode}/streaming", mode, _ready_app(mode, streaming_engine), streaming, keep=keep_streaming)
        )
    return states


def _special() -> list[State]:
    return [
        State("catalog/every-kind-of-row", "catalog", _idle_app("catalog"), catalog_without_transformers),
        State("downloads/every-status", "downloads", _idle_app("downloads"), every_download_status),
        State(
            "compare/running",
            "compare",
            lambda env: compare_app(env, held=True),
            compare_run,
            keep=keep_compare_running,
        ),
        State("compare/finished", "compare", lambda env: compare_app(env, held=False), compare_finished),
        State("settings/invalid-field", "settings", settings_app, invalid_setting),
        State("fleet/every-kind-of-row", "fleet", fleet_app, fleet_polled),
        State("tune/two-runs", "tune", tune_app, tune_listed),
        State("evaluate/two-runs", "evaluate", evaluate_app, evaluate_listed),
    ]


def _modals() -> list[State]:
    from tui.screens.modals.log_view import LogModal  # noqa: F401  (the log view must import)

    def show_log(app: LlmTuiApp, screen: Any) -> None:
        screen.action_show_log()

    return [
        State(
            "launch-dialog/local-gguf",
            "catalog",
            _idle_app("catalog"),
            catalog_listed,
            open=opener(
                "catalog",
                launch_from_catalog(lambda r: r.source == "local" and r.status == "ok" and r.format == "gguf"),
            ),
        ),
        State(
            "launch-dialog/engine-missing",
            "catalog",
            _idle_app("catalog"),
            catalog_without_engines,
            open=opener(
                "catalog",
                launch_from_catalog(lambda r: r.source == "local" and r.status == "ok" and r.format == "gguf"),
            ),
        ),
        State("confirm", "chat", _ready_app("chat"), one_exchange, open=opener("chat", _confirm)),
        State(
            "model-picker",
            "chat",
            _ready_app("chat"),
            _ready,
            open=opener("chat", lambda app, s: s.action_pick_model()),
        ),
        State(
            "params", "chat", _ready_app("chat"), one_exchange, open=opener("chat", lambda app, s: s.action_settings())
        ),
        State(
            "text-prompt",
            "downloads",
            _idle_app("downloads"),
            None,
            open=opener("downloads", lambda a, s: s.action_add()),
        ),
        State("log-view", "instances", _ready_app("instances"), _ready, open=opener("instances", show_log)),
        State(
            "endpoint-edit",
            "settings",
            settings_app,
            None,
            open=opener("settings", lambda app, s: s.action_add_endpoint()),
        ),
        State(
            "compare-runs",
            "compare",
            lambda env: compare_app(env, held=False),
            compare_finished,
            open=opener("compare", lambda app, s: s.action_open()),
        ),
        State("command-palette", "chat", _ready_app("chat"), _ready, open=opener("chat", _palette)),
        State("tools-picker", "chat", _ready_app("chat"), _ready, open=opener("chat", lambda a, s: s.action_tools())),
        State("tool-approval", "chat", _ready_app("chat"), _ready, open=opener("chat", _approval)),
        State("preset-picker", "chat", presets_app, _ready, open=opener("chat", lambda a, s: s.action_preset())),
        State("host-models", "fleet", fleet_app, fleet_polled, open=opener("fleet", _host_models)),
        State("tune-new", "tune", tune_app, tune_listed, open=opener("tune", lambda a, s: s.action_new_run())),
        State(
            "eval-new",
            "evaluate",
            evaluate_app,
            evaluate_listed,
            open=opener("evaluate", lambda a, s: s.action_new_run()),
        ),
    ]


def _hub() -> list[State]:
    from tests.tui.sweep_hub import hub_states  # it imports this module

    return hub_states()


STATES = [*_screens(), *_special(), *_modals(), *_hub()]
"""Every screen (F1-F8) with no model and with one ready, streaming where it shows, the special states, every modal
and the command palette, and the Hub search and files screens pushed over the catalog."""


def widget_label(widget: object) -> str:
    """Widget#id (or its class), as a failure message names it."""
    widget_id = getattr(widget, "id", None)
    return f"{type(widget).__name__}#{widget_id}" if widget_id else type(widget).__name__
