"""The catalog's detail pane: what is known about one model, and whether it fits at the chosen context."""

from __future__ import annotations

from collections.abc import Mapping

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from engines.catalog.fit import human_bytes, human_params
from engines.catalog.listing import CatalogRow
from tui.screens.modals.confirm import short_path
from tui.widgets.model_table import BADGES


def about_text(row: CatalogRow, aliases: Mapping[str, str], width: int = 80) -> str:
    """Markup: the model's metadata, one fact per line, unknown ones left out; a path is shortened on purpose to
    fit its line in `width` cells (its file name kept) instead of breaking mid-word."""
    lines = [f"[b]{escape(row.name)}[/b]  [dim]{escape(row.id)}[/dim]"]
    if row.kind == "base":  # near the top: the pane is cut at its height, and this decides what to chat with
        lines.append(f"[$text-warning]{escape(base_model_hint(row))}[/]")
    if row.status != "ok":
        lines.append(f"[$text-error]broken: {escape(row.error or 'unreadable')}[/]")
    where = BADGES.get(row.source, row.source)
    path = short_path(row.path, max(20, width - 10)) if row.path is not None else None  # its own line
    if row.path is None and row.repo:
        where += f" · {row.repo}" + (f" / {row.file}" if row.file else "")
    model = [row.format, row.quantization, human_bytes(row.size_bytes) if row.size_bytes else None]
    model.append(f"{human_params(row.params)} params" if row.params else None)
    model.append(row.kind if row.kind in ("base", "embedding", "speech") else None)
    context = [f"{row.context_length:,} tokens" if row.context_length else None, _template(row)]
    facts: list[tuple[str, str | None]] = [
        ("source", where),
        ("origin", row.origin),
        ("file", path),
        ("model", _joined(model)),
        ("arch", _joined([row.architecture or row.family, _shape(row)])),
        ("context", _joined(context)),
        ("engines", _joined([", ".join(row.engines), f"license {row.license}" if row.license else None])),
        ("aliases", ", ".join(sorted(a for a, ref in aliases.items() if ref in (row.id, row.catalog_id))) or None),
    ]
    lines += [f"[dim]{label:>8}[/dim] {escape(value)}" for label, value in facts if value]
    return "\n".join(lines)


def base_model_hint(row: CatalogRow) -> str:
    """What a base model is for, and which build to chat with."""
    if row.chat_build is None:
        return "base model: continues text; it is not tuned for chat"
    return f"base model: continues text; for chat use {row.chat_build} (d to download)"


def _joined(parts: list[str | None]) -> str | None:
    return " · ".join(p for p in parts if p) or None


def _shape(row: CatalogRow) -> str | None:
    return _joined(
        [
            f"{row.layers} layers" if row.layers else None,
            f"{row.heads} heads" if row.heads else None,
            f"{row.kv_heads} KV" if row.kv_heads else None,
            f"embd {row.embedding_length}" if row.embedding_length else None,
        ]
    )


def _template(row: CatalogRow) -> str | None:
    if row.has_chat_template is None:
        return None
    return "chat template in file" if row.has_chat_template else "no chat template in file (catalog's used)"


def fit_text(row: CatalogRow, n_ctx: int) -> str:
    """Markup: the fit verdict at `n_ctx` tokens of context with the numbers behind it."""
    head = f"[b]Fit at {n_ctx:,} tokens[/b] [dim]+/- c to change[/dim]"
    if row.status != "ok":
        return f"{head}\n[dim]not checked: the file is broken[/dim]"
    if row.fit is None:
        held = "the Ollama daemon" if row.source == "ollama" else "the remote server"
        return f"{head}\n[dim]{held} holds this model's memory; nothing to check here[/dim]"
    colour = "$text-success" if row.fit.fits else "$text-warning"
    mark = "✓" if row.fit.fits else "✗"
    lines = [head, f"[{colour}]{mark} {escape(row.fit.verdict)}[/]"]
    lines += [f"[dim]·[/dim] {escape(part)}" for part in row.fit.summary.split("; ")]
    if row.context_length and n_ctx > row.context_length:
        lines.append(f"[$text-warning]the model was trained for {row.context_length:,} tokens at most[/]")
    return "\n".join(lines)


class ModelDetail(Horizontal):
    """Metadata on the left, the fit check on the right."""

    DEFAULT_CSS = """
    ModelDetail { height: auto; max-height: 9; border-top: solid $primary-muted; padding: 0 1; }
    ModelDetail > Static { width: 1fr; height: auto; }
    ModelDetail > #detail-fit { padding-left: 2; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="detail-about")
        yield Static(id="detail-fit")

    def show(self, row: CatalogRow | None, n_ctx: int, aliases: Mapping[str, str]) -> None:
        """Describe `row` (None: say that nothing matches)."""
        about = self.query_one("#detail-about", Static)
        fit = self.query_one("#detail-fit", Static)
        if row is None:
            about.update("[dim]No model matches the filter.[/dim]")
            fit.update("")
            return
        about.update(about_text(row, aliases, about.content_region.width or 80))
        fit.update(fit_text(row, n_ctx))
