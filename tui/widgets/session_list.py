"""The list of chat sessions, with a filter box; keys act on the highlighted session."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

from engines.store.sessions import SessionRecord


class SessionOptions(OptionList):
    """The sessions themselves; r renames, Delete deletes the highlighted one."""

    BINDINGS = [
        Binding("r", "rename", "Rename"),
        Binding("delete,d", "delete", "Delete"),
    ]

    def action_rename(self) -> None:
        self._post(SessionList.RenameRequested)

    def action_delete(self) -> None:
        self._post(SessionList.DeleteRequested)

    def _post(self, kind: type[SessionList.SessionAction]) -> None:
        option = self.highlighted_option
        if option is not None and option.id is not None:
            self.post_message(kind(int(option.id)))


class SessionFilter(Input):
    """The filter box: typing filters (so `r` types); Down goes to the list, Esc clears, then leaves."""

    BINDINGS = [
        Binding("down", "to_list", "List"),
        Binding("escape", "clear_or_leave", "Clear"),
    ]

    def __init__(self) -> None:
        # Compact: a bordered Input is taller than the one row it gets, which left no room for the text.
        super().__init__(placeholder="/ filter chats", id="session-filter", compact=True)

    def action_to_list(self) -> None:
        self.screen.query_one(SessionOptions).focus()

    def action_clear_or_leave(self) -> None:
        if self.value:
            self.clear()
        else:
            self.post_message(SessionList.FilterLeft())


class SessionList(Vertical):
    """Filter box + sessions; posts Chosen when the user opens one."""

    DEFAULT_CSS = """
    SessionList { width: 26; border-right: vkey $foreground 20%; }
    SessionList > SessionFilter { margin: 0; height: 1; padding: 0 1; background: $boost; }
    SessionList > SessionFilter:focus { background: $surface-lighten-1; }
    SessionList > SessionOptions { border: none; height: 1fr; }
    """

    class SessionAction(Message):
        """Something the user asked of one session."""

        def __init__(self, session_id: int) -> None:
            super().__init__()
            self.session_id = session_id

    class Chosen(SessionAction):
        """Open this session."""

    class RenameRequested(SessionAction):
        """Rename this session."""

    class DeleteRequested(SessionAction):
        """Delete this session (after confirmation)."""

    class FilterLeft(Message):
        """Esc in an empty filter: the user is done with the list."""

    class FilterChanged(Message):
        """The filter text changed."""

        def __init__(self, query: str) -> None:
            super().__init__()
            self.query = query

    def compose(self) -> ComposeResult:
        yield SessionFilter()
        yield SessionOptions(id="session-options")

    def show(self, sessions: Sequence[SessionRecord], current: int | None) -> None:
        """Replace the listed sessions, keeping `current` highlighted."""
        options = self.query_one(SessionOptions)
        options.clear_options()
        options.add_options([Option(_label(s), id=str(s.id)) for s in sessions])
        ids = [s.id for s in sessions]
        if current in ids:
            options.highlighted = ids.index(current)
        elif ids:
            options.highlighted = 0

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.FilterChanged(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(SessionOptions).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Chosen(int(event.option.id)))


def _label(session: SessionRecord) -> str:
    title = session.title.strip() or "Untitled"
    return title if len(title) <= 40 else title[:39] + "…"
