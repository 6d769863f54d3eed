"""What the chat asks of the active instance's engine before it sends: can it see images, follow a schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engines.errors import LlmTuiError
from engines.types import Capability

if TYPE_CHECKING:
    from engines.adapters.base import Engine
    from tui.runtime import Runtime


def active_engine(runtime: Runtime) -> Engine | None:
    """The active instance's engine, or None when no instance is active (or it has just gone)."""
    from engines.errors import InstanceNotFound

    active = runtime.active
    if active is None:
        return None
    try:
        return runtime.manager.engine_of(active.run_id)
    except InstanceNotFound:
        return None


def refuse_images(runtime: Runtime, images: list[Path]) -> str | None:
    """Why these images cannot go out (unreadable, not an image, too big, an engine that cannot see), or None."""
    from engines.images import read_image

    try:
        for path in images:
            read_image(path)
    except LlmTuiError as exc:
        return str(exc)
    engine = active_engine(runtime)
    if engine is None or engine.supports(Capability.VISION):
        return None
    return f"the {engine.name} engine cannot see images"


def cannot_follow_schemas(runtime: Runtime) -> str | None:
    """The active engine's name when it cannot follow a JSON schema (the switch is then off limits)."""
    engine = active_engine(runtime)
    return None if engine is None or engine.supports(Capability.JSON_SCHEMA) else engine.name
