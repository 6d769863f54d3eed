"""The aliases and remote endpoints on the settings screen: a list each, with keys to add, edit and remove."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.binding import Binding
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from engines.config.tables import RemoteEndpoint


class SettingsList(OptionList):
    """A short list that grows with its items; `empty` says what to do when it has none."""

    DEFAULT_CSS = """
    SettingsList { height: auto; max-height: 8; margin: 0 1 0 1; border: none; padding: 0; }
    SettingsList:focus { background: $accent 30%; }
    """

    def __init__(self, empty: str, *, id: str) -> None:
        super().__init__(id=id, compact=True)
        self.empty = empty
        self.keys: list[str] = []
        """The name behind each line."""

    def show(self, lines: Sequence[tuple[str, Text]], select: str | None = None) -> None:
        """Replace the items, highlighting `select`, else the same name as before where it is still there."""
        current = select or self.selected_key
        self.clear_options()
        self.keys = [key for key, _ in lines]
        if not lines:
            self.add_option(Option(Text(self.empty, style="dim italic"), disabled=True))
            return
        self.add_options([Option(text) for _, text in lines])
        self.highlighted = self.keys.index(current) if current in self.keys else 0

    @property
    def selected_key(self) -> str | None:
        """The name of the highlighted item, if any."""
        index = self.highlighted
        return self.keys[index] if index is not None and 0 <= index < len(self.keys) else None


class AliasList(SettingsList):
    """Aliases: a short name for a model reference."""

    BINDINGS = [
        Binding("a", "screen.add_alias", "Add alias"),
        Binding("e", "screen.edit_alias", "Edit"),
        Binding("delete,x", "screen.remove_alias", "Remove"),
    ]

    def __init__(self) -> None:
        super().__init__("no aliases · a adds one (tiny = gemma-3-270m)", id="aliases")

    def show_aliases(self, aliases: Mapping[str, str], saved: Mapping[str, str], select: str | None = None) -> None:
        """One line per alias; those not saved yet are marked."""
        lines = []
        for name, ref in aliases.items():
            text = Text.assemble((name, "bold"), " → ", ref)
            if saved.get(name) != ref:
                text.append("  (not saved)", style="italic")
            lines.append((name, text))
        self.show(lines, select)


class EndpointList(SettingsList):
    """OpenAI-compatible servers: name, URL, where the key comes from, and the last connection test."""

    BINDINGS = [
        Binding("a", "screen.add_endpoint", "Add endpoint"),
        Binding("e", "screen.edit_endpoint", "Edit"),
        Binding("t", "screen.test_endpoint", "Test"),
        Binding("delete,x", "screen.remove_endpoint", "Remove"),
    ]

    def __init__(self) -> None:
        super().__init__("no remote endpoints · a adds one (vLLM, llama-server, LM Studio…)", id="endpoints")

    def show_endpoints(
        self, endpoints: Sequence[RemoteEndpoint], dirty: set[str], tests: Mapping[str, Text], select: str | None = None
    ) -> None:
        """One line per endpoint; `dirty` names those not saved yet, `tests` the last test result of each."""
        lines = []
        for e in endpoints:
            key = "key stored" if e.api_key else f"key ${e.api_key_env}" if e.api_key_env else "no key"
            text = Text.assemble((e.name, "bold"), f"  {e.url}  ", (key, "dim"))
            if e.name in dirty:
                text.append("  (not saved)", style="italic")
            if e.name in tests:
                text.append("  ")
                text.append_text(tests[e.name])
            lines.append((e.name, text))
        self.show(lines, select)
