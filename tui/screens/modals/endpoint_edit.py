"""Add or edit a remote endpoint (an OpenAI-compatible server), and test that it answers, before saving it."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from engines.catalog.discover_net import RemoteListing
from engines.config.fields import check_text
from engines.config.tables import RemoteEndpoint
from engines.secret import Secret

TEST_TIMEOUT_S = 5.0


class EndpointTested(Message):
    """The answer of a connection test (posted from its worker thread)."""

    def __init__(self, name: str, listing: RemoteListing) -> None:
        super().__init__()
        self.name = name
        self.listing = listing


def probe_endpoint(endpoint: RemoteEndpoint) -> RemoteListing:
    """Ask the endpoint for its models, as the catalog does (blocking: call it from a worker thread)."""
    from engines.catalog.discover_net import list_remote

    return list_remote(endpoint, TEST_TIMEOUT_S)


def probe_result(listing: RemoteListing) -> Text:
    """✓ and the model count with the first names, or ✗ and the exact error."""
    if not listing.ok:
        return Text(f"✗ {listing.status}", style="bold red")
    names = ", ".join(m.name for m in listing.models[:3]) + (", …" if len(listing.models) > 3 else "")
    count = len(listing.models)
    text = Text(f"✓ {count} model{'s' if count != 1 else ''}", style="bold green")
    return text.append(f": {names}" if names else "", style="")


def endpoint_problem(endpoint: dict[str, object], taken: Collection[str], path: Path) -> str | None:
    """What loading a file holding this [[remote_endpoints]] entry would refuse, or None."""
    name = endpoint.get("name")
    if isinstance(name, str) and name.strip() in taken:
        return f"name: {name.strip()!r} is used by another endpoint; names must be unique"
    error = check_text({"remote_endpoints": [endpoint]}, path)
    return error.removeprefix("remote_endpoints[0]").lstrip(".: ") if error else None


class EndpointModal(ModalScreen[RemoteEndpoint | None]):
    """Name, URL, the variable that holds the key or the key itself; Ctrl+T tests, Ctrl+S keeps it, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "keep", "Keep", priority=True),
        Binding("ctrl+t", "test", "Test", priority=True),
    ]
    DEFAULT_CSS = """
    #endpoint-grid { grid-size: 2; grid-columns: 14 1fr; grid-rows: 1; grid-gutter: 1 1; height: auto; }
    #endpoint-grid > Label { color: $text-muted; }
    #endpoint-grid Input { border: none; height: 1; padding: 0 1; background: $boost; }
    #endpoint-grid Input:focus { background: $accent 30%; }
    #endpoint-key-row { height: 1; }
    #endpoint-key-row Input { width: 1fr; }
    #endpoint-key-row Button { min-width: 9; margin-left: 1; }
    #endpoint-test { height: auto; margin-top: 1; }
    """

    def __init__(self, endpoint: RemoteEndpoint | None, taken: Collection[str], path: Path) -> None:
        """`taken`: the other endpoints' names; `path`: the config file (its folder resolves relative paths)."""
        super().__init__()
        self.endpoint = endpoint
        self.taken = set(taken)
        self.path = path
        self.clear_key = False

    def compose(self) -> ComposeResult:
        e = self.endpoint
        with Vertical(classes="dialog wide", id="endpoint-dialog"):
            yield Label("Edit remote endpoint" if e else "Add a remote endpoint", classes="dialog-title")
            with Grid(id="endpoint-grid"):
                yield Label("Name")
                yield Input(e.name if e else "", placeholder="vllm-box (used as remote:NAME/model)", id="ep-name")
                yield Label("URL")
                yield Input(e.url if e else "", placeholder="http://gpu-box:8000/v1", id="ep-url")
                yield Label("Key variable")
                env = e.api_key_env if e and e.api_key_env else ""
                yield Input(env, placeholder="environment variable holding the key (optional)", id="ep-env")
                yield Label("API key")
                with Horizontal(id="endpoint-key-row"):
                    yield Input("", placeholder=self._key_placeholder(), password=True, id="ep-key")
                    yield Button("Clear", id="ep-clear", compact=True, disabled=not (e and e.api_key))
            yield Label("", id="ep-error", classes="dialog-error")
            yield Static("", id="endpoint-test")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Test (ctrl+t)", id="ep-test")
                yield Button("Keep (ctrl+s)", variant="primary", id="ep-keep")
                yield Button("Cancel (esc)", id="ep-cancel")
        yield Footer()  # the dialog's own keys, not those of the screen beneath

    def on_mount(self) -> None:
        self.query_one("#ep-name", Input).focus()

    def _key_placeholder(self) -> str:
        if self.endpoint is not None and self.endpoint.api_key is not None and not self.clear_key:
            return "stored in the file (hidden) · type to replace"
        return "or the key itself (the file is then 0600)"

    def _stored_key(self) -> Secret | None:
        typed = self.query_one("#ep-key", Input).value.strip()
        if typed:
            return Secret(typed)
        if self.clear_key or self.endpoint is None:
            return None
        return self.endpoint.api_key

    def _read(self) -> RemoteEndpoint | str:
        """The endpoint the fields describe, or what is wrong with it."""
        values = {k: self.query_one(f"#ep-{k}", Input).value.strip() for k in ("name", "url", "env")}
        table: dict[str, object] = {"name": values["name"], "url": values["url"]}
        if values["env"]:
            table["api_key_env"] = values["env"]
        key = self._stored_key()
        if key is not None:
            table["api_key"] = key.reveal()
        for required in ("name", "url"):
            if not values[required]:
                return f"{required} is required"
        problem = endpoint_problem(table, self.taken, self.path)
        if problem is not None:
            return problem
        return RemoteEndpoint(values["name"], values["url"].rstrip("/"), values["env"] or None, key)

    @on(Input.Changed)
    def _changed(self) -> None:
        read = self._read()
        self.query_one("#ep-error", Label).update(read if isinstance(read, str) else "")

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_keep()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ep-clear":
            self.clear_key = True
            self.query_one("#ep-key", Input).value = ""
            self.query_one("#ep-key", Input).placeholder = self._key_placeholder()
            event.button.disabled = True
            self._changed()
        elif event.button.id == "ep-test":
            self.action_test()
        elif event.button.id == "ep-keep":
            self.action_keep()
        else:
            self.action_cancel()

    def action_keep(self) -> None:
        read = self._read()
        if isinstance(read, str):
            self.query_one("#ep-error", Label).update(read)
            return
        self.dismiss(read)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_test(self) -> None:
        """Connect with what the fields say now, in a worker; the answer shows under the fields."""
        read = self._read()
        if isinstance(read, str):
            self.query_one("#ep-error", Label).update(read)
            return
        self.query_one("#endpoint-test", Static).update(Text(f"Testing {read.url}…", style="italic"))
        self._test(read)

    @work(thread=True, exclusive=True, group="endpoint-test")
    def _test(self, endpoint: RemoteEndpoint) -> None:
        self.post_message(EndpointTested(endpoint.name, probe_endpoint(endpoint)))

    def on_endpoint_tested(self, message: EndpointTested) -> None:
        self.query_one("#endpoint-test", Static).update(probe_result(message.listing))
