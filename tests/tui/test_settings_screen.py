"""The settings screen, driven by keys: edits are checked on the field, saved in one write that keeps the
user's comments and unknown keys, and the running app follows."""

from __future__ import annotations

import difflib
import socket
import stat
from pathlib import Path

import pytest
from textual import events
from textual.color import Color
from textual.pilot import Pilot
from textual.widgets import Button, Input, OptionList, Select, Static
from textual.widgets._select import SelectCurrent

from engines.config.load import load_config, user_config_path
from engines.secret import Secret
from tests.engines.fake_openai import FakeOpenAI
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import footer_keys, palette, until
from tests.tui.test_instances_screen import drive
from tui.app import LlmTuiApp
from tui.screens.modals.confirm import ConfirmModal
from tui.screens.modals.endpoint_edit import EndpointModal
from tui.screens.modals.text_prompt import TextPromptModal
from tui.screens.settings import SettingsScreen
from tui.widgets.settings_lists import AliasList, EndpointList

USER_FILE = """\
# my llm-tui settings
# (written by hand)

n_ctx = 8192  # long chats
future_key = "kept"   # unknown to this version

[aliases]
# the small one
tiny = "gemma-3-270m"

[defaults]
temperature = 0.7  # warm
mystery_param = 3

[[remote_endpoints]]
name = "box"  # the GPU box
url = "http://127.0.0.1:9/v1"
api_key_env = "BOX_KEY"

[mystery]  # a table this version does not know
x = 1
"""


@pytest.fixture
def user_file(isolated_dirs: Path) -> Path:
    """The user's config.toml, with comments, blank lines, unknown keys and an unknown table."""
    path = user_config_path()
    path.parent.mkdir(parents=True)
    path.write_text(USER_FILE)
    return path


def settings(app: LlmTuiApp) -> SettingsScreen:
    screen = app.screen
    assert isinstance(screen, SettingsScreen)
    return screen


async def type_into(pilot: Pilot[int], field: str, text: str) -> None:
    """Focus a field's input, empty it with keys (end, ctrl+u) and type `text`; a long text (a path) is pasted,
    as a terminal delivers a paste, since typing it key by key costs seconds here."""
    screen = settings(pilot.app)  # type: ignore[arg-type]
    editor = screen.query_one(f"#{screen.row(field).field.id}", Input)
    editor.focus()
    await pilot.press("end", "ctrl+u")
    if len(text) > 12:
        editor.post_message(events.Paste(text))
        await pilot.pause()
    else:
        await pilot.press(*text)


def note(app: LlmTuiApp, field: str) -> str:
    """The line under a field: its error or note."""
    return str(settings(app).row(field).query_one(".setting-note", Static).render())


def status(app: LlmTuiApp) -> str:
    return str(settings(app).query_one("#settings-status", Static).render())


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in diff if d.startswith("- ")], [d[2:] for d in diff if d.startswith("+ ")]


def test_edits_are_saved_in_one_write_that_keeps_comments_and_unknown_keys(
    make_app: AppFactory, user_file: Path
) -> None:
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await type_into(pilot, "defaults.temperature", "0.3")
        await type_into(pilot, "defaults.top_k", "40")
        await type_into(pilot, "gpu_memory_fraction", "0.5")
        await type_into(pilot, "n_ctx", "4096")
        assert "4 unsaved changes" in status(app)
        assert user_file.read_text() == USER_FILE  # nothing written before ctrl+s
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 4 changes" in status(app), "the save")
        removed, added = changed_lines(USER_FILE, user_file.read_text())
        assert removed == ["n_ctx = 8192  # long chats", "temperature = 0.7  # warm"]
        assert sorted(added) == [
            "gpu_memory_fraction = 0.5",
            "n_ctx = 4096  # long chats",
            "temperature = 0.3  # warm",
            "top_k = 40",
        ]
        config = load_config(user_file, env={})
        assert (config.n_ctx, config.gpu_memory_fraction) == (4096, 0.5)
        assert (config.defaults.temperature, config.defaults.top_k) == (0.3, 40)
        live = app.runtime.config  # the running app uses the saved file
        assert (live.n_ctx, live.defaults.temperature, live.source) == (4096, 0.3, user_file)
        assert not any(row.dirty for row in settings(app).rows)
        assert "Temperature: applies to new chats" in status(app)

    drive(app, test)


@pytest.mark.parametrize(
    ("field", "text", "reason"),
    [
        ("gpu_memory_fraction", "1.5", "gpu_memory_fraction must be a number above 0 and at most 1, got 1.5"),
        ("defaults.temperature", "-1", "defaults: temperature must be between 0 and 5, got -1"),
        ("defaults.top_k", "x", 'defaults.top_k must be an integer, got "x"'),
        ("telemetry_interval_s", "0", "telemetry_interval_s must be a positive number of seconds, got 0"),
    ],
)
def test_invalid_values_are_refused_on_the_field_and_nothing_is_written(
    make_app: AppFactory, user_file: Path, field: str, text: str, reason: str
) -> None:
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await type_into(pilot, field, text)
        await pilot.pause()
        assert reason in note(app, field)
        row = settings(app).row(field)
        await pilot.press("tab", "ctrl+s")  # from another field: the refusal brings focus back to the bad one
        await pilot.pause()
        assert status(app).startswith(f"Not saved: {row.field.label}: ") and reason in status(app)
        assert app.focused is row.query_one(Input) and row.text == text  # kept for correcting
        await pilot.press("shift+tab", "tab", "ctrl+s", "ctrl+s")
        assert user_file.read_text() == USER_FILE
        assert app.focused is row.query_one(Input)
        await pilot.press("escape")  # reverts the field and its error
        assert row.error is None
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert status(app).startswith("Nothing to save") and user_file.read_text() == USER_FILE

    drive(app, test)


def test_a_models_folder_that_is_a_file_or_cannot_be_made_is_refused(
    make_app: AppFactory, user_file: Path, isolated_dirs: Path
) -> None:
    (isolated_dirs / "a-file").write_text("not a folder")
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await type_into(pilot, "models_dir", str(isolated_dirs / "a-file"))
        await pilot.pause()
        assert "a-file is a file, not a folder" in note(app, "models_dir")
        await type_into(pilot, "models_dir", str(isolated_dirs / "a-file" / "models"))
        await pilot.pause()
        assert "cannot create" in note(app, "models_dir") and "is a file, not a folder" in note(app, "models_dir")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "Not saved: Models folder: " in status(app)
        assert user_file.read_text() == USER_FILE

    drive(app, test)


def test_a_missing_models_folder_is_created_on_yes_and_left_alone_on_no(
    make_app: AppFactory, user_file: Path, isolated_dirs: Path
) -> None:
    folder = isolated_dirs / "new" / "models"
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await type_into(pilot, "models_dir", str(folder))
        await pilot.pause()
        assert "does not exist yet" in note(app, "models_dir")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question")
        await pilot.press("n")
        await until(pilot, lambda: "was not created" in status(app), "the refusal")
        assert not folder.exists() and not folder.parent.exists()
        assert user_file.read_text() == USER_FILE
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question again")
        await pilot.press("y")
        await until(pilot, lambda: "Saved 1 change" in status(app), "the save")
        assert folder.is_dir()
        assert load_config(user_file, env={}).models_dir == folder
        assert app.runtime.config.models_dir == folder

    drive(app, test)


def test_the_token_is_typed_masked_saved_private_never_shown_and_can_be_cleared(
    make_app: AppFactory, user_file: Path
) -> None:
    token = "hf_SuperSecret123"
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        row = settings(app).row("hf_token")
        assert "not set" in row.query_one(Input).placeholder
        await type_into(pilot, "hf_token", token)
        assert row.query_one(Input).password
        assert token not in app.export_screenshot()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 1 change" in status(app), "the save")
        assert f'hf_token = "{token}"' in user_file.read_text()
        assert stat.S_IMODE(user_file.stat().st_mode) == 0o600
        assert app.runtime.config.hf_token == Secret(token)
        assert row.query_one(Input).value == ""  # the field never holds the saved token
        assert "set (hidden)" in row.query_one(Input).placeholder
        assert token not in app.export_screenshot()

        row.query_one("Button").focus()
        await pilot.press("enter")  # Clear
        assert "removed from the file on save" in row.query_one(Input).placeholder
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "hf_token" not in user_file.read_text(), "the token removed")
        assert user_file.read_text() == USER_FILE
        assert app.runtime.config.hf_token is None
        assert "not set" in row.query_one(Input).placeholder

    drive(app, test)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_remote_endpoints_are_added_tested_edited_removed_and_saved(make_app: AppFactory, user_file: Path) -> None:
    app = make_app(screen="settings", launch=False)
    fake = FakeOpenAI(("alpha", "beta"), api_key="sk-right")

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = settings(app)
        screen.query_one("#endpoints").focus()
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, EndpointModal), "the endpoint dialog")
        modal = app.screen
        await pilot.press(*"lab")
        modal.query_one("#ep-url", Input).focus()
        await pilot.press(*fake.endpoint)
        modal.query_one("#ep-key", Input).focus()
        await pilot.press(*"sk-wrong")
        await pilot.press("ctrl+t")
        result = modal.query_one("#endpoint-test", Static)
        await until(pilot, lambda: "✗" in str(result.render()), "the test with a wrong key")
        assert "HTTP 401" in str(result.render()) and "sk-wrong" not in str(result.render())
        await pilot.press(*["backspace"] * 5, *"right")
        await pilot.press("ctrl+t")
        await until(pilot, lambda: "✓ 2 models: alpha, beta" in str(result.render()), "the test that works")
        await pilot.press("ctrl+s")  # keep it in the list
        await until(pilot, lambda: app.screen is screen, "back on the screen")
        assert "endpoint lab" in status(app)

        await pilot.press("t")  # test the highlighted one from the list
        line = screen.query_one("#endpoint-test", Static)
        await until(pilot, lambda: "lab: ✓ 2 models" in str(line.render()), "the list's test")

        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EndpointModal), "the dialog again")
        app.screen.query_one("#ep-url", Input).value = f"http://127.0.0.1:{closed_port()}/v1"
        await pilot.press("ctrl+t")
        result = app.screen.query_one("#endpoint-test", Static)
        await until(pilot, lambda: "✗" in str(result.render()), "the closed port's error")
        assert "not reachable" in str(result.render())
        await pilot.press("escape")  # cancel: the endpoint keeps the fake's URL
        await until(pilot, lambda: app.screen is screen, "back again")

        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 1 change" in status(app), "the save")
        text = user_file.read_text()
        removed, added = changed_lines(USER_FILE, text)
        assert removed == []
        assert added == ["[[remote_endpoints]]", 'name = "lab"', f'url = "{fake.endpoint}"', 'api_key = "sk-right"', ""]
        assert text.index('name = "lab"') < text.index("[mystery]")  # beside the other endpoint
        assert stat.S_IMODE(user_file.stat().st_mode) == 0o600
        assert [e.name for e in app.runtime.config.remote_endpoints] == ["box", "lab"]

        screen.query_one("#endpoints").focus()
        await pilot.press("home", "delete")  # remove "box", the first
        assert "endpoint box" in status(app)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 1 change" in status(app) and "box" not in user_file.read_text(), "saved")
        assert [e.name for e in load_config(user_file, env={}).remote_endpoints] == ["lab"]
        assert "# the GPU box" not in user_file.read_text() and "[mystery]" in user_file.read_text()

    with fake:
        drive(app, test)


def test_aliases_are_added_refused_on_a_loop_and_removed(make_app: AppFactory, user_file: Path) -> None:
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = settings(app)
        screen.query_one("#aliases").focus()
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, TextPromptModal), "the alias prompt")
        await pilot.press(*"gemma-3-270m = tiny", "enter")
        hint = app.screen.query_one("#hint", Static)
        assert "would loop: gemma-3-270m -> tiny -> gemma-3-270m" in str(hint.render())
        app.screen.query_one(Input).value = ""
        await pilot.press(*"qwen = qwen2.5-0.5b-instruct-q4_k_m", "enter")
        await until(pilot, lambda: app.screen is screen, "back on the screen")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 1 change" in status(app), "the save")
        assert dict(load_config(user_file, env={}).aliases) == {
            "tiny": "gemma-3-270m",
            "qwen": "qwen2.5-0.5b-instruct-q4_k_m",
        }
        assert app.runtime.config.aliases["qwen"] == "qwen2.5-0.5b-instruct-q4_k_m"

        assert screen.query_one("#aliases", AliasList).highlighted == 1  # the one just added
        await pilot.press("home", "delete")  # tiny, the first
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "tiny" not in user_file.read_text(), "tiny removed")
        assert dict(load_config(user_file, env={}).aliases) == {"qwen": "qwen2.5-0.5b-instruct-q4_k_m"}

    drive(app, test)


def test_the_theme_applies_at_once_reverts_with_escape_and_persists(make_app: AppFactory, user_file: Path) -> None:
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = settings(app)
        select = screen.row("theme").query_one(Select)
        select.focus()
        await pilot.press("enter", *"nord", "enter")
        await until(pilot, lambda: app.theme == "nord", "the theme to apply")
        await pilot.press("escape")  # back to the file's (none: the running theme)
        assert app.theme == "textual-dark" and screen.row("theme").text == ""
        await pilot.press("enter", *"gruvbox", "enter")
        await until(pilot, lambda: app.theme == "gruvbox", "gruvbox")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 1 change" in status(app), "the save")
        assert load_config(user_file, env={}).theme == "gruvbox"
        assert app.runtime.config.theme == "gruvbox" and app.theme == "gruvbox"

    drive(app, test)


def test_unsaved_edits_stay_when_you_leave_and_come_back(make_app: AppFactory, user_file: Path) -> None:
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await type_into(pilot, "defaults.seed", "42")
        await pilot.press("f1")
        await until(pilot, lambda: app.current_mode == "chat", "the chat")
        await pilot.press("f8")
        await until(pilot, lambda: app.current_mode == "settings", "settings again")
        assert settings(app).row("defaults.seed").text == "42"
        assert "1 unsaved change: Seed" in status(app)
        assert user_file.read_text() == USER_FILE
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 1 change" in status(app), "the save")
        assert load_config(user_file, env={}).defaults.seed == 42

    drive(app, test)


def test_a_value_the_environment_overrides_says_so_and_stays_on_top_after_a_save(
    make_app: AppFactory, user_file: Path, isolated_dirs: Path
) -> None:
    app = make_app(screen="settings", launch=False)
    app.runtime.config = load_config(env={"LLM_TUI_N_CTX": "2048"}, cwd=isolated_dirs)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        expected = "set by LLM_TUI_N_CTX (= 2048) for this run; the file's value applies without it"
        assert note(app, "n_ctx") == expected
        assert settings(app).row("n_ctx").text == "8192"  # the file's value is what the field edits
        await type_into(pilot, "n_ctx", "16384")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 1 change" in status(app), "the save")
        assert load_config(user_file, env={}).n_ctx == 16384
        assert app.runtime.config.n_ctx == 2048 and app.runtime.config.origins["n_ctx"] == "env LLM_TUI_N_CTX"

    drive(app, test)


def test_without_a_config_file_the_users_is_created(make_app: AppFactory, isolated_dirs: Path) -> None:
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        assert "created on the first save" in str(settings(app).query_one("#settings-file", Static).render())
        await type_into(pilot, "telemetry_interval_s", "2")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 1 change" in status(app), "the save")
        assert user_config_path().read_text() == "telemetry_interval_s = 2\n"
        assert "applies" not in status(app)  # at once: the running poller samples every 2 s from now on
        assert app.runtime.telemetry.interval_s == 2.0

    drive(app, test)


def test_run_from_a_checkout_saves_to_the_users_file_and_leaves_the_checkouts_untouched(
    make_app: AppFactory, isolated_dirs: Path
) -> None:
    """As the Quickstart runs it: the working folder holds the documented defaults (config.toml); a save goes to the
    user's file (created then) and the folder's file stays byte for byte as it was."""
    checkout = isolated_dirs / "config.toml"
    checkout.write_text('# documented defaults\ntheme = "textual-dark"\nn_ctx = 4096\nn_gpu_layers = 2\n')
    before = checkout.read_bytes()
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = settings(app)
        assert screen.config_path == user_config_path()
        assert "created on the first save" in str(screen.query_one("#settings-file", Static).render())
        assert screen.row("n_gpu_layers").placeholder == f"2 (from {checkout})" and not note(app, "n_gpu_layers")
        select = screen.row("theme").query_one(Select)
        select.focus()
        await pilot.press("enter", *"nord", "enter")
        await until(pilot, lambda: app.theme == "nord", "the theme to apply")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 1 change" in status(app), "the save")
        assert checkout.read_bytes() == before
        assert user_config_path().read_text() == 'theme = "nord"\n'
        config = app.runtime.config
        assert (config.theme, config.n_gpu_layers, config.source, config.base_source) == (
            "nord",
            2,
            user_config_path(),
            checkout,
        )
        assert load_config(env={}, cwd=isolated_dirs).theme == "nord"  # the next start keeps the user's choice

    drive(app, test)


def color_distance(a: Color, b: Color) -> int:
    return sum(abs(x - y) for x, y in zip(a.rgb, b.rgb, strict=True))


def test_focus_shows_on_every_editor_and_list_in_every_theme(make_app: AppFactory, user_file: Path) -> None:
    """A Select, an Input and a list each look clearly different focused than not, in every theme (a Select's
    focus used to change nothing at all)."""
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        screen = settings(app)
        select = screen.row("theme").query_one(Select)
        current = select.query_one(SelectCurrent)
        editor = screen.query_one(f"#{screen.row('n_ctx').field.id}", Input)
        aliases = screen.query_one(AliasList)
        faint: list[str] = []
        for theme in sorted(app.available_themes):
            app.theme = theme
            select.focus()
            await pilot.pause()
            select_on, editor_off, list_off = (w.background_colors[1] for w in (current, editor, aliases))
            editor.focus()
            await pilot.pause()
            editor_on, select_off = editor.background_colors[1], current.background_colors[1]
            aliases.focus()
            await pilot.pause()
            list_on = aliases.background_colors[1]
            for name, off, on, least in (
                ("select", select_off, select_on, 60),
                ("input", editor_off, editor_on, 60),
                ("list", list_off, list_on, 30),
            ):
                if color_distance(off, on) < least:
                    faint.append(f"{theme}: {name} {off.hex} → {on.hex}")
        assert not faint

    drive(app, test)


def test_every_tab_stop_is_a_field_or_a_list_and_the_footer_fits(make_app: AppFactory, user_file: Path) -> None:
    """The scrolling form was a Tab stop that highlighted nothing; and with the endpoint list focused its keys and
    the screen's fill the footer, which must not be cut at 80 columns."""
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        stops: list[object] = []
        while app.focused not in stops:
            stops.append(app.focused)
            assert isinstance(app.focused, Input | Select | OptionList | Button), app.focused
            await pilot.press("tab")
        assert len(stops) == len(settings(app).rows) + 2  # every field, and the two lists
        settings(app).query_one(EndpointList).focus()
        await pilot.pause()
        assert footer_keys(app) == ["a Add endpoint", "e Edit", "t Test", "del Remove", "^s Save", "esc Revert"]

    drive(app, test, size=(80, 24))


def test_stop_sequences_are_typed_as_the_chat_dialog_types_them(make_app: AppFactory, user_file: Path) -> None:
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await type_into(pilot, "defaults.stop", "###,END\\n,a\\,b")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 1 change" in status(app), "the save")
        assert load_config(user_file, env={}).defaults.stop == ("###", "END\n", "a,b")
        assert app.runtime.config.defaults.stop == ("###", "END\n", "a,b")

    drive(app, test)


def test_coming_back_shows_what_another_screen_saved(make_app: AppFactory, user_file: Path) -> None:
    app = make_app(screen="settings", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await pilot.press("f1")
        await until(pilot, lambda: app.current_mode == "chat", "the chat")
        app.runtime.set_alias("q7", "qwen-7b-q4_k_m")  # what `a` on the catalog does
        await pilot.press("f8")
        await until(pilot, lambda: "q7" in settings(app).aliases, "the new alias")
        assert settings(app).aliases_saved == {"tiny": "gemma-3-270m", "q7": "qwen-7b-q4_k_m"}
        assert "No unsaved changes" in status(app)

    drive(app, test)


@pytest.mark.parametrize("first", ["chat", "settings"])
def test_opening_settings_keeps_a_theme_picked_elsewhere(make_app: AppFactory, user_file: Path, first: str) -> None:
    app = make_app(screen=first, launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await pilot.press("f1")
        await until(pilot, lambda: app.current_mode == "chat", "the chat")
        app.theme = "nord"  # what the palette's theme picker does
        await pilot.press("f8")
        await until(pilot, lambda: app.current_mode == "settings", "settings")
        await pilot.pause()
        assert app.theme == "nord"

    drive(app, test)


def test_the_command_palette_opens_settings_actions_from_another_screen(make_app: AppFactory, user_file: Path) -> None:
    app = make_app(screen="chat", launch=False)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await palette(pilot, "Add alias")
        await until(pilot, lambda: isinstance(app.screen, TextPromptModal), "the alias dialog")
        assert app.current_mode == "settings"
        await pilot.press(*"big = gemma-3-270m", "enter")
        await until(pilot, lambda: isinstance(app.screen, SettingsScreen), "back on the screen")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved 1 change" in status(app), "the save")
        assert dict(load_config(user_file, env={}).aliases) == {"tiny": "gemma-3-270m", "big": "gemma-3-270m"}

    drive(app, test)


def test_a_newline_alone_is_a_stop_sequence() -> None:
    from tui.screens.modals.params import parse_stops

    assert parse_stops("\\n") == ("\n",)
    assert parse_stops("\\n\\n, ,\\t,END") == ("\n\n", "\t", "END")  # the lone space between commas is dropped
