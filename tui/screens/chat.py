"""The chat screen: sessions on the left, the conversation, the prompt; replies stream in as Markdown."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Footer, Header, Static

from engines.errors import LlmTuiError
from engines.store.sessions import MessageRecord, SessionRecord, Store
from tui.chat_audio import AudioPrompt, split_audio
from tui.chat_presets import apply_preset, choose_preset
from tui.chat_tools import ToolLoop, choose_tools, tools_hint
from tui.chat_turn import ChatTurn
from tui.preset_messages import PresetChosen
from tui.screens.app_screen import AppScreen
from tui.screens.chat_engine import cannot_follow_schemas, refuse_images
from tui.screens.chat_export import ask_export
from tui.screens.chat_text import log_message, split_attachments, status_line, title_from
from tui.widgets.chat_log import ChatLog
from tui.widgets.log_message import fenced_code_blocks
from tui.widgets.prompt import PromptInput
from tui.widgets.screen_bar import ScreenBar
from tui.widgets.session_list import SessionList

if TYPE_CHECKING:
    from tui.screens.modals.model_picker import ModelChoice
    from tui.screens.modals.params import SessionSettings


class ConversationLog(ChatLog):
    """The chat's log; its keys act on the selected message, so the footer lists them while it has focus."""

    # The base tint (3%) does not show on the log's transparent background, nor $boost in light themes.
    DEFAULT_CSS = """
    ConversationLog:focus { background: $foreground 6%; }
    """

    BINDINGS = [
        Binding("c", "screen.copy_message", "Copy"),
        Binding("y", "screen.copy_code", "Code"),
        Binding("e", "screen.edit", "Edit"),
    ]


class ChatPrompt(PromptInput):
    """The chat's prompt; the footer lists the keys for what you write while it has focus."""

    BINDINGS = [
        Binding("ctrl+r", "screen.regenerate", "Regen"),
        Binding("ctrl+o", "screen.settings", "Options"),
        Binding("ctrl+t", "screen.export", "Export"),
    ]


class ChatScreen(AppScreen):
    """Talk to the active model; every message is saved as it is written."""

    BINDINGS = [
        Binding("escape", "stop", "Stop"),  # listed only while there is something to stop (check_action)
        Binding("ctrl+l", "pick_model", "Model"),
        Binding("ctrl+n", "new_session", "New"),
        Binding("ctrl+f", "focus_sessions", "Chats"),
        # Shown by the prompt's footer instead (ChatPrompt), so the log's and the list's own keys fit at 80 columns.
        Binding("ctrl+r", "regenerate", "Regen", show=False),
        Binding("ctrl+g", "edit", "Edit", show=False),  # the log lists `e`
        Binding("ctrl+o", "settings", "Options", show=False),
        Binding("ctrl+t", "export", "Export", show=False),
        # Not in the footer (it is full at 80 columns): the status line names F9 once MCP servers are configured,
        # and presets are in the command palette too.
        Binding("f9", "tools", "Tools", show=False),
        Binding("f12", "preset", "Preset", show=False),
        # The app's Ctrl+Q is hidden on screens with many keys; the chat, where people start, lists it.
        Binding("ctrl+q", "app.quit", "Quit", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__(name="chat")
        self.session: SessionRecord | None = None
        self.turn: ChatTurn | None = None
        self.editing: MessageRecord | None = None
        self.pending: str | None = None
        """Text sent before any model was active; it goes out once one is."""
        self.query_text = ""
        self.audio = AudioPrompt(self)
        """`/audio PATH`: the file transcribed into the prompt, recorded on the message sent."""
        self.tool_loop = ToolLoop(self, self._start_turn)
        """Runs the MCP tools a reply calls and asks the model again with their results."""

    @property
    def store(self) -> Store:
        """Where sessions and messages live."""
        return self.runtime.store

    def new_session(self) -> SessionRecord:
        """A new session with the configured default parameters."""
        active = self.runtime.active
        return self.store.create_session(model=active.model_id if active else None, params=self.runtime.config.defaults)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield SessionList(id="sessions")
            with Vertical(id="conversation"):
                yield ConversationLog(id="chat-log")
                yield Static("", id="chat-status")
                yield ChatPrompt(id="prompt", placeholder="Message · Enter sends · Ctrl+J new line")
        yield ScreenBar("chat")
        yield Footer(compact=True)

    @property
    def focus_chain(self) -> list[Widget]:
        """Tab from the prompt goes to the log just above it (then the chat list), not round to the filter."""
        chain = super().focus_chain
        prompt, log = self.query_one(PromptInput), self.query_one(ChatLog)
        if prompt in chain and log in chain:
            chain.remove(prompt)
            chain.insert(chain.index(log), prompt)
        return chain

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that would do nothing now leave the footer (which fits about eight at 80 columns)."""
        if action == "stop":
            return self.turn is not None or self.editing is not None or self.tool_loop.running
        if action in ("new_session", "regenerate", "edit"):  # Esc first: stop the reply or drop the edit
            return self.turn is None and self.editing is None and not self.tool_loop.running
        return True

    def on_mount(self) -> None:
        sessions = self.store.list_sessions()
        self.open_session(sessions[0] if sessions else self.new_session())
        self.watch(self.app, "active_version", self._on_active_changed, init=False)
        self.watch(self.app, "status_text", lambda _: self.update_status(), init=False)
        self.query_one(PromptInput).focus()

    # -- sessions -----------------------------------------------------------------------------------------------

    def open_session(self, session: SessionRecord) -> None:
        """Show `session` and its messages."""
        self.session = session
        self.editing = None
        log = self.query_one(ChatLog)
        log.load([log_message(m) for m in self.store.messages(session.id)])
        self.refresh_sessions()
        self.update_status()

    def refresh_sessions(self) -> None:
        """Re-list sessions (filtered), keeping the current one highlighted."""
        sessions = self.store.list_sessions(self.query_text or None)
        self.query_one(SessionList).show(sessions, self.session.id if self.session else None)

    def on_session_list_chosen(self, message: SessionList.Chosen) -> None:
        if self.turn is not None:
            self.notify("A reply is streaming; Esc stops it first.", severity="warning")
            return
        self.open_session(self.store.get_session(message.session_id))
        self.query_one(PromptInput).focus()

    def on_session_list_filter_left(self, _: SessionList.FilterLeft) -> None:
        self.query_one(PromptInput).focus()

    def on_session_list_filter_changed(self, message: SessionList.FilterChanged) -> None:
        self.query_text = message.query.strip()
        self.refresh_sessions()

    def on_session_list_rename_requested(self, message: SessionList.RenameRequested) -> None:
        session = self.store.get_session(message.session_id)

        def done(title: str | None) -> None:
            if title:
                self.store.rename_session(session.id, title)
                if self.session and self.session.id == session.id:
                    self.session = self.store.get_session(session.id)
                self.refresh_sessions()

        from tui.screens.modals.text_prompt import TextPromptModal  # modals load when first opened

        self.app.push_screen(TextPromptModal("Rename chat", session.title), done)

    def on_session_list_delete_requested(self, message: SessionList.DeleteRequested) -> None:
        session = self.store.get_session(message.session_id)
        if self.turn is not None and self.session and self.session.id == session.id:
            self.notify("A reply is streaming in this chat; Esc stops it first.", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if not yes:
                return
            self.store.delete_session(session.id)
            if self.session and self.session.id == session.id:
                remaining = self.store.list_sessions()
                self.open_session(remaining[0] if remaining else self.new_session())
            else:
                self.refresh_sessions()

        from tui.screens.modals.confirm import ConfirmModal

        self.app.push_screen(ConfirmModal(f"Delete the chat “{session.title}” and all its messages?"), done)

    def action_new_session(self) -> None:
        if self.turn is not None:
            self.notify("A reply is streaming; Esc stops it first.", severity="warning")
            return
        self.open_session(self.new_session())
        self.query_one(PromptInput).focus()

    def action_focus_sessions(self) -> None:
        self.query_one("#session-filter").focus()

    # -- sending and streaming ---------------------------------------------------------------------------------

    def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
        before, audio = split_audio(message.text)
        if audio is not None:
            self.audio.start(before, audio)
            return
        if self.turn is not None or self.tool_loop.running:
            what = "A reply is still streaming" if self.turn is not None else "The model's tool calls are running"
            self.notify(f"{what}; Esc stops it.", severity="warning")
            return
        if self.runtime.active is None:
            self.pending = message.text
            self.notify("No model yet: pick one and your message goes out when it is loaded.")
            self.action_pick_model()
            return
        self.send(message.text)

    def send(self, text: str) -> None:
        """Save the user's message (with the images its `/image PATH` lines attach), show it, start the reply.

        A bad image or an engine that cannot see refuses the message before anything is saved; the prompt keeps
        the text, so nothing is lost.
        """
        assert self.session is not None
        text, images = split_attachments(text)
        if images:
            refusal = refuse_images(self.runtime, images)
            if refusal:
                self.notify(refusal, title="Not sent", severity="error", timeout=10)
                return
        prompt = self.query_one(PromptInput)
        if self.editing is not None:
            self.store.truncate_after(self.session.id, self.editing.seq - 1)
            self.editing = None
        if self.session.title == "New chat":
            self.store.rename_session(self.session.id, title_from(text or images[0].name))
            self.session = self.store.get_session(self.session.id)
        self.tool_loop.reset()
        heard = self.audio.source_of(text)
        self.store.add_message(self.session.id, "user", text, images=[str(p) for p in images], audio=heard)
        prompt.clear()
        self.open_session(self.session)
        self.query_one(ChatLog).scroll_end(animate=False)
        self._start_turn()

    def _start_turn(self) -> None:
        assert self.session is not None
        active = self.runtime.active
        if active is None:
            self.notify("No model is active: Ctrl+L picks one.", severity="warning")
            return
        try:
            self.turn = ChatTurn.start(self.runtime, self.session, active, self.query_one(ChatLog))
        except LlmTuiError as exc:
            self.notify(str(exc), title="Cannot send", severity="error", timeout=10)
            self.turn = None
        self.update_status()

    def on_chat_log_reply_ended(self, message: ChatLog.ReplyEnded) -> None:
        """The log has drawn the reply's end: the turn is over, the chat list and status catch up."""
        message.stop()
        turn = self.turn
        if turn is None or turn.key != message.key:
            return
        self.turn = None
        self.session = self.store.get_session(turn.session_id)
        if message.status == "complete" and self.tool_loop.take(turn.session_id, turn.calls.calls()):
            return
        self.refresh_sessions()
        self.shell.refresh_status()
        self.update_status()

    def action_stop(self) -> None:
        if self.turn is not None:
            self.turn.handle.cancel()
        elif self.tool_loop.running:
            self.tool_loop.stop()
        elif self.editing is not None:
            self.editing = None
            self.query_one(PromptInput).clear()
            self.update_status()

    def action_tools(self) -> None:
        """Choose the MCP tools the model may call in this chat (F9)."""
        choose_tools(self)

    def action_preset(self) -> None:
        """Apply a preset to this chat (F12)."""
        choose_preset(self)

    def on_preset_chosen(self, message: PresetChosen) -> None:
        """A preset chosen in the command palette."""
        apply_preset(self, message.name)

    def action_regenerate(self) -> None:
        if self.turn is not None or self.session is None:
            return
        messages = self.store.messages(self.session.id)
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        if last_user is None:
            self.notify("Nothing to regenerate yet.")
            return
        self.store.truncate_after(self.session.id, last_user.seq)
        self.open_session(self.session)
        self._start_turn()

    def action_edit(self) -> None:
        if self.turn is not None or self.session is None:
            return
        target = self._selected("user")
        if target is None:
            self.notify("No message of yours to edit.")
            return
        self.editing = target
        prompt = self.query_one(PromptInput)
        prompt.text = target.content
        prompt.focus()
        self.update_status()

    def _on_active_changed(self, _: int) -> None:
        self.update_status()
        if self.pending is not None and self.runtime.active is not None:
            text, self.pending = self.pending, None
            self.send(text)

    # -- settings, model, copy, export -------------------------------------------------------------------------

    def action_settings(self) -> None:
        if self.session is None:
            return
        session = self.session

        def done(result: SessionSettings | None) -> None:
            if result is not None:
                self.session = self.store.update_session(
                    session.id, system_prompt=result.system_prompt, params=result.params
                )
                self.open_session(self.session)

        from tui.screens.modals.params import ParamsModal

        params = session.params or self.runtime.config.defaults
        self.app.push_screen(
            ParamsModal(session.system_prompt, params, no_json=cannot_follow_schemas(self.runtime)), done
        )

    def action_pick_model(self) -> None:
        runtime = self.runtime

        def done(choice: ModelChoice | None) -> None:
            if choice is None:
                if self.pending is not None:
                    self.query_one(PromptInput).text = self.pending
                    self.pending = None
                return
            if choice.run_id is not None:
                self.shell.set_active_instance(choice.run_id)
            elif choice.ref is not None:
                self.shell.launch_model(choice.ref)

        from tui.screens.modals.model_picker import ModelPickerModal

        instances = runtime.manager.instances()
        self.app.push_screen(ModelPickerModal(instances, runtime.config.models_dir, dict(runtime.config.aliases)), done)

    def action_copy_message(self) -> None:
        target = self._selected(None)
        if target is None:
            self.notify("Nothing to copy yet.")
            return
        self.app.copy_to_clipboard(target.content)
        self.notify(f"Copied {len(target.content)} characters (OSC 52).", timeout=3)

    def action_copy_code(self) -> None:
        target = self._selected("assistant")
        blocks = fenced_code_blocks(target.content) if target else []
        if not blocks:
            self.notify("No code block in that reply.")
            return
        self.app.copy_to_clipboard(blocks[-1])
        self.notify(f"Copied a code block of {len(blocks[-1].splitlines())} lines (OSC 52).", timeout=3)

    def action_export(self) -> None:
        if self.session is not None:
            ask_export(self, self.store, self.session, self.runtime.config.data_dir)

    def _selected(self, role: str | None) -> MessageRecord | None:
        """The message selected in the log if it has `role`, else the last one with that role."""
        if self.session is None:
            return None
        messages = [m for m in self.store.messages(self.session.id) if role is None or m.role == role]
        log = self.query_one(ChatLog)
        chosen = log.selected_message
        if chosen is not None:
            picked = next((m for m in messages if m.id == chosen.key), None)
            if picked is not None:
                return picked
        return messages[-1] if messages else None

    def update_status(self) -> None:
        """The line under the log: model, state, what Enter will do."""
        active = self.runtime.active
        tools = self.session.params.tools if self.session and self.session.params else ()
        line = status_line(
            self.audio.hearing or self.shell.status_text,
            tools=self.tool_loop.status or tools_hint(len(tools), bool(self.runtime.config.mcp_servers)),
            streaming=self.turn is not None,
            editing=self.editing is not None,
            system_prompt=bool(self.session and self.session.system_prompt),
            model_id=active.model_id if active else None,
        )
        # The line wraps between words (#chat-status grows to 4 rows) rather than being cut at the edge.
        self.query_one("#chat-status", Static).update(Text(line))
        self.refresh_bindings()  # Esc comes and goes from the footer with what it would stop
