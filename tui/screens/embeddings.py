"""The embeddings screen: embed several texts on a running instance and compare them.

Pick an instance whose engine can embed, type one text per line, press
Ctrl+E: the texts are embedded on that instance's worker (queued behind its
chat requests, never on the UI thread), and the screen shows the dimensions,
the time the engine took and the cosine similarity of every pair.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Label, Select, Static, TextArea

from engines.errors import LlmTuiError
from engines.similarity import cosine_matrix
from engines.types import Capability, InstanceInfo, InstanceState
from tui.screens.app_screen import AppScreen
from tui.widgets.screen_bar import ScreenBar

MAX_TEXTS = 32
LABEL_CHARS = 18


def label(text: str, index: int) -> str:
    """`1 a red apple…`: the row and column name of a text in the matrix."""
    short = text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"
    return f"{index + 1} {short}"


def similarity_style(value: float) -> str:
    """Bolder for texts that are closer."""
    return "bold" if value >= 0.9 else "" if value >= 0.5 else "dim"


class EmbeddingsScreen(AppScreen):
    """Texts in, vectors and their similarities out."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+e", "embed", "Embed", priority=True),
        Binding("f5", "refresh_instances", "Instances"),
    ]
    DEFAULT_CSS = """
    #embed-bar { height: 3; }
    #embed-bar Label { padding: 1 1 0 1; }
    #embed-instance { width: 1fr; }
    #embed-texts { height: 8; }
    #embed-status { height: auto; padding: 0 1; color: $text-muted; }
    #embed-matrix { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__(name="embeddings")
        self.vectors: list[list[float]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="embed-bar"):
            yield Label("Instance")
            yield Select[str]([], prompt="no instance that can embed", id="embed-instance")
        yield TextArea(id="embed-texts", soft_wrap=True, show_line_numbers=True)
        yield Static("", id="embed-status")
        yield DataTable(id="embed-matrix", zebra_stripes=True, cursor_type="cell")
        yield ScreenBar("embeddings")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(TextArea).text = ""
        self.action_refresh_instances()
        self.query_one(TextArea).focus()

    def on_screen_resume(self) -> None:
        self.action_refresh_instances()

    def embedding_instances(self) -> list[InstanceInfo]:
        """Running instances whose engine can embed."""
        manager = self.runtime.manager
        ready = [i for i in manager.instances() if i.state in (InstanceState.READY, InstanceState.BUSY)]
        return [i for i in ready if manager.engine_of(i.run_id).supports(Capability.EMBED)]

    def action_refresh_instances(self) -> None:
        select: Select[str] = self.query_one("#embed-instance", Select)
        instances = self.embedding_instances()
        chosen = select.value
        select.set_options([(f"{i.model_id} ({i.run_id}, {i.engine})", i.run_id) for i in instances])
        run_ids = [i.run_id for i in instances]
        active = self.runtime.active
        if isinstance(chosen, str) and chosen in run_ids:
            select.value = chosen
        elif active is not None and active.run_id in run_ids:
            select.value = active.run_id
        elif run_ids:
            select.value = run_ids[0]
        if not run_ids:
            self._status("No running instance can embed. Launch a model first (Ctrl+L, or Enter in the catalog).")
        elif not self.vectors:
            self._status("One text per line, then Ctrl+E.")

    def action_embed(self) -> None:
        select: Select[str] = self.query_one("#embed-instance", Select)
        texts = [line.strip() for line in self.query_one(TextArea).text.splitlines() if line.strip()]
        if not isinstance(select.value, str):
            self._status("Choose an instance that can embed first (F5 looks again).", error=True)
            return
        if not texts:
            self._status("Type at least one text, one per line.", error=True)
            return
        if len(texts) > MAX_TEXTS:
            self._status(f"At most {MAX_TEXTS} texts at once ({len(texts)} given).", error=True)
            return
        self._status(f"Embedding {len(texts)} text{'s' if len(texts) > 1 else ''}…")
        self._embed(select.value, texts)

    @work(thread=True, exclusive=True, group="embed")
    def _embed(self, run_id: str, texts: list[str]) -> None:
        try:
            job = self.runtime.manager.embed(run_id, texts)
            vectors = job.vectors or []
            matrix = cosine_matrix(vectors)
        except LlmTuiError as exc:
            self.app.call_from_thread(self._status, str(exc), error=True)
            return
        except Exception as exc:  # an engine failure must show, not take the app down
            self.app.call_from_thread(self._status, f"{type(exc).__name__}: {exc}", error=True)
            return
        self.app.call_from_thread(self._show, texts, vectors, matrix, job.elapsed_ms)

    def _show(self, texts: list[str], vectors: list[list[float]], matrix: list[list[float]], ms: float) -> None:
        self.vectors = vectors
        dims = len(vectors[0]) if vectors else 0
        self._status(f"{len(vectors)} vectors of {dims} dimensions in {ms:.1f} ms · cosine similarity:")
        table: DataTable[str | Text] = self.query_one("#embed-matrix", DataTable)
        table.clear(columns=True)
        table.add_column("", key="text")
        for i in range(len(texts)):
            table.add_column(str(i + 1), key=str(i))
        for i, row in enumerate(matrix):
            cells = [Text(f"{v:+.3f}", style=similarity_style(v), justify="right") for v in row]
            table.add_row(label(texts[i], i), *cells, key=str(i))

    def _status(self, text: str, *, error: bool = False) -> None:
        self.query_one("#embed-status", Static).update(Text(text, style="bold red" if error else ""))
