"""Join a reply's streamed ToolCallDelta pieces into whole ToolCalls."""

from __future__ import annotations

from dataclasses import dataclass, field

from engines.types import ToolCall, ToolCallDelta


@dataclass(slots=True)
class _Partial:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Collects the pieces of every call of one reply, by index; `calls()` gives them whole, in index order."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: dict[int, _Partial] = {}

    def add(self, delta: ToolCallDelta) -> None:
        """Take one piece: the id and name when it has them, the arguments' text appended."""
        part = self._parts.setdefault(delta.index, _Partial())
        if delta.id:
            part.id = delta.id
        if delta.name:  # whole in the first piece as a rule; a piece without an id continues it (some servers)
            part.name = delta.name if delta.id or not part.name else part.name + delta.name
        if delta.arguments:
            part.arguments.append(delta.arguments)

    def __bool__(self) -> bool:
        return bool(self._parts)

    def calls(self) -> tuple[ToolCall, ...]:
        """The calls so far; a call whose id never came gets `call_<index>`."""
        return tuple(
            ToolCall(part.id or f"call_{index}", part.name, "".join(part.arguments) or "{}")
            for index, part in sorted(self._parts.items())
        )


def as_deltas(calls: tuple[ToolCall, ...]) -> list[ToolCallDelta]:
    """Whole calls as one delta each (how an engine that parses its text hands them on)."""
    return [ToolCallDelta(i, call.id, call.name, call.arguments) for i, call in enumerate(calls)]
