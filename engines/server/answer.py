"""A submitted reply on its way to the client: events carried from the worker thread, answered whole or as SSE.

Tokens come from the instance's worker thread through the request's sink, which hands each event to the event
loop (`call_soon_threadsafe`); the worker never waits for a client, so a slow reader delays only its own stream.
A reply carries text (`content`), thinking (`reasoning_content`) and tool calls (`tool_calls`), each in the
field OpenAI-compatible clients read it from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from engines.requests import RequestHandle
from engines.server.drain import Drain
from engines.server.errors import from_event
from engines.server.guard import ServerStats
from engines.server.jobs import DISCONNECT_POLL_S
from engines.server.replies import SSE_DONE, Shaper, finish_reason, sse
from engines.server.request_state import note_done
from engines.server.tools import CallPieces
from engines.types import Delta, Done, Error, Final, Reasoning, StreamEvent, TokenLogprob, ToolCallDelta

CLIENT_GONE = {"error": {"message": "client closed the request"}}


class Bridge:
    """Events of one request, carried from the instance's worker thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stats: ServerStats) -> None:
        self._loop = loop
        self.stats = stats
        self._next_check = time.monotonic() + DISCONNECT_POLL_S
        self._queue: asyncio.Queue[StreamEvent] = asyncio.Queue()
        self.ended = False
        """The final event (Done or Error) was taken: there is nothing left to cancel."""
        self.handle: RequestHandle | None = None
        """The request, once submitted (what a shutdown cancels)."""

    def put(self, event: StreamEvent) -> None:
        """The request's sink (worker thread): never blocks."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    async def get(self) -> StreamEvent:
        event = await self._queue.get()
        self.ended = isinstance(event, Final)
        return event

    async def get_watching(self, request: Request, handle: RequestHandle) -> StreamEvent | None:
        """The next event, or None (the request cancelled) once the client has gone away.

        The client is checked every DISCONNECT_POLL_S, also while events keep coming."""
        while True:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + DISCONNECT_POLL_S
                if await request.is_disconnected():
                    self.cancel(handle)
                    return None
            try:
                return await asyncio.wait_for(self.get(), DISCONNECT_POLL_S)
            except TimeoutError:
                continue

    def end_now(self, event: Error) -> None:
        """The server is stopping (on the event loop): cancel the generation; `event` is the reply's last."""
        if self.handle is not None:
            self.cancel(self.handle)
        self._queue.put_nowait(event)

    def cancel(self, handle: RequestHandle) -> None:
        """The client went away: stop its generation (the engine sees it before its next token)."""
        # The worker marks the handle finished only after handing over the final event, so `ended` is
        # what says the reply is over; `finished` covers an end this bridge has not taken yet.
        if not self.ended and not handle.finished:
            handle.cancel()
            self.stats.note_cancelled()


def note_error(request: Request, message: str) -> None:
    """Say in the request log line why the request failed."""
    request.scope.setdefault("state", {})["error"] = message


async def answer(
    request: Request,
    handle: RequestHandle,
    bridge: Bridge,
    shaper: Shaper,
    drain: Drain,
    *,
    stream: bool,
    include_usage: bool,
) -> Any:
    """The reply once submitted: whole, or streamed as SSE."""
    # Wait for the first event before answering: an error that comes first (context overflow, engine
    # failure) gets its proper status instead of a 200 stream that fails.
    first = await bridge.get_watching(request, handle)
    if first is None:
        return JSONResponse(CLIENT_GONE, status_code=499)
    if isinstance(first, Error):
        raise from_event(first)
    if stream:
        return StreamingResponse(
            _stream(request, handle, bridge, shaper, first, include_usage, drain),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    parts: list[str] = []
    thinking: list[str] = []
    calls = CallPieces()
    scored: list[TokenLogprob] = []
    event: StreamEvent | None = first
    while event is not None and not isinstance(event, Final):
        if isinstance(event, Delta):
            parts.append(event.text)
            scored.extend(event.logprobs)
        elif isinstance(event, Reasoning):
            thinking.append(event.text)
        elif isinstance(event, ToolCallDelta):
            calls.piece(event)
        event = await bridge.get_watching(request, handle)
    if event is None:
        return JSONResponse(CLIENT_GONE, status_code=499)
    if isinstance(event, Error):
        note_error(request, event.message)
        raise from_event(event)
    note_done(request.scope, event)
    return shaper.whole("".join(parts), event, scored, reasoning="".join(thinking), calls=calls.calls())


async def _stream(
    request: Request,
    handle: RequestHandle,
    bridge: Bridge,
    shaper: Shaper,
    first: StreamEvent,
    include_usage: bool,
    drain: Drain,
) -> AsyncIterator[bytes]:
    calls = CallPieces()
    try:
        if shaper.kind == "chat":
            yield sse(shaper.chunk("", role=True))
        event = first
        while True:
            if isinstance(event, Delta):
                yield sse(shaper.chunk(event.text, scored=event.logprobs))
            elif isinstance(event, Reasoning):
                yield sse(shaper.chunk(None, reasoning=event.text))
            elif isinstance(event, ToolCallDelta):
                yield sse(shaper.chunk(None, calls=[calls.piece(event)]))
            elif isinstance(event, Done):
                note_done(request.scope, event)  # before the last body message: the guard reads it after the app
                yield sse(shaper.chunk(None, finish=finish_reason(event, bool(calls))))
                if include_usage:
                    yield sse(shaper.usage_chunk(event.usage))
                yield SSE_DONE
                return
            else:
                # The status is already sent: say it in the stream, in OpenAI's error shape, and end without [DONE].
                note_error(request, event.message)
                yield sse(from_event(event).body())
                return
            event = await bridge.get()
    finally:
        bridge.cancel(handle)  # a no-op after Done; else the client went away or the server is stopping
        drain.untrack(bridge)
