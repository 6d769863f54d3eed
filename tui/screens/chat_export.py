"""Exporting a chat: ask for a file (.md or .json), write the session there, say where it went."""

from __future__ import annotations

from pathlib import Path

from textual.screen import Screen

from engines.errors import LlmTuiError
from engines.store.sessions import SessionRecord, Store


def ask_export(screen: Screen[None], store: Store, session: SessionRecord, data_dir: Path) -> None:
    """Offer a path under the exports folder; Markdown unless the name the user keeps ends in .json."""
    from engines.store.export import ExportFormat, default_export_name, export_session, export_target, exports_dir
    from tui.screens.modals.text_prompt import TextPromptModal

    folder = exports_dir(data_dir)

    def done(path: str | None) -> None:
        if not path or not path.strip():
            return
        fmt: ExportFormat = "json" if path.strip().endswith(".json") else "markdown"
        try:
            written = export_session(store, session.id, export_target(path, folder), fmt)
        except (OSError, LlmTuiError) as exc:
            screen.notify(str(exc), title="Export failed", severity="error", timeout=10)
            return
        where = written.absolute()  # name and folder on lines of their own: a toast breaks a long path anywhere
        screen.notify(f"Saved {where.name}\nin {where.parent}", title="Exported", timeout=8, markup=False)

    name = str(folder / default_export_name(session, "markdown"))
    screen.app.push_screen(TextPromptModal("Export chat to (.md or .json)", name), done)
