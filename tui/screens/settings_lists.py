"""The settings screen's two lists, aliases and remote endpoints: their state, the keys that edit them (in
dialogs) and the connection test, and what saving them changes in the file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import work
from textual.widget import Widget
from textual.widgets import OptionList, Static

from engines.config.edit import ConfigChanges, EndpointChange, parse_alias_line
from engines.config.load import user_config_path
from engines.config.tables import RemoteEndpoint
from engines.errors import ConfigError
from tui.screens.app_screen import AppScreen
from tui.screens.modals.endpoint_edit import EndpointModal, EndpointTested, probe_endpoint, probe_result
from tui.widgets.settings_lists import AliasList, EndpointList


@dataclass(slots=True)
class EndpointEntry:
    """A remote endpoint being edited: `origin` is its name in the file (None when it is new)."""

    origin: str | None
    endpoint: RemoteEndpoint


class SettingsLists(AppScreen):
    """The part of the settings screen that edits the aliases and endpoints; the screen adds the fields."""

    def __init__(self) -> None:
        super().__init__(name="settings")
        self.aliases: dict[str, str] = {}
        self.aliases_saved: dict[str, str] = {}
        self.entries: list[EndpointEntry] = []
        self.endpoints_saved: dict[str, RemoteEndpoint] = {}
        self.tests: dict[str, Text] = {}
        """The last connection test of each endpoint, by name."""
        self.result: Text | None = None
        """What the last save said, shown until the next edit."""

    @property
    def config_path(self) -> Path:
        """The file this screen edits: the one in use, else the user's (created on the first save)."""
        return self.runtime.config.source or user_config_path()

    def _show_status(self) -> None:
        """Redraw the status line (the screen says what)."""

    def read_lists(self, aliases: object, endpoints: tuple[RemoteEndpoint, ...]) -> None:
        """Start both lists from what the file holds."""
        self.aliases_saved = {str(k): str(v) for k, v in aliases.items()} if isinstance(aliases, Mapping) else {}
        self.aliases = dict(self.aliases_saved)
        self.endpoints_saved = {e.name: e for e in endpoints}
        self.entries = [EndpointEntry(e.name, e) for e in endpoints]

    def pending_in_lists(self) -> list[str]:
        """The aliases and endpoints saving would change."""
        names = [
            f"alias {n}"
            for n in {*self.aliases, *self.aliases_saved}
            if self.aliases.get(n) != self.aliases_saved.get(n)
        ]
        changes = self._endpoint_changes()
        return (
            names
            + [f"endpoint {c.name}" for c in changes.endpoints]
            + [f"endpoint {n}" for n in changes.remove_endpoints]
        )

    def revert_list(self, node: Widget) -> None:
        """Put the alias or endpoint list back as the file has it."""
        if isinstance(node, AliasList):
            self.aliases = dict(self.aliases_saved)
        elif isinstance(node, EndpointList):
            self.entries = [EndpointEntry(e.name, e) for e in self.endpoints_saved.values()]
        self._edited_lists()

    def list_changes(self) -> ConfigChanges:
        """What saving the two lists changes in the file."""
        values: dict[tuple[str, ...], object] = {}
        remove: list[tuple[str, ...]] = []
        for name in {*self.aliases, *self.aliases_saved}:
            if name not in self.aliases:
                remove.append(("aliases", name))
            elif self.aliases[name] != self.aliases_saved.get(name):
                values[("aliases", name)] = self.aliases[name]
        endpoints = self._endpoint_changes()
        return ConfigChanges(values, tuple(remove), endpoints.endpoints, endpoints.remove_endpoints)

    def _endpoint_changes(self) -> ConfigChanges:
        kept = {e.origin for e in self.entries}
        removed = tuple(n for n in self.endpoints_saved if n not in kept)
        changes = []
        for entry in self.entries:
            new, old = entry.endpoint, self.endpoints_saved.get(entry.origin or "")
            if old is not None and new == old:
                continue
            values = {
                k: getattr(new, k)
                for k in ("url", "api_key_env", "api_key")
                if old is None or getattr(new, k) != getattr(old, k)
            }
            changes.append(EndpointChange(new.name, values, entry.origin))
        return ConfigChanges(endpoints=tuple(changes), remove_endpoints=removed)

    def _show_lists(self, select: str | None = None) -> None:
        """Redraw both lists; `select` highlights that alias or endpoint (one just added or edited)."""
        self.query_one(AliasList).show_aliases(self.aliases, self.aliases_saved, select)
        dirty = {c.name for c in self._endpoint_changes().endpoints}
        marks = {name: Text(t.plain[:1], style=t.style) for name, t in self.tests.items()}
        self.query_one(EndpointList).show_endpoints([e.endpoint for e in self.entries], dirty, marks, select)

    def _edited_lists(self, select: str | None = None) -> None:
        self.result = None
        self._show_lists(select)
        self._show_status()

    def _alias_check(self, old: str | None) -> Callable[[str], str | None]:
        def check(text: str) -> str | None:
            try:
                parse_alias_line(text, self.aliases, old)
            except ConfigError as exc:
                return str(exc)
            return None

        return check

    def action_add_alias(self) -> None:
        """Ask for `name = model reference` and add it to the list."""
        from tui.screens.modals.text_prompt import TextPromptModal

        def done(text: str | None) -> None:
            if text is not None:
                name, ref = parse_alias_line(text, self.aliases)
                self.aliases[name] = ref
                self._edited_lists(name)

        prompt = TextPromptModal(
            "New alias: name = model reference", placeholder="tiny = gemma-3-270m", check=self._alias_check(None)
        )
        self.app.push_screen(prompt, done)

    def action_edit_alias(self) -> None:
        """Change the highlighted alias's name or model."""
        from tui.screens.modals.text_prompt import TextPromptModal

        old = self.query_one(AliasList).selected_key
        if old is None:
            self.action_add_alias()
            return

        def done(text: str | None) -> None:
            if text is not None:
                name, ref = parse_alias_line(text, self.aliases, old)
                self.aliases = {(name if k == old else k): (ref if k == old else v) for k, v in self.aliases.items()}
                self._edited_lists(name)

        prompt = TextPromptModal(
            "Edit alias: name = model reference", f"{old} = {self.aliases[old]}", check=self._alias_check(old)
        )
        self.app.push_screen(prompt, done)

    def action_remove_alias(self) -> None:
        """Drop the highlighted alias (from the file on save)."""
        name = self.query_one(AliasList).selected_key
        if name is not None:
            del self.aliases[name]
            self._edited_lists()

    def _entry(self) -> EndpointEntry | None:
        name = self.query_one(EndpointList).selected_key
        return next((e for e in self.entries if e.endpoint.name == name), None)

    def action_add_endpoint(self) -> None:
        """Open the endpoint dialog for a new one."""

        def done(endpoint: RemoteEndpoint | None) -> None:
            if endpoint is not None:
                self.entries.append(EndpointEntry(None, endpoint))
                self._edited_lists(endpoint.name)

        taken = [e.endpoint.name for e in self.entries]
        self.app.push_screen(EndpointModal(None, taken, self.config_path), done)

    def action_edit_endpoint(self) -> None:
        """Open the endpoint dialog on the highlighted one."""
        entry = self._entry()
        if entry is None:
            self.action_add_endpoint()
            return

        def done(endpoint: RemoteEndpoint | None) -> None:
            if endpoint is not None:
                self.tests.pop(entry.endpoint.name, None)
                entry.endpoint = endpoint
                self._edited_lists(endpoint.name)

        taken = [e.endpoint.name for e in self.entries if e is not entry]
        self.app.push_screen(EndpointModal(entry.endpoint, taken, self.config_path), done)

    def action_remove_endpoint(self) -> None:
        """Drop the highlighted endpoint (from the file on save)."""
        entry = self._entry()
        if entry is not None:
            self.entries.remove(entry)
            self.tests.pop(entry.endpoint.name, None)
            self._edited_lists()

    def action_test_endpoint(self) -> None:
        """Ask the highlighted endpoint (the first when none is) for its models, in a worker."""
        entry = self._entry() or (self.entries[0] if self.entries else None)
        if entry is None:
            self._show_test("No remote endpoint to test: a adds one.")
            return
        name = entry.endpoint.name
        self._show_test(Text(f"Testing {name} at {entry.endpoint.url}…", style="italic"))
        self._probe(entry.endpoint)

    def _show_test(self, text: str | Text) -> None:
        line = self.query_one("#endpoint-test", Static)
        line.update(text)
        line.add_class("-shown")

    @work(thread=True, group="endpoint-test")
    def _probe(self, endpoint: RemoteEndpoint) -> None:
        self.post_message(EndpointTested(endpoint.name, probe_endpoint(endpoint)))

    def on_endpoint_tested(self, message: EndpointTested) -> None:
        result = probe_result(message.listing)
        self.tests[message.name] = result
        self._show_test(Text.assemble(f"{message.name}: ", result))
        self._show_lists()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if isinstance(event.option_list, EndpointList):
            self.action_edit_endpoint()
        elif isinstance(event.option_list, AliasList):
            self.action_edit_alias()
