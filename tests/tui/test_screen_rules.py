"""The screen rules of CONTRIBUTING.md, one test per rule that can be automated, over every screen and modal in the
sweep's states: text is not cut, every Input shows what is typed, the focused widget looks different in every
theme tried, the footer lists the focused widget's keys, install hints name the extra, README's keys are bound.

One app per state collects what every rule finds (building and reaching a state costs seconds); each rule's test
then reports its own findings for that state."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, Static, TextArea
from textual.widgets._footer import Footer, FooterKey

from tests.tui.sweep_states import STATES, Env, State, press, restore, widget_label

ROOT = Path(__file__).resolve().parents[2]
THEMES = ("textual-dark", "textual-light", "nord", "gruvbox", "solarized-light")
"""Dark and light themes of different make: a focus style that only works in one shows up here."""
RULE_STATES = [
    s
    for s in STATES
    if s.name
    in (
        "chat/no-model",
        "chat/ready",
        "chat/streaming",
        "chat/editing",
        "catalog/every-kind-of-row",
        "gauges/ready",
        "instances/ready",
        "downloads/every-status",
        "embeddings/ready",
        "compare/running",
        "compare/finished",
        "settings/invalid-field",
    )
    or "/" not in s.name
    or s.name.startswith(("launch-dialog/", "hub-"))
]
"""Every screen in its fullest state, and every modal."""
SIZES = {"80x24": (80, 24), "100x30": (100, 30)}


@dataclass
class Findings:
    """What each rule found on one state (empty lists: the rule holds)."""

    cut: list[str] = field(default_factory=list)
    hidden_input: list[str] = field(default_factory=list)
    focus_invisible: list[str] = field(default_factory=list)
    footer_missing: list[str] = field(default_factory=list)
    bare_hints: list[str] = field(default_factory=list)


FOUND: dict[tuple[str, str], Findings] = {}
"""Findings by (state, size), collected once per state for all the rule tests."""


name_of = widget_label


def lines_of(widget: Widget) -> list[str]:
    """The text the widget draws inside its border and padding."""
    width, height = widget.outer_size
    gutter = widget.styles.gutter
    strips = widget.render_lines(Region(0, 0, width, height))
    inner = strips[gutter.top : height - gutter.bottom]
    return [strip.crop(gutter.left, width - gutter.right).text for strip in inner]


def squash(text: str) -> str:
    """Text without whitespace: wrapping moves line breaks, never characters."""
    return "".join(text.split())


def shows_horizontally(widget: Widget) -> bool:
    """False when an ancestor that cannot be scrolled sideways by the user clips the widget at its right edge."""
    region = widget.region
    for ancestor in widget.ancestors:
        if not isinstance(ancestor, Widget):
            break
        if ancestor.is_scrollable and ancestor.focusable and ancestor.show_horizontal_scrollbar:
            return True
        if ancestor.show_horizontal_scrollbar and not isinstance(ancestor, Footer):
            return True  # a visible scrollbar says there is more
        box = ancestor.content_region if not isinstance(ancestor, Footer) else ancestor.region
        if region.right > box.right and ancestor.styles.overflow_x != "scroll":
            return False
    screen = widget.screen
    return region.right <= screen.size.width


def cut_text(app: App[Any]) -> list[str]:
    """Static and Label lines that show less than their text, and footer keys off the edge or under another."""
    out: list[str] = []
    screen = app.screen
    for widget in screen.query(Static):
        if not widget.display or not widget.visible or widget.region.area == 0 or not widget.is_on_screen:
            continue
        text = str(widget.render())
        if not text.strip():
            continue
        shown = "\n".join(lines_of(widget))
        if squash(text) not in squash(shown):
            out.append(f"{name_of(widget)} shows {shown.strip()!r} of {text!r}")
        elif not shows_horizontally(widget):
            out.append(f"{name_of(widget)} ({text!r}) runs past the right edge of what holds it")
    keys = [k for k in screen.query(FooterKey) if k.display and k.region.area]
    docked = [k for k in keys if k.has_class("-command-palette")]
    for key in keys:
        label = f"footer key {key.key_display or key.key} {key.description!r}"
        if key.region.right > screen.size.width:
            out.append(f"{label} runs past the right edge")
        elif any(d is not key and d.region.overlaps(key.region) for d in docked):
            out.append(f"{label} is under the command palette key")
    return out


def bare_hints(app: App[Any]) -> list[str]:
    """Install hints on screen that lost their extra (e.g. to markup taking '[ollama]' for a tag)."""
    out: list[str] = []
    for widget in app.screen.query(Static):
        if widget.display and widget.region.area:
            shown = " ".join(" ".join(lines_of(widget)).split())
            for match in HINT.finditer(shown):
                if match.group("extra") is None:
                    out.append(f"{name_of(widget)}: {shown!r}")
    return out


async def hidden_inputs(pilot: Pilot[int], state: State) -> list[str]:
    """Inputs and text areas that do not show 'abc' typed into them (a password field: three mask characters)."""
    app = pilot.app
    out: list[str] = []
    count = len(app.screen.query("Input, TextArea"))
    for index in range(count):
        await restore(pilot, state)  # typing may have opened or closed something
        fields = list(app.screen.query("Input, TextArea"))
        if index >= len(fields):
            break
        widget = fields[index]
        if not widget.focusable or not widget.display or (isinstance(widget, TextArea) and widget.read_only):
            continue
        widget.focus()
        await pilot.pause()
        before = widget.value if isinstance(widget, Input) else cast(TextArea, widget).text
        for key in ("end", "a", "b", "c"):
            await press(pilot, key)
        widget.scroll_visible(animate=False, immediate=True)
        await pilot.pause()
        typed = "•••" if isinstance(widget, Input) and widget.password else "abc"
        shown = "\n".join(lines_of(widget))
        if typed not in shown:
            out.append(f"{name_of(widget)} shows {shown!r} after typing {typed!r}")
        if isinstance(widget, Input):
            widget.value = before
        else:
            cast(TextArea, widget).text = before
        await pilot.pause()
    return out


def look(widget: Widget) -> list[tuple[str, str]]:
    """What the screen shows where the widget is, text and styles, children and tints included.

    Textual has no public call for the composited screen; `_compositor.render_strips` is what the screen paints,
    and test_the_looks_are_read_from_the_screen fails if it moves."""
    region = widget.region
    strips = widget.screen._compositor.render_strips()
    crop = strips[region.y : region.bottom]
    return [(s.text, str(s.style)) for strip in crop for s in strip.crop(region.x, region.right)]


async def settled_styles(pilot: Pilot[Any], node: Widget) -> None:
    """Let a focus change land, then apply the :focus rules to `node` and below at once (they are otherwise applied
    when the app next finds time, which a busy machine delays past a pause)."""
    await pilot.pause()
    pilot.app.stylesheet.update_nodes(node.walk_children(with_self=True), animate=False)
    await pilot.pause()


async def invisible_focus(pilot: Pilot[int], state: State) -> list[str]:
    """Focus stops that look the same focused and unfocused (neither the widget nor its parent changes)."""
    app = pilot.app
    out: list[str] = []
    for theme in THEMES:
        app.theme = theme
        await pilot.pause()
        app.refresh_css(animate=False)
        await restore(pilot, state)
        for widget in list(app.screen.focus_chain):
            if not widget.is_attached:
                continue
            holder = widget.parent if isinstance(widget.parent, Widget) else widget
            widget.focus()  # scrolled into view: a widget below the fold shows nothing either way
            await settled_styles(pilot, holder)
            focused, holder_focused = look(widget), look(holder)
            app.screen.set_focus(None)
            await settled_styles(pilot, holder)
            if look(widget) == focused and look(holder) == holder_focused:
                out.append(f"{theme}: {name_of(widget)}")
    app.theme = "textual-dark"
    await pilot.pause()
    return out


async def footer_without_own_keys(pilot: Pilot[int], state: State) -> list[str]:
    """Focus stops whose own shown bindings are not in the footer."""
    app = pilot.app
    out: list[str] = []
    for widget in list(app.screen.focus_chain):
        if not widget.is_attached:
            continue
        widget.focus(scroll_visible=False)
        await pilot.pause()
        own = [
            active.binding
            for active in app.screen.active_bindings.values()
            if active.node is widget and active.binding.show and active.enabled
        ]
        listed = {k.action for k in app.screen.query(FooterKey)}
        # The footer shows an action once, under its first key ("delete,d": delete).
        missing = sorted({f"{b.key} ({b.action})" for b in own if b.action not in listed})
        if missing:
            out.append(f"{name_of(widget)}: {', '.join(missing)}")
    return out


def findings(state: State, env: Env, size: tuple[int, int]) -> Findings:
    """Every rule's findings on `state` at `size`, collected in one app the first time a test asks."""
    key = (state.name, f"{size[0]}x{size[1]}")
    if key in FOUND:
        return FOUND[key]
    found = Findings()
    app = state.build(env)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            if state.setup is not None:
                await state.setup(pilot, env)
            await restore(pilot, state)
            app.clear_notifications()  # a toast over a line is not the line's fault
            await pilot.pause()
            found.cut = cut_text(app)
            if found.cut:  # a streamed word can land between the last paint and this read: a real cut stays cut
                await pilot.pause(0.1)
                found.cut = cut_text(app)
            if size != SIZES["80x24"]:
                return  # the other rules are read at 80x24 only (the focus walk over five themes is the cost)
            found.bare_hints = bare_hints(app)
            found.footer_missing = await footer_without_own_keys(pilot, state)
            found.focus_invisible = await invisible_focus(pilot, state)
            found.hidden_input = await hidden_inputs(pilot, state)

    asyncio.run(main())
    FOUND[key] = found
    return found


def ids(states: list[State]) -> list[str]:
    return [s.name for s in states]


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("state", RULE_STATES, ids=ids(RULE_STATES))
def test_text_is_not_cut(state: State, size: tuple[int, int], env: Env) -> None:
    found = findings(state, env, size).cut
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("state", RULE_STATES, ids=ids(RULE_STATES))
def test_install_hints_shown_name_the_extra(state: State, env: Env) -> None:
    found = findings(state, env, SIZES["80x24"]).bare_hints
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("state", RULE_STATES, ids=ids(RULE_STATES))
def test_every_input_shows_what_is_typed(state: State, env: Env) -> None:
    found = findings(state, env, SIZES["80x24"]).hidden_input
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("state", RULE_STATES, ids=ids(RULE_STATES))
def test_the_focused_widget_looks_different(state: State, env: Env) -> None:
    found = findings(state, env, SIZES["80x24"]).focus_invisible
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("state", RULE_STATES, ids=ids(RULE_STATES))
def test_the_footer_lists_the_focused_widgets_keys(state: State, env: Env) -> None:
    found = findings(state, env, SIZES["80x24"]).footer_missing
    assert found == [], "\n".join(found)


# -- install hints ---------------------------------------------------------------------------------------------

HINT = re.compile(r"pip install '?\"?llm-tui(?P<extra>\[[^\]'\"]+\])?")


def test_install_hints_name_the_extra() -> None:
    bare: list[str] = []
    for folder in ("engines", "tui"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                for match in HINT.finditer(line):
                    if match.group("extra") is None:
                        bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert bare == []


def test_the_launch_dialog_names_the_extra_of_a_missing_engine(env: Env) -> None:
    state = next(s for s in STATES if s.name == "launch-dialog/engine-missing")
    app = state.build(env)
    shown: list[str] = []

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert state.setup is not None
            await state.setup(pilot, env)
            await restore(pilot, state)
            shown.extend(str(w.render()) for w in app.screen.query(Static))

    asyncio.run(main())
    text = " ".join(" ".join(shown).split())
    assert "pip install 'llm-tui[llama]'" in text, text
    assert "pip install 'llm-tui[transformers]'" in text, text


# -- README's key tables -----------------------------------------------------------------------------------------

KEY_NAMES = {"/": "slash", "+": "plus", "-": "minus", "enter": "enter", "esc": "escape", "tab": "tab"}
KEY_NAMES |= {"delete": "delete", "↑": "up", "↓": "down"}
HANDLED_BY_THE_PROMPT = {"enter", "ctrl+j"}
"""Keys the chat prompt handles in its own key handler (PromptInput._on_key) rather than by a binding; the chat
tests press them (test_chat_screen.py)."""


PUSHED_SCREENS = {
    "The Hub search screen": "hub-search",
    "The Hub files screen": "hub-files",
    "The Evaluate screen": "evaluate",
}
"""Screens pushed over another (no F-key of their own): a paragraph that starts by naming one documents its keys."""


def readme_key_tables() -> list[tuple[str, list[str]]]:
    """(screen, keys) for each `| key | does |` table of README.md; the screen is the one the paragraph around the
    table starts by naming (PUSHED_SCREENS), else the F-key the paragraph names, else the chat (the first screen,
    and the app-wide keys)."""
    from tui.widgets.screen_bar import SCREEN_KEYS

    modes = {key.upper(): mode for key, mode, _ in SCREEN_KEYS}
    tables: list[tuple[str, list[str]]] = []
    paragraph: list[str] = []
    keys: list[str] | None = None
    for line in (ROOT / "README.md").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("| key | does |"):
            keys = []
            continue
        if keys is not None and stripped.startswith("|"):
            if not stripped.startswith("|---"):
                keys.extend(keys_in(stripped.split("|")[1]))
            continue
        if keys is not None:
            text = " ".join(" ".join(paragraph).split()).lstrip("- ")
            pushed = [screen for opening, screen in PUSHED_SCREENS.items() if text.startswith(opening)]
            named = re.findall(r"\((F\d+)\b", text)
            tables.append((pushed[0] if pushed else modes[named[0]] if named else "chat", keys))
            keys = None
            paragraph = []
        if line.startswith("- ") or line.startswith("#"):
            paragraph = []
        paragraph.append(line)
    return tables


def keys_in(cell: str) -> list[str]:
    """The keys a table cell names: F1…F8, Ctrl+X, Ctrl+↑/↓, Enter, Esc, Tab, Delete, `x`."""
    out: list[str] = []
    for first, last in re.findall(r"F(\d)…F(\d)", cell):
        out.extend(f"f{n}" for n in range(int(first), int(last) + 1))
    for combo in re.findall(r"Ctrl\+([A-Z]|↑/↓|↑|↓)", cell):
        out.extend(f"ctrl+{KEY_NAMES.get(k, k.lower())}" for k in combo.split("/"))
    for word in re.findall(r"\b(Enter|Esc|Tab|Delete)\b", cell):
        out.append(KEY_NAMES[word.lower()])
    for ticked in re.findall(r"`([^`]+)`", cell):
        out.append(KEY_NAMES.get(ticked, ticked))
    return list(dict.fromkeys(out))


def test_readme_tables_are_read() -> None:
    tables = dict(readme_key_tables())
    assert {"chat", "catalog"} <= set(tables)
    assert {"f1", "f8", "ctrl+p", "escape", "ctrl+up", "k", "j", "c", "y", "e", "ctrl+q"} <= set(tables["chat"])
    assert {"slash", "enter", "l", "s", "S", "plus", "minus", "delete", "x", "d", "o", "ctrl+r", "h"} <= set(
        tables["catalog"]
    )
    assert {"enter", "s", "slash", "escape"} <= set(tables["hub-search"])
    assert {"enter", "d", "plus", "minus", "escape"} <= set(tables["hub-files"])


SCREEN_STATE = {
    "chat": "chat/ready",
    "catalog": "catalog/every-kind-of-row",
    "hub-search": "hub-search/results",
    "hub-files": "hub-files/best",
    "tune": "tune/two-runs",
    "evaluate": "evaluate/two-runs",
}


@pytest.mark.parametrize("mode", list(SCREEN_STATE))
def test_readme_keys_are_bound(mode: str, env: Env) -> None:
    documented = [keys for table_mode, keys in readme_key_tables() if table_mode == mode]
    assert documented, f"README has no key table for {mode}"
    state = next(s for s in STATES if s.name == SCREEN_STATE[mode])
    app = state.build(env)
    bound: set[str] = set()

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            if state.setup is not None:
                await state.setup(pilot, env)
            await restore(pilot, state)
            app.screen.set_focus(None)
            await pilot.pause()
            bound.update(app.screen.active_bindings)
            for widget in list(app.screen.focus_chain):
                widget.focus()
                await pilot.pause()
                bound.update(app.screen.active_bindings)

    asyncio.run(main())
    if mode == "chat":
        bound |= HANDLED_BY_THE_PROMPT
    missing = sorted({k for keys in documented for k in keys} - bound)
    assert missing == [], f"README's {mode} table names keys not bound there: {missing}"


# -- the checks themselves catch what they are for ---------------------------------------------------------------


class BadScreenApp(App[int]):
    """Everything the rules forbid: a cut line, markup eating an extra, an Input too short to show its text, a
    focusable widget with no focus style."""

    CSS = """
    #narrow { width: 20; height: 3; }
    #narrow Static { width: 40; }
    #short { height: 1; border: tall $accent; }
    #plain:focus { background: $surface; }
    #plain { background: $surface; height: 3; }
    """

    def compose(self) -> ComposeResult:
        with Vertical(id="narrow"):
            yield Static("a status line that is wider than its box", id="cut")
        yield Static("Ollama client not installed: pip install 'llm-tui[ollama]'", id="hint")
        yield Input(id="short")
        yield Static("no focus style", id="plain")


def test_the_checks_catch_a_bad_screen() -> None:
    app = BadScreenApp()

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            app.query_one("#plain").can_focus = True
            await pilot.pause()
            cut = cut_text(app)
            assert any("Static#cut" in line for line in cut), cut
            hints = bare_hints(app)
            assert [h for h in hints if "Static#hint" in h], hints
            field = app.query_one("#short", Input)
            field.focus()
            await pilot.pause()
            for key in "abc":
                await press(pilot, key)
            assert field.value == "abc" and "abc" not in "\n".join(lines_of(field))
            plain = app.query_one("#plain")
            plain.focus()
            await pilot.pause()
            focused = look(plain)
            app.screen.set_focus(None)
            await pilot.pause()
            assert look(plain) == focused
            assert "no focus style" in "".join(text for text, _ in focused)  # read from the composited screen

    asyncio.run(main())
