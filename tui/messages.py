"""Messages posted from worker threads to the UI (post_message is thread-safe and never blocks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from engines.admission import Admission
    from engines.downloads.tasks import DownloadTask
    from engines.launch import Launched
    from engines.types import LaunchOptions
    from tui.runtime import ActiveModel


class ModelLaunched(Message):
    """A model finished loading and is now the active instance."""

    def __init__(self, launched: Launched) -> None:
        super().__init__()
        self.launched = launched


class LaunchFailed(Message):
    """Loading a model failed; `error` is the text to show."""

    def __init__(self, ref: str, error: str) -> None:
        super().__init__()
        self.ref = ref
        self.error = error


class LaunchRefused(Message):
    """Admission refused a launch; `admission` holds the numbers and the idle instances it could unload."""

    def __init__(self, ref: str, engine: str | None, options: LaunchOptions | None, admission: Admission) -> None:
        super().__init__()
        self.ref = ref
        self.engine = engine
        self.options = options
        self.admission = admission


class LaunchProgress(Message):
    """Progress of preparing a model file (bytes done of total)."""

    def __init__(self, ref: str, done: int, total: int) -> None:
        super().__init__()
        self.ref = ref
        self.done = done
        self.total = total


class DownloadFinished(Message):
    """A download ended: completed (its file is in place) or failed (`task.error` says why)."""

    def __init__(self, task: DownloadTask) -> None:
        super().__init__()
        self.task = task


class ApiChanged(Message):
    """The API server started (`url`), stopped (neither), or could not start (`error`)."""

    def __init__(self, url: str | None, error: str | None = None) -> None:
        super().__init__()
        self.url = url
        self.error = error


class ActiveReplaced(Message):
    """The active instance (`old`) stopped or failed; `new` is active now, or None when no other one was ready."""

    def __init__(self, old: ActiveModel, new: ActiveModel | None) -> None:
        super().__init__()
        self.old = old
        self.new = new
