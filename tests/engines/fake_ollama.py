"""A fake Ollama daemon on 127.0.0.1 that streams `POST /api/pull` like the real one, and misbehaves on demand.

The pull answer is chunked NDJSON, as the daemon sends it: `{"status":"pulling manifest"}`, then per layer
`{"status":"pulling <12 hex>","digest":"sha256:…","total":N,"completed":M}` lines (`completed` left out while 0,
as Go's `omitempty` does), `verifying sha256 digest`, `writing manifest`, `success`. Layers go one after another.

The daemon keeps partial blobs, and so does the fake: each model remembers how far each layer got, so a second
pull starts a layer at the bytes reached before (a layer already complete gets one line, completed = total).

Each model has a list of `PullFault`s consumed one per pull (then `default` applies): an `{"error": …}` line,
a dropped connection, a clean end without `success`, or a hold until `release()` (or until the client hangs up,
which sets `disconnected`). An unknown model is answered the way the daemon does: 200, `pulling manifest`,
then `{"error":"pull model manifest: file does not exist"}` - or with `unknown_status` as a plain HTTP error.
Also `GET /api/tags` (the pulled models) and `GET /` ("Ollama is running"). Every request is recorded.

Serving (`serve()` adds a model that is already pulled): `POST /api/show`, `POST /api/chat` (NDJSON lines
`{"model","created_at","message":{"role":"assistant","content":…},"done":false}`, then a done line with
`done_reason`, `prompt_eval_count`, `eval_count` and durations; or one JSON when `stream` is false),
`POST /api/embed` (bag-of-letters vectors, L2-normalised: `fake_vector`), `POST /api/generate` without a
prompt (loads the model, or unloads it with `keep_alive` 0) and `GET /api/ps` (loaded models with `size`,
`size_vram`, `expires_at`, `context_length` from `options.num_ctx`). A model the daemon lacks gets 404
`{"error":"model \"x\" not found, try pulling it first"}` (`show`: `model 'x' not found`); one it cannot load
(`load_error`) gets 500 with that text.

Each chat takes the model's next `ChatReply` from `replies` (then `reply` applies): scripted `pieces` or an echo
of the last user message, after any `thinking` pieces and before any whole `tool_calls` (one line), each line a
token; `options.num_predict` is honoured (done_reason "length"), `options.stop` is not (the client must cut).
Faults: an HTTP error status, an `{"error": …}` line mid-stream, a dropped connection, a clean end without the
done line, a hold (also before the headers, as while the daemon loads a model) until `release()` or the client
hangs up; `delay` paces every line.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.engines.fake_stream_server import HungUp, StreamHandler, StreamServer

NOT_FOUND = "pull model manifest: file does not exist"


@dataclass(frozen=True)
class PullFault:
    """How one pull misbehaves; byte counts are of the whole model (all layers), as the daemon has them."""

    error_after: int | None = None  # after this many bytes, send {"error": error} and end the stream
    error: str = "max retries exceeded: unexpected EOF"
    drop_after: int | None = None  # after this many bytes, close the connection mid-stream
    end_after: int | None = None  # after this many bytes, end the stream cleanly but without "success"
    hold_after: int | None = None  # after this many bytes, pause until release() or the client hangs up


@dataclass(frozen=True)
class ChatReply:
    """How one `/api/chat` request is answered; the default is a correct, echoed reply."""

    pieces: tuple[str, ...] | None = None  # the reply's tokens; None: "Echo:" and each word of the last user message
    done_reason: str = "stop"  # when every piece was sent (options.num_predict cutting it short gives "length")
    prompt_eval_count: int | None = None  # None: words of every message + 4 per message
    status: int | None = None  # answer with this HTTP status and {"error": error} instead of a stream
    error: str = "an error was encountered while running the model: unexpected EOF"
    error_after: int | None = None  # after this many pieces send {"error": error} and end the stream
    drop_after: int | None = None  # after this many pieces close the connection mid-stream
    end_after: int | None = None  # after this many pieces end the stream cleanly, without the done line
    hold_after: int | None = None  # after this many pieces (0: before the headers) wait for release() or hang-up
    thinking: tuple[str, ...] = ()  # `message.thinking` pieces streamed before the reply's (each one line, a token)
    tool_calls: tuple[dict[str, Any], ...] = ()  # whole calls (`{"function": {"name", "arguments": {}}}`), one line


@dataclass
class FakeModel:
    """One model the fake registry has: its layers and how far the daemon has got with each."""

    name: str
    sizes: list[int]
    faults: list[PullFault] = field(default_factory=list)
    default: PullFault = field(default_factory=PullFault)
    have: list[int] = field(default_factory=list)  # bytes of each layer on the daemon's disk
    pulled: bool = False
    pulls: int = 0
    replies: list[ChatReply] = field(default_factory=list)  # consumed one per chat
    reply: ChatReply = field(default_factory=ChatReply)  # then this one, every time
    ram: int | None = None  # what `ps` says it takes once loaded (None: its size on disk)
    vram: int = 0  # the part of that on the GPU (`size_vram`)
    embeds: bool = True  # False: /api/embed answers 400 "this model does not support embeddings"
    load_error: str | None = None  # the daemon cannot load it: chat, embed and generate answer 500 with this
    chats: int = 0

    def __post_init__(self) -> None:
        self.have = self.have or [0] * len(self.sizes)

    @property
    def digests(self) -> list[str]:
        return [hashlib.sha256(f"{self.name}/{i}/{n}".encode()).hexdigest() for i, n in enumerate(self.sizes)]

    @property
    def digest(self) -> str:
        return hashlib.sha256("".join(self.digests).encode()).hexdigest()


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    body: Any


def full_name(name: str) -> str:
    """The daemon's default tag: "qwen2.5" -> "qwen2.5:latest"."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class FakeOllama(StreamServer):
    """The server; use as a context manager. `host` is what to give the client."""

    def __init__(self, *, step: int = 1 << 20, delay: float = 0.0, unknown_status: int | None = None) -> None:
        self.step = step  # bytes between two progress lines of a layer
        self.delay = delay  # seconds before each line
        self.unknown_status = unknown_status
        self.models: dict[str, FakeModel] = {}
        self.requests: list[Recorded] = []
        self.lines: list[dict[str, Any]] = []  # every NDJSON line sent, over all pulls and chats
        self.loaded: dict[str, dict[str, Any]] = {}  # name -> its `ps` entry
        self.lock = threading.Lock()
        super().__init__(_Handler)
        self.host = f"http://127.0.0.1:{self.port}"

    def add(self, name: str, sizes: Sequence[int], *faults: PullFault, default: PullFault | None = None) -> FakeModel:
        model = FakeModel(full_name(name), list(sizes), list(faults), default or PullFault())
        self.models[model.name] = model
        return model

    def serve(
        self,
        name: str,
        *replies: ChatReply,
        reply: ChatReply | None = None,
        size: int = 1000,
        ram: int | None = None,
        vram: int = 0,
        embeds: bool = True,
        load_error: str | None = None,
    ) -> FakeModel:
        """Add a model the daemon already has (pulled), answering chats with `replies`, then `reply`."""
        model = self.add(name, [size])
        model.have, model.pulled, model.replies, model.reply = [size], True, list(replies), reply or ChatReply()
        model.ram, model.vram, model.embeds, model.load_error = ram, vram, embeds, load_error
        return model


class _Drop(Exception):
    """We cut the connection on purpose."""


class _Handler(StreamHandler):
    owner: FakeOllama

    def do_GET(self) -> None:
        fake = self.owner
        fake.requests.append(Recorded("GET", self.path, None))
        if self.path == "/":
            self.answer(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif self.path == "/api/tags":
            models = [
                {"name": m.name, "model": m.name, "modified_at": "2025-01-01T00:00:00Z", "size": sum(m.sizes),
                 "digest": m.digest, "details": {"format": "gguf", "family": "fake"}}
                for m in fake.models.values() if m.pulled
            ]  # fmt: skip
            self.answer(200, json.dumps({"models": models}).encode())
        elif self.path == "/api/ps":
            self.answer(200, json.dumps({"models": list(fake.loaded.values())}).encode())
        else:
            self.answer(404, b"404 page not found", "text/plain")

    def do_POST(self) -> None:
        fake = self.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        fake.requests.append(Recorded("POST", self.path, body))
        routes = {"/api/pull": self.pull, "/api/chat": self.chat, "/api/embed": self.embed,
                  "/api/generate": self.generate, "/api/show": self.show}  # fmt: skip
        route = routes.get(self.path)
        if route is None or not isinstance(body, dict):
            self.answer(404 if route is None else 400, json.dumps({"error": "bad request"}).encode())
            return
        route(body)

    def pull(self, body: dict[str, Any]) -> None:
        fake = self.owner
        model = fake.models.get(full_name(str(body.get("model") or body.get("name") or "")))
        if model is None and fake.unknown_status is not None:
            self.answer(fake.unknown_status, json.dumps({"error": NOT_FOUND}).encode())
            return
        self.start_stream()
        try:
            self.send_line({"status": "pulling manifest"})
            if model is None:
                self.send_line({"error": NOT_FOUND})
            elif self.stream_layers(model):
                for status in ("verifying sha256 digest", "writing manifest", "success"):
                    self.send_line({"status": status})
                model.pulled = True
            self.wfile.write(b"0\r\n\r\n")
        except HungUp:
            fake.disconnected.set()
            self.close_connection = True
        except _Drop:
            self.close_connection = True

    def stream_layers(self, model: FakeModel) -> bool:
        """Send each layer's progress, applying this pull's fault; True when every layer is complete."""
        fake = self.owner
        with fake.lock:
            fault = model.faults.pop(0) if model.faults else model.default
            model.pulls += 1
        for i, (size, digest) in enumerate(zip(model.sizes, model.digests, strict=True)):
            first = True
            while first or model.have[i] < size:
                if not first:
                    model.have[i] = min(size, model.have[i] + fake.step)
                first = False
                line: dict[str, Any] = {"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}", "total": size}
                if model.have[i]:
                    line["completed"] = model.have[i]
                self.send_line(line)
                got = sum(model.have)
                if fault.error_after is not None and got >= fault.error_after:
                    self.send_line({"error": fault.error})
                    return False
                if fault.end_after is not None and got >= fault.end_after:
                    return False
                if fault.drop_after is not None and got >= fault.drop_after:
                    raise _Drop  # no closing chunk: the client sees the stream cut short
                if fault.hold_after is not None and got >= fault.hold_after:
                    fault = PullFault(error_after=fault.error_after, drop_after=fault.drop_after)  # hold once
                    self.hold()
        return True

    def send_line(self, obj: dict[str, Any]) -> None:
        fake = self.owner
        if fake.delay:
            time.sleep(fake.delay)
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError:
            raise HungUp from None
        fake.lines.append(obj)

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    # -- serving ------------------------------------------------------------------------------------------------

    def served(self, body: dict[str, Any], show: bool = False) -> FakeModel | None:
        """The pulled model `body` names; None after answering 404 the daemon's way."""
        name = str(body.get("model") or body.get("name") or "")
        model = self.owner.models.get(full_name(name))
        if model is not None and model.pulled:
            if model.load_error is None or show:
                return model
            self.answer(500, json.dumps({"error": model.load_error}).encode())
            return None
        text = f"model '{name}' not found" if show else f"model {json.dumps(name)} not found, try pulling it first"
        self.answer(404, json.dumps({"error": text}).encode())
        return None

    def show(self, body: dict[str, Any]) -> None:
        if (model := self.served(body, show=True)) is None:
            return
        doc = {"modelfile": f"FROM {model.name}", "parameters": "", "template": "{{ .Prompt }}",
               "details": {"format": "gguf", "family": "fake"}, "model_info": {"general.architecture": "fake"},
               "capabilities": ["completion", *(["embedding"] if model.embeds else [])],
               "modified_at": "2025-01-01T00:00:00Z"}  # fmt: skip
        self.answer(200, json.dumps(doc).encode())

    def load(self, model: FakeModel, body: dict[str, Any]) -> None:
        """Hold the model in memory as `ps` lists it (or drop it when keep_alive is 0)."""
        fake = self.owner
        keep = _keep_s(body.get("keep_alive"))
        if keep == 0:
            fake.loaded.pop(model.name, None)
            return
        until = datetime(2318, 1, 1, tzinfo=UTC) if keep < 0 else datetime.now(UTC) + timedelta(seconds=keep)
        ram = model.ram if model.ram is not None else sum(model.sizes)
        ctx = int((body.get("options") or {}).get("num_ctx") or 4096)
        fake.loaded[model.name] = {"name": model.name, "model": model.name, "size": ram, "digest": model.digest,
                                   "details": {"format": "gguf", "family": "fake"}, "expires_at": until.isoformat(),
                                   "size_vram": model.vram, "context_length": ctx}  # fmt: skip

    def generate(self, body: dict[str, Any]) -> None:
        """Only what a client sends without a prompt: load the model, or unload it (keep_alive 0)."""
        if (model := self.served(body)) is None:
            return
        if body.get("prompt"):
            self.answer(400, json.dumps({"error": "the fake daemon generates nothing; use /api/chat"}).encode())
            return
        unload = "keep_alive" in body and _keep_s(body["keep_alive"]) == 0
        if unload:
            self.owner.loaded.pop(model.name, None)
        else:
            self.load(model, body)
        doc = {**_head(model), "response": "", "done": True, "done_reason": "unload" if unload else "load"}
        self.answer(200, json.dumps(doc).encode())

    def embed(self, body: dict[str, Any]) -> None:
        if (model := self.served(body)) is None:
            return
        if not model.embeds:
            self.answer(400, json.dumps({"error": "this model does not support embeddings"}).encode())
            return
        raw = body.get("input") or []
        texts = [raw] if isinstance(raw, str) else [str(t) for t in raw]
        self.load(model, body)
        doc = {"model": model.name, "embeddings": [fake_vector(t) for t in texts], "total_duration": 1000,
               "load_duration": 10, "prompt_eval_count": sum(len(t.split()) for t in texts)}  # fmt: skip
        self.answer(200, json.dumps(doc).encode())

    def chat(self, body: dict[str, Any]) -> None:
        fake = self.owner
        if (model := self.served(body)) is None:
            return
        with fake.lock:
            reply = model.replies.pop(0) if model.replies else model.reply
            model.chats += 1
        if reply.status is not None:
            self.answer(reply.status, json.dumps({"error": reply.error}).encode())
            return
        self.load(model, body)
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        said = list(reply.pieces if reply.pieces is not None else _echo(messages))
        pieces = [{"role": "assistant", "content": "", "thinking": t} for t in reply.thinking]
        pieces += [{"role": "assistant", "content": piece} for piece in said]
        if reply.tool_calls:  # the daemon sends a reply's calls whole, in one line
            pieces.append({"role": "assistant", "content": "", "tool_calls": list(reply.tool_calls)})
        reason, limit = reply.done_reason, (body.get("options") or {}).get("num_predict")
        if isinstance(limit, int) and 0 <= limit < len(pieces):
            pieces, reason = pieces[:limit], "length"
        prompt = reply.prompt_eval_count
        if prompt is None:
            prompt = sum(len(str(m.get("content") or "").split()) + 4 for m in messages)
        final = {**_head(model), "message": {"role": "assistant", "content": ""}, "done_reason": reason,
                 "done": True, "total_duration": 5000, "load_duration": 100, "prompt_eval_count": prompt,
                 "prompt_eval_duration": 1000, "eval_count": len(pieces), "eval_duration": 3000}  # fmt: skip
        if body.get("stream") is False:
            final["message"] = {"role": "assistant", "content": "".join(p["content"] for p in pieces)}
            self.answer(200, json.dumps(final).encode())
            return
        try:
            if reply.hold_after == 0:  # the daemon says nothing, not even headers, while it loads the model
                self.hold()
            self.start_stream()
            for n in range(len(pieces) + 1):
                if n:
                    self.send_line({**_head(model), "message": pieces[n - 1], "done": False})
                if reply.error_after == n:
                    self.send_line({"error": reply.error})
                    break
                if reply.drop_after == n:
                    raise _Drop  # no closing chunk: the client sees the stream cut short
                if reply.end_after == n:
                    break
                if n and reply.hold_after == n:
                    self.hold()
            else:
                self.send_line(final)
            self.wfile.write(b"0\r\n\r\n")
        except HungUp:
            fake.disconnected.set()
            self.close_connection = True
        except _Drop:
            self.close_connection = True

    def answer(self, status: int, body: bytes, kind: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def fake_vector(text: str) -> list[float]:
    """The fake's embedding of `text`: letter counts a..z, L2-normalised (all zero without letters)."""
    counts = [float(text.lower().count(chr(97 + i))) for i in range(26)]
    norm = math.sqrt(sum(c * c for c in counts))
    return [c / norm for c in counts] if norm else counts


def echo_pieces(text: str) -> tuple[str, ...]:
    """`text` as the fake echoes it: "Echo:" and each word with its leading blank."""
    words = ["Echo:", *text.split()]
    return tuple(w if i == 0 else " " + w for i, w in enumerate(words))


def _echo(messages: list[dict[str, Any]]) -> tuple[str, ...]:
    last = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    return echo_pieces(last)


def _head(model: FakeModel) -> dict[str, Any]:
    return {"model": model.name, "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}


def _keep_s(keep: Any) -> float:
    """A keep_alive value in seconds, the daemon's way: a number of seconds or a duration ("5m", "0s", "-1")."""
    if isinstance(keep, int | float):
        return float(keep)
    if isinstance(keep, str) and (m := re.fullmatch(r"(-?\d+(?:\.\d+)?)([smh]?)", keep.strip())):
        return float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m[2]]
    return 300.0
