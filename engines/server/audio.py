"""POST /v1/audio/transcriptions: speech to text as OpenAI's API does it, on a model that can transcribe.

The upload is a `multipart/form-data` form: `file` (the audio), `model`, and optionally `language`, `prompt`,
`response_format` (json, text, srt, vtt, verbose_json) and `temperature`. The guard refuses a body past
`[serve] max_upload_bytes` while it streams in (Starlette spools the file to disk past 1 MiB), so memory holds
at most one bounded upload. The model is checked before the audio is decoded (a chat model answers 400 at
once); decoding (engines/audio/decode.py) runs in a thread and its refusals (not audio, truncated, too long) are
400s that name the file. The transcription is queued on the instance like an embedding: the event loop waits
for the job's notify, and a client that hangs up cancels it (the engine stops between chunks).
"""

from __future__ import annotations

import functools
import importlib.util
from typing import TYPE_CHECKING, Annotated

from anyio import to_thread
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from engines.audio.formats import ResponseFormat, format_transcript, media_type
from engines.errors import BadRequest, LlmTuiError
from engines.server import openapi
from engines.server.errors import ApiError, bad_param, from_exception
from engines.server.jobs import run_job
from engines.server.request_state import note_model
from engines.server.schemas import MAX_NAME
from engines.types import Capability

if TYPE_CHECKING:
    from engines.audio.types import Audio
    from engines.server.app import ServerContext

PATH = "/v1/audio/transcriptions"
"""How often a request waiting for its transcript checks whether its client is still there."""
MAX_PROMPT = 100_000
"""Characters of `prompt` taken (Whisper reads only its last 224 tokens)."""
READ_BLOCK = 1 << 20


class Transcription(BaseModel):
    """`response_format: json` (the default)."""

    text: str


class TranscriptionSegment(BaseModel):
    """One segment of verbose_json (see engines/audio/formats.py for the fields that are filler)."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptionVerbose(BaseModel):
    """`response_format: verbose_json`."""

    task: str
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment]


RESPONSES: openapi.Responses = {
    200: {
        "model": Transcription | TranscriptionVerbose,
        "description": "The transcript in `response_format`: JSON for json and verbose_json, text for the others",
        "content": {
            **{media_type(f).partition(";")[0]: {"schema": {"type": "string"}} for f in ("text", "srt", "vtt")},
        },
    },
    **openapi.GENERATION,
}


def multipart_installed() -> bool:
    """Whether FastAPI can read forms: python-multipart (in the serve extra) is installed."""
    return importlib.util.find_spec("python_multipart") is not None


def install(app: FastAPI, ctx: ServerContext) -> None:
    """Add the transcription route to `app` (without python-multipart, a route that says how to install it)."""
    if not multipart_installed():  # an install from before the serve extra named it: the other routes still serve
        _install_unavailable(app)
        return

    @app.post(PATH, responses=RESPONSES)
    async def transcriptions(
        request: Request,
        file: Annotated[UploadFile, File(description="The audio: WAV, FLAC, OGG, MP3, (with ffmpeg) M4A, WebM...")],
        model: Annotated[str, Form(min_length=1, max_length=MAX_NAME)],
        language: Annotated[str | None, Form(max_length=32, description="ISO-639-1, e.g. en; none: detect")] = None,
        prompt: Annotated[str | None, Form(max_length=MAX_PROMPT)] = None,
        response_format: Annotated[ResponseFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        # Checked here, not by pydantic: its errors for a field named with brackets name no parameter.
        granularities: Annotated[
            list[str] | None, Form(alias="timestamp_granularities[]", description="segment (word is refused)")
        ] = None,
    ) -> Response:
        from engines.audio.types import TranscribeOptions

        _check_granularities(granularities or [])
        note_model(request.scope, model)
        if ctx.drain.stopping:
            raise ApiError(503, "the server is shutting down", type="server_error", code="server_shutting_down")
        info = await to_thread.run_sync(ctx.router.instance_for, model)
        if not ctx.manager.engine_of(info.run_id).supports(Capability.TRANSCRIBE):
            raise ApiError(
                400,
                f"{model} does not support speech to text ({info.engine} engine): name a Whisper model "
                "(GET /v1/models lists what runs)",
                param="model",
                code="capability_not_supported",
            )
        data = await _read(file, ctx.serve.max_upload_bytes)
        audio = await _decode(data, upload_name(file.filename), ctx.serve.max_upload_bytes)
        del data
        options = TranscribeOptions(language=language or None, prompt=prompt or None, temperature=temperature)
        job = await run_job(
            ctx, request, lambda notify: ctx.manager.submit_transcribe(info.run_id, audio, options, notify=notify)
        )
        if isinstance(job, JSONResponse):
            return job
        if job.error is not None:
            raise _transcription_error(job.error)
        assert job.transcript is not None
        body = format_transcript(job.transcript, response_format, temperature=temperature)
        return Response(body, media_type=media_type(response_format))


def _check_granularities(asked: list[str]) -> None:
    """Only segment timestamps are given: asking for words is said (rather than a verbose_json without `words`)."""
    for value in asked:
        if value not in ("segment", "word"):
            shown = repr(value if len(value) <= 40 else value[:40] + "...")
            raise bad_param("timestamp_granularities", f"timestamp_granularities: {shown} is not segment or word")
    if "word" in asked:
        raise ApiError(
            400,
            "word timestamps are not available here: ask for segment timestamps (verbose_json, srt or vtt)",
            param="timestamp_granularities",
            code="unsupported_parameter",
        )


def _install_unavailable(app: FastAPI) -> None:
    @app.post(PATH, responses=openapi.errors(503))
    async def transcriptions_unavailable() -> Response:
        raise ApiError(
            503,
            "speech to text needs python-multipart to read uploads: pip install 'llm-tui[serve]'",
            type="server_error",
            code="model_unavailable",
        )


async def _read(file: UploadFile, limit: int) -> bytes:
    """The upload's bytes, read in blocks; past `limit` a 413 (the guard already stops the body there)."""
    parts: list[bytes] = []
    size = 0
    while block := await file.read(READ_BLOCK):
        size += len(block)
        if size > limit:
            raise ApiError(413, f"the upload is over the limit of {limit} bytes", code="body_too_large")
        parts.append(block)
    return b"".join(parts)


def upload_name(filename: str | None) -> str:
    """The upload's file name as messages and the log may say it: printable, at most 100 characters."""
    text = "".join(c for c in filename or "" if c.isprintable())
    return (text if len(text) <= 100 else text[:100] + "...") or "upload"


async def _decode(data: bytes, name: str, limit: int) -> Audio:
    """The upload decoded to 16 kHz mono (in a thread); its refusals are 400s naming `file`."""
    from engines.audio.decode import load_audio

    try:
        return await to_thread.run_sync(functools.partial(load_audio, data, name=name, max_bytes=limit))
    except BadRequest as exc:  # BadAudio: not audio, empty, truncated, too long
        raise ApiError(400, str(exc), param="file", code="invalid_value") from None
    except LlmTuiError as exc:  # e.g. EngineUnavailable: the audio extra is not installed
        raise from_exception(exc) from None


def _transcription_error(exc: BaseException) -> ApiError:
    """The answer for what the engine raised."""
    if isinstance(exc, LlmTuiError | ApiError):
        return from_exception(exc)
    return ApiError(500, f"{type(exc).__name__}: {exc}", type="server_error", code="engine_error")
