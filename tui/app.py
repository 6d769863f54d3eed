"""The llm-tui application shell: screens by key, the command palette, the active model in the header."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from engines.config.load import Config
from engines.errors import LlmTuiError
from tui.commands import app_commands
from tui.crash_guard import CrashGuard, install
from tui.messages import (
    ActiveReplaced,
    ApiChanged,
    DownloadFinished,
    LaunchFailed,
    LaunchProgress,
    LaunchRefused,
    ModelLaunched,
)
from tui.runtime import Runtime
from tui.screen_list import SCREENS
from tui.screens.app_screen import AppScreen

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from engines.downloads.tasks import DownloadTask
    from engines.types import LaunchOptions
    from tui.runtime import ActiveModel
    from tui.screens.modals.launch import LaunchChoice, LaunchTarget
    from tui.shell import Shell


class LlmTuiApp(App[int]):
    """Find, run, watch and chat with local language models."""

    CSS_PATH = "app.tcss"
    TITLE = "llm-tui"
    MODES = {entry.mode: entry.build for entry in SCREENS}
    BINDINGS = [
        # Shown by each screen's ScreenBar rather than the footer, which keeps the screen's own keys.
        # Priority: a focused text area must not swallow them (TextArea binds F6/F7 to select line/all).
        *(Binding(e.key, f"switch_mode('{e.mode}')", e.label, show=False, priority=True) for e in SCREENS if e.key),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    status_text: reactive[str] = reactive("no model")
    """Active model · engine · state, shown in the header and the chat status line."""
    active_version: reactive[int] = reactive(0)
    """Bumped whenever the active instance changes, so screens can follow it."""

    def __init__(self, runtime: Runtime, *, screen: str = "chat", model: str | None = None) -> None:
        # The first screen is the starting mode itself, not Textual's blank default screen switched away from in
        # on_mount: one screen built and styled before the first frame instead of two (and two CSS re-parses).
        self.DEFAULT_MODE = screen  # type: ignore[misc]
        super().__init__()
        self.runtime = runtime
        self.start_screen = screen
        self.start_model = model
        self.last_input_at = 0.0
        self.downloads_resumed = False
        """The download queue was told to resume (after the first frame)."""
        """When the last key or paste arrived (monotonic seconds)."""
        self.theme = runtime.config.theme if runtime.config.theme in self.available_themes else "textual-dark"
        self.crash_log_path: Path = runtime.config.state_dir / "crash.log"
        """Where the crash guard writes what it caught: the file is absent or empty when nothing was caught."""
        self.crash_guard = CrashGuard(self.crash_log_path, self._say_crash)
        install()

    def _say_crash(self, text: str) -> None:
        self.notify(text, title="Something went wrong", severity="error", timeout=15)

    def _handle_exception(self, error: Exception) -> None:
        """Textual exits the app here; once it runs, the crash guard logs and says it instead (workers, compose,
        layout). Errors before the app runs (its CSS) still end it, as there is nothing to keep running."""
        from textual.worker import WorkerFailed

        if not self._running or self._closing:
            super()._handle_exception(error)
            return
        if isinstance(error, WorkerFailed) and isinstance(error.error, Exception):
            self.crash_guard.catch(error.error, "a worker")
        else:
            self.crash_guard.catch(error, "the app")

    def on_mount(self) -> None:
        self.call_after_refresh(self._after_first_frame)
        self.switch_mode(self.start_screen)
        if self.start_model:
            self.launch_model(self.start_model)
        self.runtime.download_finished = self._download_finished
        self.runtime.active_replaced = self._active_replaced

    def _after_first_frame(self) -> None:
        # What start-up made lives as long as the app: frozen, later collections (during a stream) skip it.
        gc.freeze()
        gc.enable()  # the entry point turns collection off while the app starts
        self.resume_downloads()  # a thread that would compete with the first paint for the GIL
        self.downloads_resumed = True

    def _active_replaced(self, old: ActiveModel, new: ActiveModel | None) -> None:
        self.post_message(ActiveReplaced(old, new))  # from the thread that stopped the instance

    def _download_finished(self, task: DownloadTask) -> None:
        self.post_message(DownloadFinished(task))  # from the download's thread

    @work(thread=True, group="downloads")
    def resume_downloads(self) -> None:
        """Pick up the download queue a previous run left: queued files start, interrupted ones are said."""
        try:
            recovered = self.runtime.resume_downloads()
        except LlmTuiError as exc:
            self.notify(f"the download queue could not be opened: {exc}", severity="error")
            return
        if not recovered:
            return
        files = f"{len(recovered)} download{'s' if len(recovered) > 1 else ''}"
        if self.runtime.config.downloads_resume_on_start:
            self.notify(f"resuming {files} the last run left unfinished")
        else:
            verb = "are" if len(recovered) > 1 else "is"
            self.notify(f"{files} the last run left unfinished {verb} paused: F3, then r to resume", timeout=10)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from app_commands(self)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.Paste)):
            self.last_input_at = time.monotonic()  # streaming frames yield to typing (MessageView)
        await super().on_event(event)

    def watch_status_text(self, text: str) -> None:
        self.sub_title = text

    @work(thread=True, exclusive=True, group="launch")
    def launch_model(
        self, ref: str, engine: str | None = None, options: LaunchOptions | None = None, unload: Sequence[str] = ()
    ) -> None:
        """Load a model in a worker thread (after the memory check) and make it the active instance."""
        from engines.admission import NotEnoughMemory

        def progress(done: int, total: int) -> None:
            self.post_message(LaunchProgress(ref, done, total))

        self.post_message(LaunchProgress(ref, 0, 0))
        try:
            launched = self.runtime.launch(ref, engine=engine, options=options, progress=progress, unload=unload)
        except NotEnoughMemory as exc:
            self.post_message(LaunchRefused(ref, engine, options, exc.admission))
        except LlmTuiError as exc:
            self.post_message(LaunchFailed(ref, str(exc)))
        except Exception as exc:  # a bug or a native failure must not take the app down
            self.post_message(LaunchFailed(ref, f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(ModelLaunched(launched))

    @work(thread=True, exclusive=True, group="api")
    def toggle_api(self) -> None:
        """Start the OpenAI-compatible API over the running instances, or stop it (binding and stopping block)."""
        if self.runtime.api is not None:
            self.runtime.stop_api()
            self.post_message(ApiChanged(None))
            return
        try:
            server = self.runtime.start_api()
        except LlmTuiError as exc:
            self.post_message(ApiChanged(None, str(exc)))
        else:
            self.post_message(ApiChanged(server.url))

    def action_toggle_api(self) -> None:
        self.toggle_api()

    def on_api_changed(self, message: ApiChanged) -> None:
        if message.error is not None:
            self.notify(message.error, title="API server not started", severity="error", timeout=15)
        elif message.url is not None:
            self.notify(f"serving the running models at {message.url}", title="API server on", timeout=6)
        else:
            self.notify("API server stopped", timeout=4)
        self.refresh_status()
        if isinstance(self.screen, AppScreen):
            self.screen.api_changed()

    def on_download_finished(self, message: DownloadFinished) -> None:
        """Say so; a completed model shows in the catalog at once (it rescans when it is the screen shown)."""
        task = message.task
        name = task.file or task.target_path.name
        if task.error is not None:
            self.notify(f"download of {name} failed: {task.error}", severity="error", timeout=10)
        else:
            self.notify(f"downloaded {name}")
        if isinstance(self.screen, AppScreen):
            self.screen.download_finished(task)

    def on_launch_refused(self, message: LaunchRefused) -> None:
        """Offer to unload the least recently used idle instances that make room, or say why it cannot fit."""
        self.refresh_status()
        admission = message.admission
        if not admission.unload_run_ids:
            self.notify(admission.reason, title=f"Not launched: {message.ref}", severity="error", timeout=20)
            return
        from tui.screens.modals.confirm import ConfirmModal

        def done(yes: bool | None) -> None:
            if yes:
                self.launch_model(message.ref, message.engine, message.options, admission.unload_run_ids)

        question = f"{admission.reason}\n\nUnload and launch {message.ref}?"
        self.push_screen(ConfirmModal(question, yes="Unload and launch", no="Cancel"), done)

    def open_launch_dialog(self, target: LaunchTarget) -> None:
        """Ask how to launch `target` (engine, device, context…, with a live fit check), then launch it."""
        from engines.launch import default_options
        from tui.screens.modals.launch import LaunchModal

        def done(choice: LaunchChoice | None) -> None:
            if choice is not None:
                self.launch_model(choice.ref, choice.engine, choice.options)
                self.switch_mode("chat")

        base = default_options(self.runtime.config)
        self.push_screen(LaunchModal(target, base, self.runtime.resources()), done)

    def on_launch_progress(self, message: LaunchProgress) -> None:
        if message.total:
            self.status_text = f"preparing {message.ref}: {message.done * 100 // message.total}%"
        else:
            self.status_text = f"loading {message.ref}…"

    def on_model_launched(self, message: ModelLaunched) -> None:
        launched = message.launched
        self.notify(f"{launched.spec.id} is ready on {launched.engine}", title="Model loaded", timeout=4)
        self.refresh_status()
        self.active_version += 1

    def on_launch_failed(self, message: LaunchFailed) -> None:
        self.refresh_status()
        self.notify(message.error, title=f"Could not load {message.ref}", severity="error", timeout=15)

    def on_active_replaced(self, message: ActiveReplaced) -> None:
        """The chat's instance stopped or failed: say which one it uses now."""
        old, new = message.old, message.new
        if new is not None:
            self.notify(
                f"{old.model_id} ({old.run_id}) stopped; the chat now uses {new.model_id} ({new.run_id})",
                title="Active model",
                timeout=8,
            )
        self.refresh_status()
        self.active_version += 1

    @work(thread=True, group="stop-instance")
    def stop_instance(self, run_id: str) -> None:
        """Stop an instance (a load in progress is cancelled; blocking, hence a worker); if the chat used it, the
        most recently used ready instance takes its place (Runtime.replace_gone_active)."""
        try:
            self.runtime.manager.stop(run_id, timeout=30)
        except LlmTuiError as exc:  # stopped meanwhile (idle unload, F4)
            self.notify(str(exc), severity="warning")
        self.call_from_thread(self.refresh_status)

    def refresh_status(self) -> None:
        """Show the active instance's model, engine and state."""
        self.runtime.replace_gone_active()  # one that failed gives way to a ready one (a stop does so by itself)
        info = self.runtime.active_info()
        if info is None:
            text = "no model · ctrl+l to pick one"
        else:
            text = f"{info.model_id} · {info.engine} · {info.state.value}"
        api = self.runtime.api
        self.status_text = f"{text} · API {api.url}" if api is not None else text

    def set_active_instance(self, run_id: str) -> None:
        """Point the chat at an already running instance."""
        from engines.errors import InstanceNotFound
        from tui.runtime import ActiveModel

        try:
            info = self.runtime.manager.info(run_id)
        except InstanceNotFound:  # picked from a list shown before it stopped (idle unload, a stop, a crash)
            self.notify(f"{run_id} is no longer running; pick it again to launch it.", severity="warning")
            return
        self.runtime.set_active(ActiveModel(info.run_id, info.model_id, info.engine))
        self.refresh_status()
        self.active_version += 1

    def action_toggle_dark(self) -> None:
        """Switch between the light and dark theme."""
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"


if TYPE_CHECKING:
    _APP_IS_A_SHELL: type[Shell] = LlmTuiApp  # mypy checks here that the app gives screens all that Shell promises


def run(args: argparse.Namespace, config: Config) -> int:
    """Start the app with the command line's --screen and --model."""
    runtime = Runtime(config, env=os.environ)
    try:
        app = LlmTuiApp(runtime, screen=args.screen or "chat", model=args.model)
    except BaseException:
        runtime.close()
        raise

    async def main() -> None:
        try:
            await app.run_async()
        finally:
            # Inside the loop, before asyncio.run waits for the thread workers: stopping the instances ends what
            # they wait on (an embedding queued behind a long reply waited up to 300 s, and the quit with it).
            runtime.close()

    asyncio.run(main())
    return app.return_code or 0
