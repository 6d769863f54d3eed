"""How `llm-tui chat` prints one streamed reply: the reply on stdout, the model's thinking and its tool calls on
stderr, so that a script reading stdout gets the reply alone."""

from __future__ import annotations

from typing import TextIO

from engines.tools.assemble import ToolCallAssembler
from engines.types import Delta, Done, Error, Reasoning, StreamEvent, ToolCallDelta

DIM, UNDIM = "\x1b[2m", "\x1b[22m"


class ReplyPrinter:
    """Writes each event where it belongs; `show` returns the Done or Error that ends the reply."""

    def __init__(self, out: TextIO, err: TextIO, *, thinking: bool = True) -> None:
        self.out = out
        self.err = err
        self.thinking = thinking
        """Whether thinking is printed (--hide-thinking turns it off)."""
        self.dim = err.isatty()
        """Thinking is dim on a terminal; a file or pipe gets the plain text."""
        self._parts: list[str] = []
        self._open = False
        """The reply's last line has no newline yet."""
        self._thought = ""
        """The end of the thinking printed since the reply last went on (to end its line)."""
        self._calls = ToolCallAssembler()

    @property
    def text(self) -> str:
        """The reply so far (thinking left out)."""
        return "".join(self._parts)

    def show(self, event: StreamEvent) -> Done | Error | None:
        """Print `event`; the reply's Done or Error once it ends (its lines finished first)."""
        if isinstance(event, Reasoning):
            if self.thinking and event.text:
                self.err.write(f"{DIM}{event.text}{UNDIM}" if self.dim else event.text)
                self.err.flush()
                self._thought = event.text
        elif isinstance(event, ToolCallDelta):
            self._calls.add(event)
        elif isinstance(event, Delta):
            self._end_thinking()
            self._parts.append(event.text)
            if event.text:
                self._open = not event.text.endswith("\n")
            self.out.write(event.text)
            self.out.flush()
        elif isinstance(event, Done | Error):
            self.finish()
            return event
        return None

    def finish(self) -> None:
        """End the open lines and print the tool calls the model asked for (the CLI does not run them)."""
        self._end_thinking()
        if self._open:
            self.out.write("\n")
            self.out.flush()
            self._open = False
        for call in self._calls.calls():
            self.err.write(f"[tool call] {call.name}({call.arguments})\n")
        self.err.flush()
        self._calls = ToolCallAssembler()

    def _end_thinking(self) -> None:
        if self._thought and not self._thought.endswith("\n"):
            self.err.write("\n")
            self.err.flush()
        self._thought = ""
