"""Pulling a model through a running Ollama daemon, with one combined progress, cancel and plain errors.

Ollama keeps its own model store, so a model from the Ollama registry is not a file we fetch: we ask the
daemon (`POST /api/pull` via the `ollama` client) to pull it and relay what it streams. The daemon reports
progress per layer (digest, total, completed); we fold that into one `TransferProgress` for the whole model
(total = sizes of the layers seen so far, done = their completed bytes, never going backwards), smoothed and
rate-limited by the same `Meter` as our own transfers.

Cancel closes the HTTP stream; the daemon then stops the pull but keeps the partial blobs, so pulling the same
model again resumes where it stopped (its first progress already counts the bytes it has). A cancel is seen
between streamed lines and, when we made the client ourselves, also while a read is blocked (the socket is
shut down from a watcher thread) - the daemon can be silent for minutes while it verifies a large blob.

Errors come out as `DownloadError` with the daemon's own words; an unreachable daemon says how to start it.
`ollama` (and the `httpx` it brings) is imported inside `pull_model`, so this module imports without it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engines.downloads.pacing import Meter, TransferProgress
from engines.downloads.transfer import DownloadCancelled, DownloadNotFound
from engines.errors import BadRequest, DownloadError, EngineUnavailable

__all__ = ["OllamaPullResult", "normalise_name", "pull_model"]

_PREFIX = "ollama:"
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HOST_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]+)?$")  # a registry host may carry a port
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_NOT_FOUND = ("file does not exist", "not found")


@dataclass(frozen=True, slots=True)
class OllamaPullResult:
    """A finished pull."""

    name: str
    """Normalised name, e.g. "qwen2.5:0.5b" (":latest" added when the reference had no tag)."""
    total_bytes: int
    """Sum of the sizes of all layers the daemon reported."""
    layers: int
    digest: str | None
    """The model's manifest digest (bare hex) as `GET /api/tags` lists it after the pull; None when not listed."""


def normalise_name(ref: str) -> str:
    """`ollama:NAME[:TAG]` or `[HOST/][NS/]NAME[:TAG]` -> `...NAME:TAG`; raises BadRequest for a malformed name."""
    name = ref.strip()
    if name.lower().startswith(_PREFIX):
        name = name[len(_PREFIX) :]
    if not name:
        raise BadRequest(f"empty Ollama model name in {ref!r}; expected e.g. ollama:qwen2.5:0.5b")
    problem = None
    if any(ch.isspace() for ch in name):
        problem = "it contains whitespace"
    elif ".." in name:
        problem = "it contains '..'"
    elif name.startswith("/") or name.endswith("/"):
        problem = "it starts or ends with '/'"
    if problem is None:
        *path, last = name.split("/")
        base, sep, tag = last.partition(":")
        host_ok = not path or _HOST_PART.match(path[0]) is not None
        if not (host_ok and all(_PART.match(p) for p in path[1:]) and _PART.match(base)):
            problem = "only letters, digits, '.', '_' and '-' are allowed in its parts"
        elif sep and not _TAG.match(tag):
            problem = f"its tag {tag!r} is not valid"
        elif not sep:
            name += ":latest"
    if problem is not None:
        raise BadRequest(f"invalid Ollama model name {ref!r}: {problem}; expected e.g. qwen2.5:0.5b or ns/name:tag")
    return name


def pull_model(
    ref: str,
    *,
    host: str,
    progress: Callable[[TransferProgress], None] | None = None,
    cancel: threading.Event | None = None,
    client: Any | None = None,
) -> OllamaPullResult:
    """Have the Ollama daemon at `host` pull `ref`, reporting combined progress; blocks until it is done.

    Raises BadRequest (bad name), DownloadCancelled (cancel set; pulling again resumes), DownloadNotFound (no such
    model), DownloadError (anything else the daemon or the connection did) or EngineUnavailable (no `ollama`).
    """
    name = normalise_name(ref)
    try:
        import httpx
        import ollama
    except ImportError as exc:
        raise EngineUnavailable(
            "ollama", "the ollama Python package is not installed", "pip install 'llm-tui[ollama]'"
        ) from exc
    cancel = cancel or threading.Event()
    if cancel.is_set():
        raise _cancelled(name)
    own = client is None
    sockets: list[socket.socket] = []
    if client is None:
        client = ollama.Client(
            host=host,
            timeout=httpx.Timeout(None, connect=10.0),  # no read timeout: verifying a big blob is silent for minutes
            event_hooks={"response": [lambda response: _remember_socket(response, sockets)]},
        )
    finished = threading.Event()
    if own:
        threading.Thread(
            target=hang_up_on_cancel, args=(cancel, finished, sockets), daemon=True, name="ollama-pull"
        ).start()
    layers: dict[str, tuple[int, int]] = {}  # digest -> (total, completed)
    meter = Meter(progress, 0, None)
    stream = None
    try:
        stream = client.pull(name, stream=True)
        for item in stream:
            if cancel.is_set():
                raise _cancelled(name)
            if item.digest:
                seen = layers.get(item.digest)
                total, done = seen or (0, 0)
                completed = max(done, item.completed or 0)  # a layer's count never goes backwards in our sum
                layers[item.digest] = (item.total or total, completed)
                meter.total = sum(t for t, _ in layers.values())
                if seen is None:  # bytes a layer already has (resumed, cached) are not speed
                    meter.reset(meter.done + completed)
                meter.add(0 if seen is None else completed - done)
            if item.status == "success":
                meter.emit()
                break
        else:
            if cancel.is_set():
                raise _cancelled(name)
            raise DownloadError(f"ollama: the pull of {name} ended early, without 'success'; pull again to resume")
        digest = _digest_of(client, name)
    except ollama.ResponseError as exc:
        if cancel.is_set():
            raise _cancelled(name) from None
        text = f"ollama: {exc.error}"
        if exc.status_code == 404 or any(s in str(exc.error).lower() for s in _NOT_FOUND):
            raise DownloadNotFound(text) from None
        raise DownloadError(text) from None
    except (httpx.HTTPError, OSError, ValueError) as exc:  # ValueError: a line that is not JSON / not a progress
        if cancel.is_set():
            raise _cancelled(name) from None
        if not layers and isinstance(exc, (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout)):
            raise DownloadError(f"cannot reach Ollama at {host}: is `ollama serve` running?") from exc
        raise DownloadError(
            f"ollama: the connection to {host} broke while pulling {name} ({str(exc) or type(exc).__name__}); "
            "pull again to resume"
        ) from exc
    finally:
        finished.set()
        if stream is not None and hasattr(stream, "close"):
            stream.close()  # ends the HTTP stream: the daemon stops pulling and keeps what it has
        if own:
            client.close()
    return OllamaPullResult(name, sum(t for t, _ in layers.values()), len(layers), digest)


def _cancelled(name: str) -> DownloadCancelled:
    return DownloadCancelled(f"pull of {name} cancelled; Ollama keeps what it fetched, so pulling again resumes")


def _remember_socket(response: Any, sockets: list[socket.socket]) -> None:
    """httpx response hook: keep the connection's socket so a cancel can shut it down mid-read."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        sockets.append(sock)


def hang_up_on_cancel(cancel: threading.Event, finished: threading.Event, sockets: list[socket.socket]) -> None:
    """Until the pull is over: on cancel, shut the stream's socket down, which wakes a read blocked on it."""
    while not finished.is_set():
        if cancel.wait(0.05):
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return


def _digest_of(client: Any, name: str) -> str | None:
    """The pulled model's digest as `GET /api/tags` lists it; None when the daemon does not say (best effort)."""
    try:
        models = client.list().models
    except Exception:  # only a nicety: the pull itself succeeded
        return None
    for model in models:
        if model.model == name and model.digest:
            return str(model.digest)
    return None
