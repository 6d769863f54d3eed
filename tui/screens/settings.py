"""The settings screen: edit config.toml (paths, the Hub token, Ollama, remote endpoints, aliases, defaults,
downloads, theme) and save every change in one write that keeps the user's comments and other keys.

Each field is checked as loading the file would check it, and a refusal shows
on the field with the same reason. Ctrl+S saves (asking before it creates a
missing models folder), then the running app uses the reloaded config, the
environment and flags still on top. Esc puts the focused field back; leaving
the screen keeps unsaved edits until you come back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Label, Static

from engines.config.edit import ConfigChanges, apply_changes, reload_config
from engines.config.fields import (
    ALIASES,
    FIELDS,
    GROUPS,
    REMOTE,
    SettingField,
    base_text,
    check_folder,
    effective_text,
    file_text,
    file_value,
    origin_note,
    problem,
    read_document,
    show_path,
    to_raw,
)
from engines.config.load import Config, default_config
from engines.config.tables import parse_endpoints
from engines.errors import ConfigError
from engines.secret import Secret
from tui.screens.modals.params import parse_stops
from tui.screens.settings_lists import SettingsLists
from tui.widgets.screen_bar import ScreenBar
from tui.widgets.setting_row import SettingRow
from tui.widgets.settings_lists import AliasList, EndpointList

DEFAULT_THEME = "textual-dark"
GROUP_HINTS = {ALIASES: "a adds · e edits · Delete removes"}


class SettingsSaved(Message):
    """The file was written and read back (posted from the save worker)."""

    def __init__(self, config: Config, count: int, texts: dict[str, str]) -> None:
        super().__init__()
        self.config = config
        self.count = count
        self.texts = texts
        """Each saved row's text, by field name."""


class SettingsNotSaved(Message):
    """The save was refused or failed; nothing was written."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class SettingsScreen(SettingsLists):
    """Edit and save config.toml; the running app follows what can change at once."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("escape", "revert", "Revert"),  # short: with a list focused its keys share the footer
    ]
    DEFAULT_CSS = """
    #settings-file { height: auto; padding: 0 1; background: $boost; }
    #settings-form { height: 1fr; }
    .settings-group { width: 1fr; padding: 0 1; margin-top: 1; color: $text-primary; text-style: bold; }
    .settings-sub { padding: 0 1; color: $text-muted; }
    #endpoint-test { height: auto; padding: 0 1 0 2; display: none; }
    #endpoint-test.-shown { display: block; }
    #settings-status { height: auto; max-height: 3; padding: 0 1; background: $boost; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.document: dict[str, Any] = {}
        self.read_error: str | None = None
        self.theme_before: str | None = None
        """The theme shown before the theme field was changed (it comes back when the field is reverted)."""
        self._rows: list[SettingRow] | None = None
        self._status_shown: Text | None = None

    # -- building ------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        self._read()
        yield Header()
        yield Static("", id="settings-file")
        # Not a Tab stop of its own (it would highlight nothing): focus moves through the fields, and it scrolls
        # to show the focused one.
        with VerticalScroll(id="settings-form", can_focus=False):
            for group in GROUPS:
                hint = GROUP_HINTS.get(group, "")
                yield Label(
                    Text.assemble(group, (f"  {hint}" if hint else "", "not bold dim")), classes="settings-group"
                )
                if group == ALIASES:
                    yield AliasList()
                for field in FIELDS:
                    if field.group == group:
                        yield self._row(field)
                if group == REMOTE:
                    yield Label(
                        "Remote endpoints · a adds · e edits · t tests · Delete removes", classes="settings-sub"
                    )
                    yield EndpointList()
                    yield Static("", id="endpoint-test")
        yield Static("", id="settings-status")
        yield ScreenBar("settings")
        yield Footer()

    def _row(self, field: SettingField) -> SettingRow:
        raw = file_value(self.document, field)
        default = effective_text(field, default_config())
        placeholder = field.hint or (f"default: {default}" if default else "")
        choices: tuple[str, ...] = ()
        if field.kind == "theme":
            choices = tuple(sorted(self.app.available_themes))
            if isinstance(raw, str) and raw not in choices:
                choices = (raw, *choices)  # a theme this app does not have: shown, so it can be kept or changed
            placeholder = f"default: {DEFAULT_THEME}"
        elif field.kind == "bool":
            choices = ("yes", "no")
        # What the read-only defaults under the user's file (a checkout's config.toml) set shows in the empty field.
        placeholder = base_text(field, self.runtime.config) or placeholder
        text = "" if field.kind == "secret" else file_text(field, raw)
        return SettingRow(field, text, placeholder=placeholder, choices=choices, secret_set=raw is not None)

    def on_mount(self) -> None:
        for row in self.rows:
            self._check(row)
        self._show_lists()
        self._show_file()
        self._show_status()
        self.query_one(f"#{FIELDS[0].id}").focus()

    def on_screen_resume(self) -> None:
        # Pick up what changed in the file meanwhile (an alias saved from the catalog) unless edits are pending.
        if not self._pending():
            self.reload()

    @property
    def rows(self) -> list[SettingRow]:
        """Every field's row, in screen order (composed once; a query per key press costs a few ms)."""
        if self._rows is None:
            self._rows = list(self.query(SettingRow))
        return self._rows

    def row(self, name: str) -> SettingRow:
        """The row of a field by its name in the file (theme, defaults.temperature)."""
        return next(r for r in self.rows if r.field.name == name)

    def _read(self) -> None:
        """Read the file's values: what each field, the alias list and the endpoint list start from."""
        path = self.config_path
        try:
            self.document = read_document(path)
            saved = parse_endpoints(self.document.get("remote_endpoints", []), str(path), [])
            self.read_error = None
        except ConfigError as exc:
            self.document, saved, self.read_error = {}, (), str(exc)
        self.read_lists(self.document.get("aliases"), saved)

    def reload(self) -> None:
        """Show the file as it is now, dropping unsaved edits."""
        self._read()
        for row in self.rows:
            text = "" if row.field.kind == "secret" else file_text(row.field, file_value(self.document, row.field))
            row.saved(text, secret_set=self._secret(row))
            if row.dirty:  # only a field the file changed under: the theme the user picked elsewhere stays
                row.revert()
            self._check(row)
        self._show_lists()
        self._show_file()

    def _secret(self, row: SettingRow) -> bool | None:
        if row.field.kind != "secret":
            return None
        return file_value(self.document, row.field) is not None

    # -- checking ------------------------------------------------------------------------------------------

    def _raw(self, row: SettingRow) -> object | None:
        """The value the row would write (None removes the key)."""
        if row.field.kind == "stops":
            return list(parse_stops(row.text)) or None
        return to_raw(row.field, row.text)

    def _check(self, row: SettingRow) -> None:
        """Show on the row why its value is refused, or what to know about it."""
        field, raw = row.field, self._raw(row)
        error = problem(field, raw, self.config_path)
        notes = [note] if (note := origin_note(field, self.runtime.config)) else []
        if field.kind == "path" and isinstance(raw, str) and error is None:
            folder = check_folder(raw, self.config_path.parent)
            error = folder.problem
            if folder.missing:
                notes.append(f"{show_path(folder.path)} does not exist yet: saving asks to create it")
            elif folder.read_only:
                notes.append("the folder is read-only: downloads cannot go there")
        if row.dirty and field.applies and error is None:
            notes.append(field.applies)
        row.show(error, " · ".join(notes) or None)

    def on_setting_row_edited(self, message: SettingRow.Edited) -> None:
        row = message.row
        self._check(row)
        if row.field.kind == "theme":
            self._preview_theme(row)
        if row.dirty:  # a new edit: the last save's message is old news (a field emptied by the save is not)
            self.result = None
        self._show_status()

    def _preview_theme(self, row: SettingRow) -> None:
        """A theme chosen shows at once; reverting the field brings back the one shown before."""
        if row.dirty:
            if self.theme_before is None:
                self.theme_before = self.app.theme
            self.app.theme = row.text if row.text in self.app.available_themes else DEFAULT_THEME
        elif self.theme_before is not None:
            self.app.theme, self.theme_before = self.theme_before, None

    # -- status ----------------------------------------------------------------------------------------------

    def _pending(self) -> list[str]:
        """What saving would change, by label."""
        names = [r.field.label for r in self.rows if r.dirty]
        return names + self.pending_in_lists()

    def _show_file(self) -> None:
        path = self.config_path
        text = Text.assemble("Editing ", (show_path(path), "bold"))
        text.append(" · your comments are kept" if path.exists() else " (created on the first save)")
        if (base := self.runtime.config.base_source) is not None:
            text.append(f" · over {show_path(base)} (defaults, never written)", style="dim")
        if self.read_error:
            text.append(f"\n{self.read_error}", style="bold red")
        self.query_one("#settings-file", Static).update(text)

    def _show_status(self) -> None:
        if self.result is not None:
            self._update_status(self.result)
            return
        bad = [r.field.label for r in self.rows if r.error]
        pending = self._pending()
        if bad:
            text = Text(f"Fix before saving: {', '.join(bad)}", style="bold red")
        elif pending:
            count = len(pending)
            text = Text(f"● {count} unsaved change{'s' if count != 1 else ''}: ", style="bold")
            text.append(", ".join(pending[:4]) + (", …" if count > 4 else ""), style="")
        else:
            text = Text("No unsaved changes", style="dim")
        text.append(" · ctrl+s saves · esc reverts a field", style="dim")
        self._update_status(text)

    def _update_status(self, text: Text) -> None:
        """Redraw the status line only when it changes: each update lays out the whole form again."""
        if text != self._status_shown:
            self._status_shown = text
            self.query_one("#settings-status", Static).update(text)

    def _say(self, text: str, *, error: bool = False) -> None:
        self.result = Text(text, style="bold red" if error else "")
        self._show_status()

    # -- reverting and saving ------------------------------------------------------------------------------

    def action_revert(self) -> None:
        """Put the focused field (or list) back as the file has it."""
        node = self.focused
        while node is not None and not isinstance(node, SettingRow | AliasList | EndpointList):
            node = node.parent  # type: ignore[assignment]
        if isinstance(node, SettingRow):
            node.revert()
        elif node is not None:
            self.revert_list(node)

    def action_revert_all(self) -> None:
        """Drop every unsaved edit."""
        self.reload()
        self.result = None
        self._show_status()

    def changes(self) -> ConfigChanges:
        """Every unsaved edit, as one set of changes to the file."""
        values: dict[tuple[str, ...], object] = {}
        remove: list[tuple[str, ...]] = []
        for row in self.rows:
            if row.dirty:
                raw = self._raw(row)
                if raw is None:
                    remove.append(row.field.key)
                else:
                    values[row.field.key] = Secret(str(raw)) if row.field.kind == "secret" else raw
        lists = self.list_changes()
        values.update(lists.set)
        return ConfigChanges(values, (*remove, *lists.remove), lists.endpoints, lists.remove_endpoints)

    def action_save(self) -> None:
        """Write every unsaved edit in one go (after asking to create a missing models folder)."""
        for row in self.rows:
            self._check(row)
        bad = [r for r in self.rows if r.error]
        if bad:
            bad[0].query_one("Input, Select").focus()
            # The first field's own reason, so the refusal says what to change without looking for the row.
            more = f" (and {', '.join(r.field.label for r in bad[1:])})" if bad[1:] else ""
            self._say(f"Not saved: {bad[0].field.label}: {bad[0].error}{more}; nothing was written", error=True)
            return
        changes = self.changes()
        if not changes:
            self._say("Nothing to save: the file already says all this.")
            return
        folder_row = self.row("models_dir")
        raw = self._raw(folder_row)
        folder = check_folder(raw, self.config_path.parent) if folder_row.dirty and isinstance(raw, str) else None
        if folder is None or not folder.missing:
            self._write(changes, None)
            return
        from tui.screens.modals.confirm import ConfirmModal

        def done(yes: bool | None) -> None:
            if yes:
                self._write(changes, folder.path)
            else:
                self._say(f"Not saved: {show_path(folder.path)} does not exist and was not created", error=True)

        question = f"The models folder {show_path(folder.path)} does not exist. Create it and save?"
        self.app.push_screen(ConfirmModal(question, yes="Create and save", no="Cancel"), done)

    def _write(self, changes: ConfigChanges, create: Path | None) -> None:
        texts = {r.field.name: r.text for r in self.rows if r.dirty}
        self._say("Saving…")
        self._save(self.config_path, changes, create, self.runtime.config, texts)

    @work(thread=True, exclusive=True, group="settings-save")
    def _save(
        self, path: Path, changes: ConfigChanges, create: Path | None, current: Config, texts: dict[str, str]
    ) -> None:
        try:
            if create is not None:
                create.mkdir(parents=True, exist_ok=True)
            apply_changes(path, changes)
            config = reload_config(path, current)
        except ConfigError as exc:
            self.post_message(SettingsNotSaved(str(exc)))
        except OSError as exc:
            self.post_message(SettingsNotSaved(f"cannot write {show_path(path)}: {exc.strerror or exc}"))
        else:
            count = len(changes.set) + len(changes.remove) + len(changes.endpoints) + len(changes.remove_endpoints)
            self.post_message(SettingsSaved(config, count, texts))

    def on_settings_saved(self, message: SettingsSaved) -> None:
        self.runtime.apply_config(message.config)
        self.theme_before = None  # the saved theme is the one to keep
        self._read()
        later = []
        for row in self.rows:
            if row.field.name in message.texts:
                row.saved(message.texts[row.field.name], secret_set=self._secret(row))
                if row.field.applies:
                    later.append(f"{row.field.label}: {row.field.applies}")
            self._check(row)
        self._show_lists()
        self._show_file()
        count = message.count
        summary = f"Saved {count} change{'s' if count != 1 else ''} to {show_path(self.config_path)}."
        self._say(" ".join([summary, *(f"{line}." for line in later[:3])]))

    def on_settings_not_saved(self, message: SettingsNotSaved) -> None:
        for row in self.rows:
            if f": {row.field.name} " in message.error or f": {row.field.name}." in message.error:
                row.show(message.error.split(": ", 1)[-1])
        self._say(f"Not saved: {message.error}", error=True)
