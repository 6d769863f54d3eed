"""Slots for the fake engine: each request's reply generator advanced one event per step, so tests of the
instance's slot loop (admission, queue, cancel, one request failing) run without a model."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from engines.adapters.base import Batcher, SlotStats
from engines.types import Done, Error, StreamEvent

if TYPE_CHECKING:
    from engines.adapters.fake import FakeEngine
    from engines.requests import RequestHandle

Emit = Callable[[StreamEvent], None]


class FakeSlots(Batcher):
    """`parallel` slots over a FakeEngine; `steps` counts the steps taken, `widest` the most slots in one step."""

    def __init__(self, engine: FakeEngine, parallel: int):
        self.engine, self.parallel = engine, parallel
        self.active: list[tuple[Iterator[StreamEvent], Emit, threading.Event]] = []
        self.steps = self.widest = 0

    def free_slots(self) -> int:
        return self.parallel - len(self.active)

    def busy_slots(self) -> int:
        return len(self.active)

    def stats(self) -> SlotStats:
        return SlotStats(self.parallel, len(self.active))

    def admit(self, handle: RequestHandle, emit: Emit) -> None:
        if handle.prompt is not None:
            events = self.engine.complete(handle.prompt, handle.params, handle.cancel_event)
        else:
            events = self.engine.chat(handle.messages, handle.params, handle.cancel_event, handle.session)
        self.active.append((events, emit, handle.cancel_event))

    def step(self) -> None:
        """One event from each request; while the engine's `gate` is shut only cancelled requests move (the
        instance goes on admitting between steps, so every slot fills while the first tokens are held)."""
        gate = self.engine.gate
        held = gate is not None and not gate.wait(0.005)
        self.steps += 1
        self.widest = max(self.widest, len(self.active))
        for entry in list(self.active):
            events, emit, cancel = entry
            if held and not cancel.is_set():
                continue
            try:
                event = next(events)
            except StopIteration:
                event = Error("the engine ended the reply without saying it was done", kind="truncated")
            except Exception as exc:  # one request's failure never ends the others
                event = Error(f"{type(exc).__name__}: {exc}", kind=type(exc).__name__)
            if isinstance(event, Done | Error):
                self.active.remove(entry)
            emit(event)
