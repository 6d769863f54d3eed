"""The Hub search screen: find model repos on the Hugging Face Hub (or HF_ENDPOINT's mirror) as you type.

Typing waits for a pause (DEBOUNCE_S) and then searches in a thread worker; a newer query cancels the older one
(its cancel Event is set, and Textual's exclusive group drops the worker), and every answer carries the number of
the search it belongs to, so a slow answer to an old query that lands late is dropped instead of replacing the
new results. Pages are shown as they arrive. Enter on a repo lists its model files with a fit check for each
(tui/screens/hub_files.py).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from engines.hub.errors import HubError
from engines.hub.search import HubRepo, SortKey, check_query, search_models
from tui.screens.app_screen import AppScreen
from tui.screens.downloads import elide
from tui.widgets.screen_bar import ScreenBar

if TYPE_CHECKING:
    from engines.config.load import Config

DEBOUNCE_S = 0.3
"""A pause in typing this long starts the search: one request per word typed, not per key."""
LIMIT = 200
"""Repos asked for per search: two pages of 100, the first shown while the second is read."""
SORTS: tuple[tuple[SortKey, str], ...] = (("downloads", "downloads"), ("likes", "likes"), ("last_modified", "modified"))
"""The orders `s` cycles through (the Hub sorts; each is a new search), and how the status line names them."""
COLUMNS = ("Repo", "Downloads", "Likes", "Modified", "Format")
FORMAT_WIDTH = 12
FIXED_WIDTH = (9 + 2) + (6 + 2) + (10 + 2) + (FORMAT_WIDTH + 2) + 2 + 2
"""Cells every column but Repo takes (with DataTable's padding of 1 each side), the scrollbar and Repo's padding:
the repo id gets the rest, so the other columns stay on screen at 80."""
SHORT_FORMATS = {"safetensors": "st", "pytorch": "pt"}


def hub_access(config: Config) -> tuple[str, str | None]:
    """The endpoint (HF_ENDPOINT or the Hub) and the token (hf_token or HF_TOKEN, if set) searches and reads use."""
    from engines.downloads.queue import HF_ENDPOINT

    token = config.hf_token.reveal() if config.hf_token is not None else None
    return config.hf_endpoint or HF_ENDPOINT, token or None


def count_text(n: int | None) -> str:
    """1234567 -> "1.2M", 12345 -> "12.3k", 999 -> "999"; "-" when the Hub did not say."""
    if n is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


def format_text(repo: HubRepo, width: int = FORMAT_WIDTH) -> str:
    """The weight formats the repo's tags name, and "gated" when its licence must be accepted first: in full when
    they fit the column, else abbreviated (st for safetensors, pt for pytorch)."""
    words = [*repo.formats, *(["gated"] if repo.gated else [])]
    full = " ".join(words)
    if len(full) <= width:
        return full or "-"
    return elide(" ".join(SHORT_FORMATS.get(w, w) for w in words), width)


def repo_text(repo_id: str, width: int) -> str:
    """The repo id in `width` cells, cut at the end: the organisation, family and size come first in a repo's
    name, and the format its tail often repeats has a column of its own."""
    return repo_id if len(repo_id) <= width else repo_id[: width - 1] + "…"


def date_text(when: datetime | None) -> str:
    return when.date().isoformat() if when is not None else "-"


class RepoTable(DataTable[str | Text]):
    """The repos found, most downloaded (liked, recent) first; Enter lists a repo's model files."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "screen.open_repo", "Files", key_display="⏎"),
        Binding("s", "screen.sort", "Sort"),
        Binding("slash", "screen.edit_query", "Search", key_display="/"),
    ]


class HubSearchScreen(AppScreen):
    """Search the Hub's model repos; Enter on one shows its files and whether each fits here."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
    ]
    DEFAULT_CSS = """
    #hub-bar { height: 1; }
    #hub-query-label { padding: 0 1; color: $text-muted; }
    #hub-query { border: none; height: 1; padding: 0; width: 1fr; background: $boost; }
    #hub-query:focus { background: $surface-lighten-1; }
    #hub-status { height: auto; padding: 0 1; color: $text-muted; background: $boost; }
    #hub-table { height: 1fr; }
    """

    class Page(Message):
        """A page of results of search number `search` (from the search's thread)."""

        def __init__(self, search: int, repos: list[HubRepo]) -> None:
            super().__init__()
            self.search = search
            self.repos = repos

    class Waiting(Message):
        """The Hub asked to wait (HTTP 429) and the search backs off before trying again."""

        def __init__(self, search: int, seconds: float, why: str) -> None:
            super().__init__()
            self.search = search
            self.seconds = seconds
            self.why = why

    class Ended(Message):
        """Search number `search` ended: every page shown, or `error` says why not."""

        def __init__(self, search: int, error: str | None) -> None:
            super().__init__()
            self.search = search
            self.error = error

    def __init__(self, *, n_ctx: int | None = None) -> None:
        super().__init__()
        self.n_ctx = n_ctx
        """The context size the files screen checks fits at (the catalog's, when opened from it)."""
        self.repos: list[HubRepo] = []
        self.sort_index = 0
        self.searched: str | None = None
        """The query of the search shown (or under way); None before the first."""
        self.searching = False
        self._search_no = 0
        self._cancel = threading.Event()
        self._timer: Timer | None = None
        self._to_results = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="hub-bar"):
            yield Label("Hub ", id="hub-query-label")
            yield Input(placeholder="model or organisation name, e.g. qwen gguf", id="hub-query")
        yield Static("", id="hub-status")
        yield RepoTable(id="hub-table", cursor_type="row", zebra_stripes=True)
        yield ScreenBar("catalog")
        yield Footer()

    def on_mount(self) -> None:
        for title in COLUMNS:
            self.table.add_column(title, key=title)
        self._say("Type a model or organisation name to search the Hugging Face Hub.")
        self.query_input.focus()

    def on_unmount(self) -> None:
        self._cancel.set()  # a search still running stops at its next page

    @property
    def table(self) -> RepoTable:
        return self.query_one(RepoTable)

    @property
    def query_input(self) -> Input:
        return self.query_one("#hub-query", Input)

    @property
    def sort_key(self) -> SortKey:
        return SORTS[self.sort_index][0]

    @property
    def current(self) -> HubRepo | None:
        """The repo under the cursor."""
        row = self.table.cursor_row
        return self.repos[row] if self.repos and 0 <= row < len(self.repos) else None

    def _say(self, text: str) -> None:
        # Text, not markup: errors name URLs and hints with brackets.
        self.query_one("#hub-status", Static).update(Text(text))

    # -- typing and searching -----------------------------------------------------------------------------------

    @on(Input.Changed, "#hub-query")
    def _typed(self) -> None:
        self._to_results = False
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE_S, self.search_now)

    @on(Input.Submitted, "#hub-query")
    def _submitted(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self.query_input.value.strip() != self.searched or (not self.searching and not self.repos):
            self.search_now()
        if self.repos:
            self.table.focus()
        else:
            self._to_results = True  # Enter means "show me": the list takes focus when the first page lands

    def on_key(self, event: events.Key) -> None:
        if self.focused is self.query_input and event.key == "down" and self.repos:
            self.table.focus()
            event.stop()

    def search_now(self) -> None:
        """Search for what the query field holds now, replacing the results shown (and any search under way)."""
        text = self.query_input.value
        try:
            query = check_query(text)
        except HubError as exc:
            self._say(str(exc))
            return
        self._cancel.set()  # the old search stops at its next page; its late answers are dropped by number
        self._cancel = threading.Event()
        self._search_no += 1
        self.repos = []
        self.table.clear()
        self.searched = query
        if not query:
            self.searching = False
            self._say("Type a model or organisation name to search the Hugging Face Hub.")
            return
        self.searching = True
        self._say(f"searching the Hub for {query!r}…")
        endpoint, token = hub_access(self.runtime.config)
        self._search(self._search_no, query, self.sort_key, endpoint, token, self._cancel)

    @work(thread=True, exclusive=True, group="hub-search")
    def _search(
        self, number: int, query: str, sort: SortKey, endpoint: str, token: str | None, cancel: threading.Event
    ) -> None:
        def waiting(seconds: float, why: str) -> None:
            self.post_message(self.Waiting(number, seconds, why))

        try:
            for page in search_models(
                query, endpoint=endpoint, token=token, limit=LIMIT, sort=sort, on_wait=waiting, cancel=cancel
            ):
                if cancel.is_set():
                    return
                self.post_message(self.Page(number, page))
        except HubError as exc:
            self.post_message(self.Ended(number, str(exc)))
        except Exception as exc:  # a bug or an unforeseen answer is said on the status line, never a crash
            self.post_message(self.Ended(number, f"the search failed: {type(exc).__name__}: {exc}"))
        else:
            self.post_message(self.Ended(number, None))

    def on_hub_search_screen_page(self, message: Page) -> None:
        if message.search != self._search_no:
            return  # an older query's answer, arriving after a newer query started
        width = max(12, self.app.size.width - FIXED_WIDTH)
        shown = {repo.id for repo in self.repos}
        for repo in message.repos:
            if repo.id in shown:  # a page repeated by a misbehaving mirror would be a duplicate row key
                continue
            shown.add(repo.id)
            self.repos.append(repo)
            self.table.add_row(*self._cells(repo, width), key=repo.id)
        if self._to_results and self.repos and self.focused is self.query_input:
            self._to_results = False
            self.table.focus()
        self._say(f"{self._count()} so far, reading more…")

    def on_hub_search_screen_waiting(self, message: Waiting) -> None:
        if message.search == self._search_no:
            self._say(f"{message.why}: retrying in {message.seconds:.0f} s…")

    def on_hub_search_screen_ended(self, message: Ended) -> None:
        if message.search != self._search_no:
            return
        self.searching = False
        if message.error is not None:
            self._say(message.error)
        elif not self.repos:
            self._say(f"No model repo on the Hub matches {self.searched!r}.")
        else:
            self._say(f"{self._count()} · sorted by {SORTS[self.sort_index][1]} (s) · Enter lists a repo's files")

    def _count(self) -> str:
        return f"{len(self.repos)} repo{'s' if len(self.repos) != 1 else ''}"

    @staticmethod
    def _cells(repo: HubRepo, width: int) -> tuple[str | Text, ...]:
        return (
            repo_text(repo.id, width),
            Text(count_text(repo.downloads), justify="right"),
            Text(count_text(repo.likes), justify="right"),
            date_text(repo.last_modified),
            format_text(repo),
        )

    def on_resize(self) -> None:
        # The repo column's width follows the terminal's: draw the rows again at the new width.
        width = max(12, self.app.size.width - FIXED_WIDTH)
        if not self.repos:
            return
        row = self.table.cursor_row
        self.table.clear(columns=True)
        for title in COLUMNS:
            self.table.add_column(title, key=title)
        for repo in self.repos:
            self.table.add_row(*self._cells(repo, width), key=repo.id)
        self.table.move_cursor(row=row)

    # -- actions ------------------------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_edit_query(self) -> None:
        self.query_input.focus()

    def action_sort(self) -> None:
        """Ask the Hub again in the next order: downloads, likes, last modified."""
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        if self.searched:
            self.search_now()
        else:
            self._say(f"Results will be sorted by {SORTS[self.sort_index][1]}.")

    def action_open_repo(self) -> None:
        repo = self.current
        if repo is None:
            return
        from tui.screens.hub_files import HubFilesScreen

        self.app.push_screen(HubFilesScreen(repo.id, gated=repo.gated, n_ctx=self.n_ctx))
