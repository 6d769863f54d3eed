"""Choosing a compared model: a running instance from the model picker, or a model to launch, looked up off the
UI thread (the catalog scan reads headers) and then given its engine and options in the launch dialog."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from engines.compare.types import CompareModel
from engines.errors import LlmTuiError

if TYPE_CHECKING:
    from engines.catalog.fit import Resources
    from tui.screens.app_screen import AppScreen
    from tui.screens.modals.launch import LaunchChoice, LaunchTarget
    from tui.screens.modals.model_picker import ModelChoice

AddModel = Callable[[CompareModel], None]


def pick_model(screen: AppScreen, add: AddModel) -> None:
    """Open the model picker; `add` receives the running instance chosen, or the model to launch as the launch
    dialog set it up."""
    from tui.screens.modals.model_picker import ModelPickerModal

    runtime = screen.runtime

    def done(choice: ModelChoice | None) -> None:
        if choice is None:
            return
        if choice.run_id is not None:
            try:
                info = runtime.manager.info(choice.run_id)
            except LlmTuiError as exc:
                screen.notify(str(exc), severity="error")
                return
            add(CompareModel(run_id=info.run_id, label=f"{info.model_id} · {info.engine} ({info.run_id})"))
        elif choice.ref is not None:
            ref = choice.ref
            screen.run_worker(lambda: _look_up(screen, ref, add), thread=True, group="compare-target", exclusive=True)

    config = runtime.config
    screen.app.push_screen(ModelPickerModal(runtime.manager.instances(), config.models_dir, dict(config.aliases)), done)


def _look_up(screen: AppScreen, ref: str, add: AddModel) -> None:
    """On a worker thread: what `ref` is and the free memory, then the launch dialog on the UI thread."""
    from tui.screens.modals.launch import launch_target

    try:
        target = launch_target(ref, screen.runtime)
        resources = screen.runtime.resources()
    except LlmTuiError as exc:
        screen.app.call_from_thread(screen.notify, str(exc), title=f"Cannot add {ref}", severity="error", timeout=10)
        return
    screen.app.call_from_thread(_launch_dialog, screen, target, resources, add)


def _launch_dialog(screen: AppScreen, target: LaunchTarget, resources: Resources, add: AddModel) -> None:
    from engines.launch import default_options
    from tui.screens.modals.launch import LaunchModal

    def done(choice: LaunchChoice | None) -> None:
        if choice is not None:
            label = f"{target.name} · {choice.engine}"
            add(CompareModel(ref=choice.ref, engine=choice.engine, options=choice.options, label=label))

    screen.app.push_screen(LaunchModal(target, default_options(screen.runtime.config), resources), done)
