"""The catalog screen: every model here and in the curated catalog, filtered as you type, with a fit check.

The list is built in a worker thread (discovery reads GGUF headers, the
Hugging Face cache and the Ollama daemon); the screen itself only filters,
sorts and draws. `/` filters, `s`/`S` sort, `+`/`-`/`c` change the context
size the fit check assumes, Enter launches, `d` downloads, Delete deletes a
local file (confirmed), `a` sets an alias, `h` searches the Hugging Face Hub.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Footer, Header, Input, Label, Static

from engines.catalog.listing import CatalogRow, Listing, remove_local, with_fit, with_hub_sizes
from engines.catalog.query import SORT_KEYS, RowIndex, sort_rows
from engines.errors import LlmTuiError
from tui.screen_list import CHAT
from tui.screens.app_screen import AppScreen
from tui.screens.catalog_download import HubSize
from tui.widgets.model_detail import ModelDetail
from tui.widgets.model_table import ModelTable
from tui.widgets.screen_bar import ScreenBar

if TYPE_CHECKING:
    from engines.downloads.tasks import DownloadTask

MIN_CTX, MAX_CTX = 256, 1 << 20


class ListingReady(Message):
    """A scan finished (in a worker thread)."""

    def __init__(self, scan: int, listing: Listing | None, error: str | None = None) -> None:
        super().__init__()
        self.scan = scan
        """Which rescan() this answers: an older scan that finishes late must not replace a newer listing."""
        self.listing = listing
        self.error = error


def parse_context(text: str) -> int | str:
    """A context size typed by the user ("8192", "8k", "32K"), or the reason it is refused."""
    raw = text.strip().lower().replace(",", "").replace("_", "")
    scale = 1024 if raw.endswith("k") else 1
    try:
        value = int(raw.removesuffix("k")) * scale
    except ValueError:
        return f"{text.strip()!r} is not a number of tokens (examples: 4096, 8k)"
    if not MIN_CTX <= value <= MAX_CTX:
        return f"a context size is {MIN_CTX:,} to {MAX_CTX:,} tokens"
    return value


class CatalogScreen(AppScreen):
    """Find a model, see whether it fits, and launch, download, delete or alias it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("enter,l", "launch", "Launch", key_display="⏎"),
        Binding("d", "download", "Download"),
        Binding("o", "pull_ollama", "Ollama", tooltip="Pull the model with the Ollama daemon"),
        Binding("h", "hub_search", "Hub search", show=False),  # the footer is full at 80 columns
        Binding("delete,x", "delete", "Delete", key_display="x"),
        Binding("a", "alias", "Alias", show=False),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse", show=False),
        Binding("plus,equals_sign", "context(2)", "Ctx", key_display="+-", tooltip="Context size for the fit check"),
        Binding("minus", "context(0.5)", "Context ÷2", show=False),
        Binding("c", "type_context", "Ctx…", show=False),
        Binding("ctrl+r", "rescan", "Rescan", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(name="catalog")
        self.listing: Listing | None = None
        self.sort_key = "name"
        self.descending = False
        self.n_ctx: int | None = None
        self._index = RowIndex.build([])
        self._scanned = False
        self._scans = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="catalog-bar"):
            yield Label("Filter ", id="catalog-filter-label")
            yield Input(placeholder="/ to filter: name, family, quant, source…", id="catalog-filter")
        yield Static("", id="catalog-status")
        yield ModelTable(id="catalog-table")
        yield ModelDetail(id="catalog-detail")
        yield ScreenBar("catalog")
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()
        self.rescan()

    def on_screen_resume(self) -> None:
        if self._scanned:  # back from the chat: a launch may have installed a model
            self.rescan()

    @property
    def table(self) -> ModelTable:
        return self.query_one(ModelTable)

    @property
    def filter_input(self) -> Input:
        return self.query_one("#catalog-filter", Input)

    # -- scanning -----------------------------------------------------------------------------------------

    def rescan(self) -> None:
        """Build the listing again in a worker (the table keeps showing the old one meanwhile)."""
        self.query_one("#catalog-status", Static).update("Scanning the models directory, caches and servers…")
        self._scans += 1
        self._scan(self._scans, self.n_ctx)

    def download_finished(self, task: DownloadTask) -> None:
        """A completed download shows at once."""
        if task.error is None:
            self.rescan()

    @work(thread=True, exclusive=True, group="catalog-scan")
    def _scan(self, scan: int, n_ctx: int | None) -> None:
        from engines.downloads.tasks import hub_sizes

        runtime = self.runtime
        try:
            listing = runtime.catalog_listing(n_ctx)
            listing = with_hub_sizes(listing, hub_sizes(runtime.store.downloads.all()))
        except Exception as exc:  # a bug in a scan must show up, not take the app down
            self.post_message(ListingReady(scan, None, f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(ListingReady(scan, listing))

    def on_listing_ready(self, message: ListingReady) -> None:
        if message.scan != self._scans:  # a thread worker cannot be stopped; its stale answer is dropped
            return
        self._scanned = True
        if message.listing is None:
            self.notify(
                message.error or "unknown error",
                title="Could not scan models",
                severity="error",
                timeout=15,
                markup=False,
            )
            self._show_status()
            return
        self.listing = message.listing
        self.n_ctx = message.listing.n_ctx
        self._reindex()

    def on_hub_size(self, message: HubSize) -> None:
        """The Hub said how big a curated file is: show that instead of the catalog's estimate, fit checked again."""
        if self.listing is not None:
            self.listing = with_hub_sizes(self.listing, {(message.repo, message.file): message.size})
            self._reindex()

    def _reindex(self, *, to_top: bool = False) -> None:
        """Sort every row, then show those the filter lets through, keeping the cursor on its model (or, after a
        new sort order, on the first row: the head of the order is what a sort is for)."""
        rows = self.listing.rows if self.listing else []
        self._index = RowIndex.build(sort_rows(rows, self.sort_key, descending=self.descending))
        current = None if to_top else self.table.current
        self.table.set_rows(self._index.filter(self.filter_input.value), keep=current.id if current else None)
        self._show_status()

    def _show_status(self) -> None:
        total = len(self.listing.rows) if self.listing else 0
        here = sum(1 for r in self.listing.rows if r.source != "catalog") if self.listing else 0
        arrow = "↓" if self.descending else "↑"
        parts = [
            f"{len(self.table.rows)} of {total} models" if self.filter_input.value.strip() else f"{total} models",
            f"{here} here",
            f"sorted by {self.sort_key} {arrow}",
            f"fit at {self.n_ctx or self.runtime.config.n_ctx:,} ctx",
        ]
        statuses = self.listing.statuses if self.listing else []
        # Text, not markup: a status names install extras ('llm-tui[ollama]') and errors that hold brackets.
        self.query_one("#catalog-status", Static).update(Text(" · ".join(parts + statuses)))

    # -- filter -------------------------------------------------------------------------------------------

    @on(Input.Changed, "#catalog-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        current = self.table.current
        self.table.set_rows(self._index.filter(event.value), keep=current.id if current else None)
        self._show_status()

    @on(Input.Submitted, "#catalog-filter")
    def _filter_done(self) -> None:
        self.table.focus()

    def on_key(self, event: events.Key) -> None:
        if self.focused is self.filter_input and event.key in ("down", "up", "pagedown", "pageup"):
            # Leave the filter as it is for the list, onto the row its cursor already marks: the first Down
            # lands on the first match, the second on the second (moving as well would skip one).
            self.table.focus()
            if event.key in ("pagedown", "pageup"):
                self.table.action_page(1 if event.key == "pagedown" else -1)
            event.stop()

    def action_filter(self) -> None:
        self.filter_input.focus()

    def action_clear_filter(self) -> None:
        if self.filter_input.value:
            self.filter_input.value = ""  # Changed → the whole list again
        self.table.focus()

    # -- sort and context ---------------------------------------------------------------------------------

    def action_sort(self) -> None:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self.descending = self.sort_key != "name"  # biggest first is what people look for by size
        self._reindex(to_top=True)

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self._reindex(to_top=True)

    def on_model_table_header_clicked(self, event: ModelTable.HeaderClicked) -> None:
        if event.sort_key == self.sort_key:
            self.descending = not self.descending
        else:
            self.sort_key, self.descending = event.sort_key, event.sort_key != "name"
        self._reindex(to_top=True)

    def action_context(self, factor: float) -> None:
        current = self.n_ctx or self.runtime.config.n_ctx
        self.set_context(max(MIN_CTX, min(MAX_CTX, int(current * factor))))

    def action_type_context(self) -> None:
        from tui.screens.modals.text_prompt import TextPromptModal

        def done(text: str | None) -> None:
            if text is not None:
                value = parse_context(text)
                if isinstance(value, int):
                    self.set_context(value)

        current = self.n_ctx or self.runtime.config.n_ctx
        check = lambda text: value if isinstance(value := parse_context(text), str) else None  # noqa: E731
        self.app.push_screen(TextPromptModal("Context size for the fit check", str(current), check=check), done)

    def set_context(self, n_ctx: int) -> None:
        """Check every fit again at `n_ctx` tokens (arithmetic only: no rescan)."""
        self.n_ctx = n_ctx
        if self.listing is None or self.listing.resources is None:
            self._show_status()
            return
        resources = self.listing.resources
        self.listing = replace(
            self.listing, rows=[with_fit(r, resources, n_ctx) for r in self.listing.rows], n_ctx=n_ctx
        )
        self._reindex()

    # -- the detail pane ----------------------------------------------------------------------------------

    def on_model_table_highlighted(self, event: ModelTable.Highlighted) -> None:
        self._show_detail(event.row)

    def _show_detail(self, row: CatalogRow | None) -> None:
        n_ctx = self.n_ctx or self.runtime.config.n_ctx
        self.query_one(ModelDetail).show(row, n_ctx, self.runtime.config.aliases)

    # -- actions ------------------------------------------------------------------------------------------

    def on_model_table_chosen(self, event: ModelTable.Chosen) -> None:
        self.action_launch()

    def action_launch(self) -> None:
        row = self.table.current
        if row is None:
            return
        if row.status != "ok":
            self.notify(row.error or "unreadable file", title=f"{row.id} is broken", severity="error", markup=False)
        elif row.source == "catalog" and not row.packaged:
            self._offer_download(row)
        elif row.source in ("ollama", "remote"):  # served elsewhere: its server decides how it runs
            self.shell.launch_model(row.id, row.source)
            self.shell.switch_mode(CHAT.mode)
        else:
            from tui.screens.modals.launch import target_for_row

            self.shell.open_launch_dialog(target_for_row(row, n_ctx=self.n_ctx))  # the context the fit checked

    def _offer_download(self, row: CatalogRow) -> None:
        """Enter on a model that is not here: ask to fetch it (staying on the catalog) instead of failing a launch."""
        from engines.catalog.fit import human_bytes
        from tui.screens.catalog_download import download_row, pull_row_with_ollama
        from tui.screens.modals.confirm import ConfirmModal

        if not row.repo and not row.ollama:
            self.notify(
                f"{row.id} names nowhere to download it from.", title="Not here", severity="warning", markup=False
            )
            return
        exact = "" if row.sha256 else "about "  # a curated size is an estimate until the Hub says
        size = f" ({exact}{human_bytes(row.size_bytes)})" if row.size_bytes else ""
        how = "Download it now" if row.repo else f"Pull it with Ollama ({row.ollama}) now"

        def done(yes: bool | None) -> None:
            if yes:
                (download_row if row.repo else pull_row_with_ollama)(self, row)

        question = f"{row.id} is not downloaded. {how}{size}?"
        self.app.push_screen(ConfirmModal(question, yes="Download", no="Not now", danger=False), done)

    def action_download(self) -> None:
        from tui.screens.catalog_download import download_row

        row = self.table.current
        if row is not None and row.source != "catalog" and row.chat_build and self.listing is not None:
            self._offer_chat_build(row, row.chat_build)
        elif row is not None:
            download_row(self, row)

    def _offer_chat_build(self, row: CatalogRow, build_id: str) -> None:
        """`d` on a base model that is here: its instruct build is what to fetch (the detail pane says so)."""
        from engines.catalog.fit import human_bytes
        from tui.screens.catalog_download import download_row
        from tui.screens.modals.confirm import ConfirmModal

        rows = self.listing.rows if self.listing else []
        build = next((r for r in rows if r.id == build_id or r.catalog_id == build_id), None)
        if build is None or build.source != "catalog":
            self.notify(
                f"{build_id} is here already: Enter on its row launches it.", title="Nothing to download", markup=False
            )
            return

        def done(yes: bool | None) -> None:
            if yes:
                download_row(self, build)

        size = f" ({human_bytes(build.size_bytes)})" if build.size_bytes else ""
        question = f"{row.id} is a base model and is here already. Download its chat build {build_id}{size}?"
        self.app.push_screen(ConfirmModal(question, yes="Download", no="Not now", danger=False), done)

    def action_pull_ollama(self) -> None:
        from tui.screens.catalog_download import pull_row_with_ollama

        if (row := self.table.current) is not None:
            pull_row_with_ollama(self, row)

    def action_delete(self) -> None:
        row = self.table.current
        if row is None:
            return
        if not row.deletable:
            why = {
                "catalog": "it is a catalog entry, not a file here",
                "hf-cache": "it lives in the Hugging Face cache: [b]huggingface-cli delete-cache[/b] removes it",
                "ollama": "the Ollama daemon holds it: [b]ollama rm[/b] removes it",
                "remote": "it is served by a remote endpoint",
            }.get(row.source, "it is not in the models directory")
            self.notify(f"{escape(row.id)} cannot be deleted here: {why}.", title="Not deleted", severity="warning")
            return
        from engines.catalog.fit import human_bytes
        from tui.screens.modals.confirm import ConfirmModal, short_path

        def done(yes: bool | None) -> None:
            if yes:
                self._delete(row)

        models_dir = self.runtime.config.models_dir
        path = row.path or models_dir
        name = str(path.relative_to(models_dir)) if path.is_relative_to(models_dir) else short_path(path)
        size = f" ({human_bytes(row.size_bytes)})" if row.size_bytes else ""
        question = f"Delete {name}{size} from the models directory ({short_path(models_dir)})? This cannot be undone."
        self.app.push_screen(ConfirmModal(question, yes="Delete", no="Keep"), done)

    @work(thread=True, exclusive=True, group="catalog-delete")
    def _delete(self, row: CatalogRow) -> None:
        try:
            removed = remove_local(row, self.runtime.config.models_dir)
        except (LlmTuiError, OSError) as exc:
            self.app.call_from_thread(
                self.notify, str(exc), title="Not deleted", severity="error", timeout=15, markup=False
            )
            return
        names = ", ".join(p.name for p in removed) or "nothing (already gone)"
        self.app.call_from_thread(self.notify, f"Removed {names}.", title=f"Deleted {row.id}", markup=False)
        self.app.call_from_thread(self.rescan)

    def action_alias(self) -> None:
        row = self.table.current
        if row is None:
            return
        from engines.config.edit import check_alias_name
        from tui.screens.modals.text_prompt import TextPromptModal

        ref = str(row.path) if row.source != "catalog" and row.path and row.id != row.catalog_id else row.id

        def check(text: str) -> str | None:
            try:
                check_alias_name(text)
            except LlmTuiError as exc:
                return str(exc)
            return None

        def done(name: str | None) -> None:
            if name is None:
                return
            try:
                self.runtime.set_alias(name, ref)
            except LlmTuiError as exc:
                self.notify(str(exc), title="Alias not saved", severity="error", timeout=15, markup=False)
                return
            self.notify(f"{name} → {ref} (saved in {self.runtime.config.source})", title="Alias saved", markup=False)
            self._show_detail(self.table.current)

        title = f"Alias for {row.id} (use it with --model and in the model picker)"
        self.app.push_screen(TextPromptModal(title, placeholder="short name", check=check), done)

    def action_rescan(self) -> None:
        self.rescan()

    def action_hub_search(self) -> None:
        """Search the Hugging Face Hub for models beyond the catalog, checking fits at this screen's context."""
        from tui.screens.hub_search import HubSearchScreen

        self.app.push_screen(HubSearchScreen(n_ctx=self.n_ctx))
