"""Load on `llm-tui serve`: concurrent streaming chat clients for a fixed time, every stream checked.

Each client loops: POST /v1/chat/completions with stream=True and stream_options.include_usage, reads the
SSE stream to the end and checks it is whole (content chunks, then a chunk with finish_reason, then the
usage chunk, then `data: [DONE]` and nothing after; the content equal to the expected text when one is
given). It records the time to first token (request sent → first chunk with content). No request starts
after `seconds`; the run then waits for the streams in flight and stops by itself.

`main()` starts an in-process server over a FakeEngine on 127.0.0.1 (port 0) and prints one JSON line:

    python bench/serve_load.py [--clients 16] [--seconds 20] [--token-delay-ms 5] [--words 6]

Or drive a server that is already running (loopback only): `--url http://127.0.0.1:8000/v1 --model NAME`.

A FakeEngine instance runs one request at a time (the instance's FIFO), so with N clients on one model
the TTFT is mostly queueing: about N x the time one reply takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MAX_MESSAGES = 50
"""How many error / incomplete-stream descriptions a result keeps (the counts keep going)."""

PROMPT = "load test"

Expect = Callable[[str], str]
"""The reply expected for a prompt (e.g. the fake engine's echo); None: the content is not checked."""


def echo(prompt: str) -> str:
    """What FakeEngine replies to `prompt`."""
    return f"Echo: {prompt}"


@dataclass
class LoadResult:
    """What one load run saw."""

    requests: int
    """Requests sent (finished, failed or incomplete)."""
    errors: list[str]
    """HTTP errors, transport failures and error objects inside streams (the first MAX_MESSAGES)."""
    incomplete: int
    """Streams that ended without finish_reason / usage / [DONE], in the wrong order, or with the wrong text."""
    requests_per_s: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    tokens: int
    """Completion tokens, from the usage chunks."""
    elapsed_s: float
    clients: int = 0
    error_count: int = 0
    incomplete_details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error_count == 0 and self.incomplete == 0

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        for key in ("requests_per_s", "ttft_p50_ms", "ttft_p99_ms", "elapsed_s"):
            if out[key] is not None:
                out[key] = round(out[key], 2)
        out["tokens_per_s"] = round(self.tokens / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0
        return out


@dataclass
class _Tally:
    """Shared by the workers of one run (they all run on one event loop: no lock needed)."""

    requests: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    incomplete: int = 0
    incomplete_details: list[str] = field(default_factory=list)
    ttfts_ms: list[float] = field(default_factory=list)
    tokens: int = 0

    def error(self, text: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_MESSAGES:
            self.errors.append(text)

    def broken(self, text: str) -> None:
        self.incomplete += 1
        if len(self.incomplete_details) < MAX_MESSAGES:
            self.incomplete_details.append(text)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def _check_loopback(base_url: str) -> None:
    host = urlsplit(base_url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the load driver only talks to loopback servers, not {host!r}")


async def _one_request(
    client: httpx.AsyncClient, url: str, model: str, prompt: str, expect: Expect | None, max_tokens: int | None
) -> tuple[str | None, str | None, float | None, int]:
    """One streamed chat request: (error, incomplete reason, TTFT ms, completion tokens)."""
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    parts: list[str] = []
    ttft: float | None = None
    finish: str | None = None
    usage: dict[str, int] | None = None
    done = False
    problem: str | None = None
    sent = time.perf_counter()
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode("utf-8", "replace")
            return f"HTTP {response.status_code}: {text[:300]}", None, None, 0
        async for line in response.aiter_lines():
            if not line:
                continue
            if not line.startswith("data: "):
                problem = problem or f"not an SSE data line: {line[:80]!r}"
                continue
            data = line[len("data: ") :]
            if done:
                problem = problem or "data after [DONE]"
                continue
            if data == "[DONE]":
                done = True
                if usage is None:
                    problem = problem or "[DONE] before the usage chunk"
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                return f"error in stream: {json.dumps(chunk['error'])[:300]}", None, ttft, 0
            if usage is not None:
                problem = problem or "a chunk after the usage chunk"
            choices = chunk.get("choices") or []
            if not choices:
                if chunk.get("usage") is None:
                    problem = problem or "a chunk with neither choices nor usage"
                elif finish is None:
                    problem = problem or "the usage chunk before finish_reason"
                usage = chunk.get("usage")
                continue
            choice = choices[0]
            content = (choice.get("delta") or {}).get("content")
            if content:
                if finish is not None:
                    problem = problem or "content after finish_reason"
                if ttft is None:
                    ttft = (time.perf_counter() - sent) * 1000.0
                parts.append(content)
            if choice.get("finish_reason"):
                if finish is not None:
                    problem = problem or "two chunks with finish_reason"
                finish = choice["finish_reason"]
    tokens = int(usage.get("completion_tokens", 0)) if usage else 0
    if problem is None:
        if finish is None:
            problem = "no chunk with finish_reason"
        elif usage is None:
            problem = "no usage chunk"
        elif not done:
            problem = "no [DONE]"
        elif expect is not None and (text := "".join(parts)) != (wanted := expect(prompt)):
            problem = f"content {text[:80]!r} != expected {wanted[:80]!r}"
    return None, problem, ttft, tokens


async def run_load_async(
    base_url: str,
    clients: int,
    seconds: float,
    model: str,
    api_key: str | None = None,
    *,
    prompt: str = PROMPT,
    expect: Expect | None = None,
    max_tokens: int | None = None,
    request_timeout_s: float = 30.0,
) -> LoadResult:
    """`run_load` on the running event loop (so several loads, e.g. on different models, can share one)."""
    _check_loopback(base_url)
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    tally = _Tally()
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + seconds

    async def worker(index: int) -> None:
        # One client (own connection pool) per worker, as separate programs would be; trust_env=False so
        # no proxy from the environment ever sits between the driver and the loopback server.
        timeout = httpx.Timeout(request_timeout_s, connect=min(5.0, request_timeout_s))
        async with httpx.AsyncClient(timeout=timeout, headers=headers, trust_env=False) as client:
            n = 0
            while loop.time() < deadline:
                text = f"{prompt} (client {index} request {n})"
                n += 1
                tally.requests += 1
                try:
                    error, problem, ttft, tokens = await _one_request(client, url, model, text, expect, max_tokens)
                except (httpx.HTTPError, json.JSONDecodeError, OSError) as exc:
                    tally.error(f"client {index}: {type(exc).__name__}: {exc}")
                    continue
                if error is not None:
                    tally.error(f"client {index}: {error}")
                    continue
                if problem is not None:
                    tally.broken(f"client {index} request {n - 1}: {problem}")
                    continue
                if ttft is not None:
                    tally.ttfts_ms.append(ttft)
                tally.tokens += tokens

    tasks = [asyncio.create_task(worker(i)) for i in range(clients)]
    # Every request has its own timeout; this bounds the run as a whole on top of that.
    finished, late = await asyncio.wait(tasks, timeout=seconds + request_timeout_s + 10.0)
    for task in late:
        task.cancel()
        tally.error("a client was still running long after the deadline")
    await asyncio.gather(*late, return_exceptions=True)
    for task in finished:
        if task.exception() is not None:
            tally.error(f"a client crashed: {task.exception()!r}")
    elapsed = loop.time() - started
    return LoadResult(
        requests=tally.requests,
        errors=tally.errors,
        incomplete=tally.incomplete,
        requests_per_s=tally.requests / elapsed if elapsed > 0 else 0.0,
        ttft_p50_ms=percentile(tally.ttfts_ms, 50),
        ttft_p99_ms=percentile(tally.ttfts_ms, 99),
        tokens=tally.tokens,
        elapsed_s=elapsed,
        clients=clients,
        error_count=tally.error_count,
        incomplete_details=tally.incomplete_details,
    )


def run_load(
    base_url: str,
    clients: int,
    seconds: float,
    model: str,
    api_key: str | None = None,
    *,
    prompt: str = PROMPT,
    expect: Expect | None = None,
    max_tokens: int | None = None,
    request_timeout_s: float = 30.0,
) -> LoadResult:
    """`clients` concurrent streaming chat clients on `model` for `seconds`; blocks until the run ends.

    asyncio + httpx.AsyncClient rather than a thread per client: the driver often shares its process (and
    the GIL, on 2 cores) with an in-process server, and one event loop adds one runnable thread where 16
    client threads would convoy on the GIL and mostly measure thread switching, not the server.
    Each request's prompt is `"{prompt} (client i request n)"`, so `expect` also catches crossed streams.
    """
    return asyncio.run(
        run_load_async(
            base_url,
            clients,
            seconds,
            model,
            api_key,
            prompt=prompt,
            expect=expect,
            max_tokens=max_tokens,
            request_timeout_s=request_timeout_s,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--token-delay-ms", type=float, default=5.0, help="the fake engine's pause before each token")
    parser.add_argument("--url", help="drive this running server (loopback) instead of an in-process one")
    parser.add_argument("--model", default="tiny", help="model name to request (default: the in-process fake)")
    parser.add_argument("--api-key-env", metavar="NAME", help="variable holding the --url server's API key")
    args = parser.parse_args()

    if args.url:
        import os

        key = os.environ.get(args.api_key_env, "") if args.api_key_env else None
        result = run_load(args.url, args.clients, args.seconds, args.model, key or None)
        print(json.dumps({"bench": "serve_load", "url": args.url, **result.to_json()}))
        raise SystemExit(0 if result.ok else 1)

    from engines.adapters.fake import FakeEngine
    from engines.config.load import default_config
    from engines.config.serve import ServeConfig
    from engines.manager import EngineManager
    from engines.server.app import ServerContext
    from engines.server.runner import ServerThread, prepare
    from engines.types import ModelSpec

    with EngineManager() as manager:
        engine = FakeEngine(token_delay_s=args.token_delay_ms / 1000.0)
        run_id = manager.start(ModelSpec(args.model, format="fake", engines=("fake",)), engine=engine)
        manager.wait_ready(run_id, timeout=10.0)
        context = ServerContext(manager, default_config(), ServeConfig(host="127.0.0.1", port=0))
        server = ServerThread(prepare(context))
        server.start()
        try:
            result = run_load(server.url, args.clients, args.seconds, args.model, expect=echo)
        finally:
            server.stop()
        info = manager.info(run_id)
        line = {
            "bench": "serve_load",
            "engine": "fake",
            "token_delay_ms": args.token_delay_ms,
            **result.to_json(),
            "pending_after": info.pending_requests,
            "server": context.stats.snapshot(),
        }
    print(json.dumps(line))
    raise SystemExit(0 if result.ok and info.pending_requests == 0 else 1)


if __name__ == "__main__":
    main()
