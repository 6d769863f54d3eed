"""Engine jobs other than a reply (an embedding, a transcription) as a route waits for them.

Queued on the instance like a chat request and watched like one: a client that hangs up cancels the job (the
engine stops as soon as it can), and a server stop ends it after the grace, answering what the drain says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse

from engines.errors import LlmTuiError
from engines.requests import EngineJob
from engines.server.errors import from_event, from_exception
from engines.types import Error

if TYPE_CHECKING:
    from engines.server.app import ServerContext

DISCONNECT_POLL_S = 0.25
"""How often a waiting route checks that its client is still there."""

Job = TypeVar("Job", bound=EngineJob)


class RunningJob:
    """A job as the server's drain sees it: ending it cancels the job and answers `ended`."""

    def __init__(self, job: EngineJob, finished: asyncio.Event) -> None:
        self.job = job
        self.finished = finished
        self.ended: Error | None = None

    def end_now(self, event: Error) -> None:
        """The server is stopping (on the event loop): stop the engine and answer with `event`."""
        self.ended = event
        self.job.cancel()
        self.finished.set()


async def until_set(event: asyncio.Event, request: Request) -> bool:
    """Wait for `event`; False as soon as the client has gone away (checked every DISCONNECT_POLL_S)."""
    while True:
        try:
            await asyncio.wait_for(event.wait(), DISCONNECT_POLL_S)
            return True
        except TimeoutError:
            if await request.is_disconnected():
                return False


async def run_job(
    ctx: ServerContext, request: Request, submit: Callable[[Callable[[], None]], Job]
) -> Job | JSONResponse:
    """Queue a job with `submit(notify)` and wait for it: the finished job (its own error still to be answered by
    the route), or the 499 answer when the client went away first. A stop's answer is raised as an ApiError."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()

    def notify() -> None:  # on the instance's worker thread
        loop.call_soon_threadsafe(finished.set)

    try:
        job = submit(notify)
    except LlmTuiError as exc:
        raise from_exception(exc) from None
    running = RunningJob(job, finished)
    ctx.drain.track(running)  # a stop ends it after the grace, like a reply
    try:
        present = await until_set(finished, request)
    finally:
        ctx.drain.untrack(running)
    if running.ended is not None:
        raise from_event(running.ended)
    if not present:
        job.cancel()
        ctx.stats.note_cancelled()
        return JSONResponse({"error": {"message": "client closed the request"}}, status_code=499)
    return job
