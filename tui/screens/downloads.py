"""The downloads screen: the queue with progress, speed, ETA and status; pause, resume, cancel, retry, add.

Tasks live in SQLite (a restart brings interrupted ones back paused); the
table is re-read when the queue says a task changed (a running task's
progress, with its speed, is written about once a second, so no timer polls),
and when the screen is shown again. `a` adds a file
(`org/repo file.gguf` or a URL), `p` pauses, `r` resumes or retries, `c`
cancels (asking whether to delete the partial file), `x` clears finished ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Footer, Header, Static

from engines.catalog.fit import human_bytes, human_duration
from engines.downloads.tasks import DownloadTask, TaskStatus
from engines.errors import LlmTuiError
from tui.screens.app_screen import AppScreen
from tui.widgets.live_table import LiveTable
from tui.widgets.screen_bar import ScreenBar

COLUMNS = ("ID", "File", "To", "Status", "Size", "Speed", "ETA")
FIXED_WIDTH = (4 + 2) + (6 + 2) + (11 + 2) + (7 + 2) + (8 + 2) + (6 + 2) + 2 + 2
"""Cells every column but File takes at most (ID, To, Status, Size, Speed, ETA, each with DataTable's padding of
1 each side), the scrollbar and File's own padding: File gets the rest, so Speed and ETA stay on screen at 80."""
BAR_WIDTH = 6
STATUS_COLOUR = {
    TaskStatus.DOWNLOADING: "accent",
    TaskStatus.COMPLETED: "success",
    TaskStatus.FAILED: "error",
    TaskStatus.PAUSED: "warning",
}


def progress_bar(task: DownloadTask) -> str:
    """▰▰▰▱▱▱ 48% (or the bytes so far when the size is unknown)."""
    fraction = task.fraction
    if fraction is None:
        return human_bytes(task.done_bytes) if task.done_bytes else "-"
    filled = round(min(1.0, fraction) * BAR_WIDTH)
    return "▰" * filled + "▱" * (BAR_WIDTH - filled) + f" {fraction:4.0%}"


def status_text(task: DownloadTask) -> str:
    """The Status column: a bar while downloading, how far a paused one got, and whether a finished file was
    checked against its sha256 ("verified") or only its size ("completed")."""
    if task.status is TaskStatus.DOWNLOADING:
        return progress_bar(task)
    if task.status is TaskStatus.PAUSED and task.fraction is not None:
        return f"paused {task.fraction:.0%}"
    if task.status is TaskStatus.PENDING:
        return "queued"
    if task.status is TaskStatus.COMPLETED and task.sha256 and task.source != "ollama":
        return "verified"
    return task.status.value


def destination(task: DownloadTask, models_dir: Path) -> str:
    """The To column: the models directory, the Hugging Face cache, the Ollama daemon, or another folder."""
    if task.source == "ollama":
        return "ollama"
    if task.cache_ref is not None:
        return "cache"
    return "models" if task.target_path.is_relative_to(models_dir) else "folder"


def elide(text: str, width: int) -> str:
    """`text` in `width` cells, its middle replaced by "…" (a file name keeps its start and its quant/suffix)."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "…" + text[len(text) - tail :]


def eta(task: DownloadTask) -> str:
    if task.status is not TaskStatus.DOWNLOADING or not task.speed_bps or not task.total_bytes:
        return "-"
    return human_duration(max(0, task.total_bytes - task.done_bytes) / task.speed_bps)


@dataclass(frozen=True, slots=True)
class Addition:
    """What the `a` prompt asked for."""

    source: str
    """hf (one file) | hf-repo (a listing first: a whole repo, globs, or into the cache) | ollama | url."""
    repo: str | None = None
    file: str | None = None
    url: str | None = None
    patterns: tuple[str, ...] = ()
    to_cache: bool = False


ADD_HINT = "org/name [file.gguf | *.safetensors …] [--to cache]   ollama:name:tag   https://…"
ADD_TITLE = (
    "Download: org/name file.gguf (one file), org/name [*.safetensors …] [--to cache] (a repo),"
    " ollama:NAME[:tag] (an Ollama pull) or an https:// URL"
)


def parse_addition(text: str) -> Addition:
    """Read the `a` prompt; ValueError saying what to type otherwise."""
    parts = text.split()
    if len(parts) == 1 and parts[0].lower().startswith("ollama:"):
        from engines.downloads.ollama_source import normalise_name

        try:
            return Addition("ollama", repo=normalise_name(parts[0]))
        except LlmTuiError as exc:
            raise ValueError(str(exc)) from None
    if len(parts) == 1 and parts[0].startswith(("https://", "http://")):
        return Addition("url", url=parts[0])
    to_cache = parts[-2:] == ["--to", "cache"]
    parts = parts[:-2] if to_cache or parts[-2:] == ["--to", "models"] else parts
    if not parts or parts[0].count("/") != 1 or any(p.startswith("-") for p in parts):
        raise ValueError(f"type one of: {ADD_HINT}")
    repo, names = parts[0], tuple(parts[1:])
    if len(names) == 1 and not to_cache and not any(c in names[0] for c in "*?["):
        return Addition("hf", repo=repo, file=names[0])
    return Addition("hf-repo", repo=repo, patterns=names, to_cache=to_cache)


class DownloadsScreen(AppScreen):
    """The download queue."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add"),
        Binding("p", "pause", "Pause"),
        Binding("r", "resume", "Resume/retry"),
        Binding("c", "cancel", "Cancel"),
        Binding("x", "clear", "Clear done", tooltip="Forget completed, failed and cancelled downloads"),
    ]
    DEFAULT_CSS = """
    #downloads-status { height: 1; padding: 0 1; color: $text-muted; background: $boost; }
    #downloads-table { height: 1fr; }
    #downloads-detail { height: auto; max-height: 4; padding: 0 1; border-top: solid $primary-muted; }
    """

    class QueueChanged(Message):
        """The download queue changed a task (posted from whichever thread changed it)."""

    def __init__(self) -> None:
        super().__init__(name="downloads")
        self._shown: list[DownloadTask] = []
        self._redraw_posted = False
        """A QueueChanged is on its way: further changes before it is handled ride on it."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="downloads-status")
        yield LiveTable(COLUMNS, id="downloads-table")
        yield Static("", id="downloads-detail")
        yield ScreenBar("downloads")
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()
        self.runtime.downloads.on_change = self._queue_changed
        self.refresh_table()

    def _queue_changed(self, task_id: int) -> None:
        # Called on a download's thread (or this one, from add/pause/…): post_message is thread-safe and does not
        # block the transfer the way call_from_thread would (close() joins those threads from the UI thread).
        if not self._redraw_posted:
            self._redraw_posted = True
            self.post_message(self.QueueChanged())

    def on_downloads_screen_queue_changed(self) -> None:
        self._redraw_posted = False  # before reading: a change from now on posts again
        self.refresh_table()

    def on_screen_resume(self) -> None:
        self.refresh_table()  # changes while another screen was shown were not drawn

    @property
    def table(self) -> LiveTable:
        return self.query_one(LiveTable)

    @property
    def selected(self) -> DownloadTask | None:
        row = self.table.cursor_row
        return self._shown[row] if 0 <= row < len(self._shown) else None

    def refresh_table(self) -> None:
        if not self.is_current:
            return
        tasks = self.runtime.downloads.tasks.all()
        colours = self.app.theme_variables
        file_width = max(12, self.app.size.width - FIXED_WIDTH)  # the table spans the screen; known before layout
        models_dir = self.runtime.config.models_dir
        self.table.show([(str(t.id), self._cells(t, colours, file_width, models_dir)) for t in tasks])
        self._shown = tasks
        active = sum(1 for t in tasks if t.status is TaskStatus.DOWNLOADING)
        queued = sum(1 for t in tasks if t.status is TaskStatus.PENDING)
        status = (
            f"{active} downloading · {queued} queued · {len(tasks)} in the list"
            if tasks
            else "Nothing queued: a adds a file, repo, ollama:NAME or URL; d on a catalog row queues it."
        )
        self.query_one("#downloads-status", Static).update(status)
        self._show_detail()

    @staticmethod
    def _cells(
        task: DownloadTask, colours: dict[str, str], file_width: int, models_dir: Path
    ) -> tuple[str | Text, ...]:
        speed = f"{human_bytes(int(task.speed_bps))}/s" if task.speed_bps else "-"
        return (
            str(task.id),
            elide(task.file or task.repo or task.target_path.name, file_width),
            destination(task, models_dir),
            Text(status_text(task), style=colours.get(STATUS_COLOUR.get(task.status, ""), "")),
            human_bytes(task.total_bytes) if task.total_bytes else "-",
            speed,
            eta(task),
        )

    def _show_detail(self) -> None:
        task = self.selected
        lines = []
        if task is not None:
            models_dir = self.runtime.config.models_dir
            where = "the models directory" if task.target_path.parent == models_dir else str(task.target_path.parent)
            if task.source == "ollama":
                where = f"Ollama at {self.runtime.config.ollama_host}"
            elif task.cache_ref is not None:  # target_path is <cache>/models--org--name/blobs/<etag>
                where = f"the Hugging Face cache ({task.target_path.parent.parent.parent}, {task.cache_ref})"
            lines.append(f"{escape(task.label)} → {escape(where)}")
        if task is not None and task.error:
            lines.append(f"[$text-error]{escape(task.error)}[/]")
        elif task is not None and task.status is TaskStatus.COMPLETED and task.source != "ollama":
            size = human_bytes(task.total_bytes) if task.total_bytes else "size unknown"
            check = f"verified (sha256 {task.sha256})" if task.sha256 else "size checked; the server gave no sha256"
            lines.append(f"[$text-success]{size} {check}[/]")
        self.query_one("#downloads-detail", Static).update("\n".join(lines))

    def on_resize(self) -> None:
        # DataTable columns only ever widen: measure them again so the File column gives back room at a smaller size.
        for column in self.table.columns.values():
            column.content_width = column.label.cell_len
        self.table.keys = []  # the next show() rebuilds the rows
        self.refresh_table()

    def on_data_table_row_highlighted(self) -> None:
        self._show_detail()

    # -- actions ------------------------------------------------------------------------------------------

    def _act(self, action: str) -> None:
        task = self.selected
        if task is None:
            return
        queue = self.runtime.downloads
        try:
            if action == "pause":
                queue.pause(task.id)
            else:
                queue.resume(task.id)
        except LlmTuiError as exc:
            self.notify(str(exc), title="Not possible", severity="warning", markup=False)
        self.refresh_table()

    def action_pause(self) -> None:
        self._act("pause")

    def action_resume(self) -> None:
        self._act("resume")

    def action_cancel(self) -> None:
        task = self.selected
        if task is None or task.status in (TaskStatus.COMPLETED, TaskStatus.CANCELLED):
            return
        from tui.screens.modals.confirm import ConfirmModal

        def done(delete: bool | None) -> None:
            if delete is None:  # Esc: the download goes on as it was
                return
            try:
                self.runtime.downloads.cancel(task.id, delete_part=delete)
            except LlmTuiError as exc:
                self.notify(str(exc), title="Not cancelled", severity="warning", markup=False)
            self.refresh_table()

        if task.source == "ollama":  # the daemon keeps its partial blobs; pulling again resumes
            done(False)
            return
        question = (
            f"Cancel {task.label}.\n\nDelete its partial file too? (Keep it to resume later; Esc does not cancel.)"
        )
        self.app.push_screen(ConfirmModal(question, yes="Delete", no="Keep"), done)

    def action_clear(self) -> None:
        count = self.runtime.downloads.clear_finished()
        self.notify(f"Cleared {count} finished download{'s' if count != 1 else ''}.")
        self.refresh_table()

    def action_add(self) -> None:
        from tui.screens.modals.text_prompt import TextPromptModal

        def check(text: str) -> str | None:
            try:
                parse_addition(text)
            except ValueError as exc:
                return str(exc)
            return None

        def done(text: str | None) -> None:
            if text is not None:
                self.queue_addition(parse_addition(text))

        self.app.push_screen(TextPromptModal(ADD_TITLE, placeholder="org/name file.gguf", check=check), done)

    def queue_addition(self, addition: Addition) -> None:
        """Add what the prompt asked for: one file into the models directory at once, an Ollama pull, or (after
        the Hub lists the repo, in a worker) a repo's files."""
        from engines.downloads.names import safe_join
        from engines.downloads.queue import ollama_target

        downloads = self.runtime.downloads
        try:
            if addition.source == "hf-repo":
                from tui.screens.catalog_download import queue_repo

                repo, patterns = addition.repo or "", addition.patterns
                self.notify(f"Asking the Hub which files {repo} holds…", title="Listing", markup=False)
                self.run_worker(lambda: queue_repo(self, repo, patterns, to_cache=addition.to_cache), thread=True)
            elif addition.source == "ollama":
                downloads.add("ollama", ollama_target(addition.repo or ""), repo=addition.repo)
            elif addition.source == "hf":
                target = safe_join(self.runtime.config.models_dir, addition.file or "")
                downloads.add("hf", target, repo=addition.repo, file=addition.file)
            else:
                name = (addition.url or "").rstrip("/").rsplit("/", 1)[-1].split("?")[0]
                downloads.add("url", safe_join(self.runtime.config.models_dir, name), url=addition.url)
        except LlmTuiError as exc:  # an unsafe name, a file already queued
            self.notify(str(exc), title="Not queued", severity="error", markup=False)
        self.refresh_table()
