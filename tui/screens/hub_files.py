"""The Hub files screen: a repo's models (a GGUF, a split GGUF, a safetensors set) and whether each fits here.

A thread worker lists the repo (pinned to a commit) and then reads every model's real header remotely
(engines/hub/remote_fit.py), posting each verdict as it lands. `+`/`-` check every fit again at another context
size from the headers already read (no request); `d` queues the highlighted model's files pinned to the listing's
commit; Enter launches it when its files are here, or offers to download it.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Footer, Header, Static
from textual.widgets.data_table import ColumnKey, RowKey

from engines.catalog.fit import Resources, human_bytes, human_params
from engines.catalog.listing import with_fit
from engines.hub.errors import HubError
from engines.hub.model_files import ModelFile
from engines.hub.remote_fit import FileFit, HubSource, best_that_fits, fit_repo, repo_models
from tui.screens.app_screen import AppScreen
from tui.screens.catalog import MAX_CTX, MIN_CTX
from tui.screens.downloads import elide
from tui.screens.hub_files_text import (
    BEST,
    context_text,
    detail_lines,
    model_label,
    plural,
    reason_text,
    token_hint,
    verdict_text,
)
from tui.screens.hub_get import launch_target, local_files, queue_model
from tui.screens.hub_search import hub_access
from tui.widgets.live_table import LiveTable
from tui.widgets.screen_bar import ScreenBar

if TYPE_CHECKING:
    from engines.downloads.hf_repo import RepoListing

COLUMNS = ("Model", "Quant", "Size", "Params", "Ctx", "Fit")
FIXED_WIDTH = (7 + 2) + (8 + 2) + (6 + 2) + (5 + 2) + (17 + 2) + 2 + 2
"""Cells every column but Model takes (with DataTable's padding), the scrollbar and Model's own padding."""


class FilesTable(LiveTable):
    """The repo's models; the star marks the largest that fits entirely on the GPU (in RAM without one)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "screen.choose", "Launch", key_display="⏎"),
        Binding("d", "screen.download", "Download"),
        Binding("plus,equals_sign", "screen.context(2)", "Ctx", key_display="+-", tooltip="Context size for the fit"),
        Binding("minus", "screen.context(0.5)", "Context ÷2", show=False),
    ]

    def update_cell(
        self, row_key: RowKey | str, column_key: ColumnKey | str, value: str | Text, *, update_width: bool = False
    ) -> None:
        # A verdict that lands is longer than "reading header…": its column widens to show all of it.
        super().update_cell(row_key, column_key, value, update_width=True)


class HubFilesScreen(AppScreen):
    """One Hub repo's models with an exact fit check for each, before anything is downloaded."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
    ]
    DEFAULT_CSS = """
    #files-title { height: auto; padding: 0 1; background: $boost; }
    #files-status { height: auto; padding: 0 1; color: $text-muted; background: $boost; }
    #files-table { height: 1fr; }
    #files-reason { height: auto; padding: 0 1; }
    #files-detail { height: auto; padding: 0 1; border-top: solid $primary-muted; color: $text-muted; }
    """

    class Listed(Message):
        """The repo's listing and its models (before any header is read)."""

        def __init__(self, load: int, listing: RepoListing, models: list[ModelFile], resources: Resources) -> None:
            super().__init__()
            self.load, self.listing, self.models, self.resources = load, listing, models, resources

    class Landed(Message):
        """One model's header was read (or could not be), checked at `n_ctx` (from a header-reading thread)."""

        def __init__(self, load: int, index: int, result: FileFit, n_ctx: int) -> None:
            super().__init__()
            self.load, self.index, self.result, self.n_ctx = load, index, result, n_ctx

    class Note(Message):
        """A status to show: a back-off from HTTP 429, or why the repo could not be listed (`failed`)."""

        def __init__(self, load: int, text: str, *, failed: bool = False) -> None:
            super().__init__()
            self.load, self.text, self.failed = load, text, failed

    def __init__(self, repo: str, *, gated: str | None = None, n_ctx: int | None = None) -> None:
        super().__init__()
        self.repo = repo
        self.gated = gated
        self.n_ctx = n_ctx or 0
        self.listing: RepoListing | None = None
        self.models: list[ModelFile] = []
        self.fits: list[FileFit | None] = []
        self.resources: Resources | None = None
        self.best: int | None = None
        self.why_not_next: str | None = None
        self.error: str | None = None
        self._load = 0
        self._cancel = threading.Event()
        self._showed_best = False
        self._refused = False
        """Every header was refused for want of a (good) token: the line under the table says so once."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="files-title")
        yield Static("", id="files-status")
        yield FilesTable(COLUMNS, id="files-table")
        yield Static("", id="files-reason")
        yield Static("", id="files-detail")
        yield ScreenBar("catalog")
        yield Footer()

    def on_mount(self) -> None:
        self.n_ctx = self.n_ctx or self.runtime.config.n_ctx
        self.table.focus()
        self._show_title()
        self._say(f"Listing {self.repo} on the Hub…")
        endpoint, token = hub_access(self.runtime.config)
        self._cancel = threading.Event()
        self._load += 1
        source = HubSource(endpoint, token, self.runtime.config.cache_dir)
        self._read(self._load, source, self.n_ctx, self._cancel)

    def on_unmount(self) -> None:
        self._cancel.set()  # headers not yet asked for are not asked for

    @property
    def table(self) -> FilesTable:
        return self.query_one(FilesTable)

    @property
    def current(self) -> int | None:
        """The index of the model under the cursor."""
        row = self.table.cursor_row
        return row if self.models and 0 <= row < len(self.models) else None

    def _say(self, text: str) -> None:
        self.query_one("#files-status", Static).update(Text(text))

    # -- reading ------------------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="hub-files")
    def _read(self, load: int, source: HubSource, n_ctx: int, cancel: threading.Event) -> None:
        """List the repo, then read every model's header in parallel; each verdict is posted as it lands."""
        try:
            resources = self.runtime.resources()
            listing, models = repo_models(self.repo, source)
        except HubError as exc:
            self.post_message(self.Note(load, str(exc), failed=True))
            return
        except Exception as exc:  # a bug or an unforeseen answer is said, never a crash
            self.post_message(self.Note(load, f"listing failed: {type(exc).__name__}: {exc}", failed=True))
            return
        self.post_message(self.Listed(load, listing, models, resources))
        if not models:
            return

        def landed(index: int, result: FileFit) -> None:
            self.post_message(self.Landed(load, index, result, n_ctx))

        def waiting(seconds: float, why: str) -> None:
            self.post_message(self.Note(load, f"{why}: retrying in {seconds:.0f} s…"))

        try:
            fit_repo(listing, models, source, resources, n_ctx=n_ctx, on_result=landed, on_wait=waiting, cancel=cancel)
        except Exception as exc:  # fit_model says a bad file in its result; anything else is said here
            self.post_message(self.Note(load, f"reading headers failed: {type(exc).__name__}: {exc}", failed=True))

    def on_hub_files_screen_listed(self, message: Listed) -> None:
        if message.load != self._load:
            return
        self.listing, self.models, self.resources = message.listing, message.models, message.resources
        self.fits = [None] * len(self.models)
        self._show_title()
        self._redraw()

    def on_hub_files_screen_landed(self, message: Landed) -> None:
        if message.load != self._load or not 0 <= message.index < len(self.fits):
            return
        result = message.result
        if result.row is not None and message.n_ctx != self.n_ctx and self.resources is not None:
            result = replace(result, row=with_fit(result.row, self.resources, self.n_ctx))  # `+` while it was read
        self.fits[message.index] = result
        self._redraw()

    def on_hub_files_screen_note(self, message: Note) -> None:
        if message.load != self._load:
            return
        if message.failed:
            self.error = message.text
        self._say(message.text)

    # -- drawing ------------------------------------------------------------------------------------------------

    def _show_title(self) -> None:
        parts = [self.repo]
        if self.listing is not None:
            parts.append(plural(len(self.models), "model"))
        parts.append(f"fit at ctx {self.n_ctx:,} (+/-)")
        if self.gated and self.runtime.config.hf_token is None:
            parts.append("gated: needs hf_token")
        self.query_one("#files-title", Static).update(Text(" · ".join(parts)))

    def _redraw(self) -> None:
        """The rows, the progress, the best and the reason, and the highlighted model's detail."""
        read = sum(1 for f in self.fits if f is not None)
        done = read == len(self.fits)
        self.best, self.why_not_next = None, None
        if done and self.resources is not None:
            landed = [f for f in self.fits if f is not None]
            self.best, self.why_not_next = best_that_fits(landed, self.resources, self.n_ctx)
        colours = self.app.theme_variables
        width = max(12, self.app.size.width - FIXED_WIDTH)
        rows = []
        for index, (model, result) in enumerate(zip(self.models, self.fits, strict=True)):
            words, kind = verdict_text(result)
            row = result.row if result is not None else None
            name = (BEST if index == self.best else "") + model_label(model)
            cells = (
                elide(name, width),
                (row.quantization if row else None) or model.quantization_hint or "-",
                human_bytes(model.size_bytes) if model.size_bytes else "-",
                human_params(row.params) if row else "-",
                context_text(row.context_length) if row else "-",
                Text(words, style="dim" if kind == "muted" else colours.get(f"text-{kind}", "")),
            )
            rows.append((model.name, cells))
        self.table.show(rows)
        if done and self.best is not None and not self._showed_best:
            self._showed_best = True  # once: a later +/- leaves the cursor where the user put it
            if self.table.cursor_row == 0:  # not moved while headers were read: show the best and its detail
                self.table.move_cursor(row=self.best)
        if self.error is None:
            if not self.models and self.listing is not None:
                self._say(f"{self.repo} holds no GGUF or safetensors model at this commit.")
            elif self.models:
                self._say(f"{read}/{len(self.fits)} headers read" + ("" if done else "…"))
        self._show_reason(done)
        self._show_detail()

    def _show_reason(self, done: bool) -> None:
        # Every header refused for want of a token (or a good one): that is what to fix, said once for every row.
        self._refused = bool(self.fits) and all(f is not None and f.error_kind == "auth" for f in self.fits)
        if self._refused:
            text, style = token_hint(self.repo, self.runtime.config.hf_token is not None), "text-error"
        elif done:
            text, style = reason_text(self.models, self.best, self.why_not_next, self.resources)
        else:
            text, style = "", ""
        self.query_one("#files-reason", Static).update(Text(text, style=self.app.theme_variables.get(style, "")))

    def on_data_table_row_highlighted(self) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        index = self.current
        lines: list[str] = []
        if index is not None and self.listing is not None:
            lines = detail_lines(
                self.models[index],
                self.fits[index],
                n_ctx=self.n_ctx,
                resources=self.resources,
                commit=self.listing.commit,
                refused=self._refused,
            )
        self.query_one("#files-detail", Static).update(Text("\n".join(lines)))

    def on_resize(self) -> None:
        for column in self.table.columns.values():  # columns only widen: measure again at the new size
            column.content_width = column.label.cell_len
        self.table.keys = []  # the next show() rebuilds the rows
        if self.models:
            self._redraw()

    # -- actions ------------------------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_context(self, factor: float) -> None:
        """Check every fit again at double or half the context, from the headers already read (no request)."""
        self.n_ctx = max(MIN_CTX, min(MAX_CTX, int(self.n_ctx * factor)))
        if self.resources is not None:
            resources = self.resources
            self.fits = [
                replace(f, row=with_fit(f.row, resources, self.n_ctx)) if f is not None and f.row is not None else f
                for f in self.fits
            ]
        self._show_title()
        if self.models:
            self._redraw()

    def action_choose(self) -> None:
        """Enter: launch the model when its files are here, else offer to download them."""
        index = self.current
        if index is None or self.listing is None:
            return
        model = self.models[index]
        path = local_files(self.runtime.config.models_dir, self.repo, model)
        if path is None:
            self._offer_download(model)
        else:
            self.shell.open_launch_dialog(launch_target(model, self.fits[index], path, self.resources, self.n_ctx))

    def _offer_download(self, model: ModelFile) -> None:
        from tui.screens.modals.confirm import ConfirmModal

        size = f", {human_bytes(model.download_bytes)}" if model.download_bytes else ""
        question = (
            f"{model_label(model)} is not downloaded. Download it now ({plural(len(model.files), 'file')}{size})?"
        )

        def done(yes: bool | None) -> None:
            if yes:
                self.action_download()

        self.app.push_screen(ConfirmModal(question, yes="Download", no="Not now", danger=False), done)

    def action_download(self) -> None:
        """`d`: queue every file of the highlighted model (weights, projector, config, tokenizer), pinned."""
        index = self.current
        if index is None or self.listing is None:
            return
        model = self.models[index]
        if local_files(self.runtime.config.models_dir, self.repo, model) is not None:
            self.notify(f"{model_label(model)} is here already: Enter launches it.", title="Downloaded", markup=False)
            return
        fit = self.fits[index]
        if fit is not None and fit.error_kind == "auth":  # the transfer would be refused the same way
            self.notify(fit.error or "the Hub refused this file", title="Not queued", severity="warning", markup=False)
            return
        listing = self.listing
        self.run_worker(lambda: queue_model(self, listing, model), thread=True, group="hub-download")
