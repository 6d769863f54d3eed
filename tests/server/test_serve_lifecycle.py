"""`llm-tui serve`'s life: SIGTERM drains running streams (or ends them with an error event) and exits 0 saying
`stopped`; SIGHUP does not kill it; HEAD /healthz answers. A real subprocess over the fake engine, paced."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.engines.server_fixture import served

TOKEN_DELAY_S = 0.05
# The fake engine reads no environment: the child process sets its pace before the CLI starts.
CHILD = (
    "import sys; from engines.adapters.fake import FakeEngine;"
    f" FakeEngine.__init__.__kwdefaults__['token_delay_s'] = {TOKEN_DELAY_S};"
    " from cli.main import main; sys.exit(main(sys.argv[1:]))"
)


@dataclass
class Serve:
    url: str
    process: subprocess.Popen[str]
    log: list[str]
    lines: threading.Condition

    def wait_for_line(self, needle: str, timeout: float = 10.0) -> str:
        with self.lines:
            found = self.lines.wait_for(lambda: next((x for x in self.log if needle in x), None), timeout)
        assert found, f"no line with {needle!r} in:\n" + "\n".join(self.log)
        return str(found)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, float]:
        """Send `sig`; the exit status and the seconds it took to exit."""
        sent = time.monotonic()
        self.process.send_signal(sig)
        code = self.process.wait(timeout)
        return code, time.monotonic() - sent


@contextmanager
def serve(home: Path, *args: str) -> Iterator[Serve]:
    model = home / "tiny.gguf"
    model.write_bytes(b"GGUF")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_TUI_")}
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        env[name] = str(home / name.lower())
    command = [sys.executable, "-c", CHILD, "serve", "--port", "0", "--model", str(model), "--engine", "fake", *args]
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=Path.cwd()
    )
    log: list[str] = []
    lines = threading.Condition()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            with lines:
                log.append(line.rstrip("\n"))
                lines.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    server = Serve("", process, log, lines)
    try:
        found = re.search(r"serving on (http://\S+/v1)", server.wait_for_line("serving on", 60))
        assert found is not None
        server.url = found.group(1)
        # The socket listens before uvicorn runs: this waits (in the backlog) until uvicorn serves.
        assert httpx.get(server.url.removesuffix("/v1") + "/healthz", timeout=30).status_code == 200
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(5)


def wait_for_pending(server: Serve, count: int, timeout: float = 10.0) -> None:
    """Until the model's instance holds `count` requests (running + queued), as /v1/llm-tui/metrics reports."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = httpx.get(server.url.removesuffix("/v1") + "/v1/llm-tui/metrics").json()
        if metrics["instances"][0]["pending_requests"] == count:
            return
    raise AssertionError(f"never {count} pending requests")


def chat(words: int) -> dict[str, object]:
    text = " ".join(f"w{i}" for i in range(words))
    return {"model": "tiny", "messages": [{"role": "user", "content": text}], "stream": True}


def start_stream(url: str, words: int, events: list[str], first: threading.Event) -> threading.Thread:
    """Stream a reply of about `words` tokens on a thread; `events` gets every SSE data payload."""

    def run() -> None:
        with httpx.stream("POST", f"{url}/chat/completions", json=chat(words), timeout=60) as reply:
            for line in reply.iter_lines():
                if line.startswith("data: "):
                    events.append(line.removeprefix("data: "))
                    if '"content": "' in line or '"content":"' in line:
                        first.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def text_of(events: list[str]) -> str:
    chunks = [json.loads(e) for e in events if e != "[DONE]" and "choices" in e]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_sigterm_lets_a_running_stream_finish_within_the_grace(tmp_path: Path) -> None:
    with serve(tmp_path, "--shutdown-grace", "20") as server:
        events: list[str] = []
        first = threading.Event()
        client = start_stream(server.url, 30, events, first)  # ~1.5 s of tokens
        assert first.wait(20)
        code, took = server.stop(signal.SIGTERM)
        client.join(20)
        log = list(server.log)
    assert code == 0, log
    assert events[-1] == "[DONE]" and text_of(events) == "Echo: " + " ".join(f"w{i}" for i in range(30))
    assert took < 10, f"exited {took:.1f} s after SIGTERM"  # the stream's end, not the 20 s grace
    assert any(re.search(r"POST /v1/chat/completions 200 \d+ ms", line) for line in log), log
    assert log[-1] == "llm-tui serve: stopped", log
    assert not any("Cancel" in line or "Traceback" in line for line in log), log


def test_sigterm_ends_a_stream_past_the_grace_with_an_error_event(tmp_path: Path) -> None:
    with serve(tmp_path, "--shutdown-grace", "0.5") as server:
        events: list[str] = []
        first = threading.Event()
        client = start_stream(server.url, 2000, events, first)  # ~100 s of tokens
        assert first.wait(20)
        # A whole (not streamed) request queued behind it is ended too, with a 503.
        queued: list[httpx.Response] = []
        waiting = threading.Thread(
            target=lambda: queued.append(
                httpx.post(f"{server.url}/chat/completions", json=chat(3) | {"stream": False}, timeout=30)
            )
        )
        waiting.start()
        wait_for_pending(server, 2)
        server.process.send_signal(signal.SIGTERM)
        server.wait_for_line("stopping: waiting up to 0.5 s for 2 running replies")
        # No new request is taken while it stops: the port is closed, or the request is refused.
        try:
            late = httpx.post(f"{server.url}/chat/completions", json=chat(2) | {"stream": False}, timeout=10)
            assert late.status_code == 503 and late.json()["error"]["code"] == "server_shutting_down"
        except httpx.TransportError:
            pass
        code = server.process.wait(15)
        client.join(20)
        waiting.join(20)
        log = list(server.log)
    assert code == 0, log
    assert queued[0].status_code == 503 and queued[0].json()["error"]["code"] == "server_shutting_down"
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert error["code"] == "server_shutting_down" and "shutting down" in error["message"], events[-1]
    assert text_of(events).startswith("Echo: w0")  # what was generated before the end was sent
    # One log line per request, each saying why it ended.
    ended = [x for x in log if "POST /v1/chat/completions" in x and "(the server is shutting down" in x]
    assert sorted(re.findall(r"completions (\d{3}) ", " ".join(ended))) == ["200", "503"], log
    assert log[-1] == "llm-tui serve: stopped", log
    assert not any("Cancel" in x or "Traceback" in x for x in log), log


def test_sighup_does_not_kill_the_server_and_head_healthz_answers(tmp_path: Path) -> None:
    with serve(tmp_path) as server:
        base = server.url.removesuffix("/v1")
        server.process.send_signal(signal.SIGHUP)
        server.wait_for_line("SIGHUP ignored")
        alive = server.process.poll()
        head = httpx.head(f"{base}/healthz")
        get = httpx.get(f"{base}/healthz")
        code, _ = server.stop(signal.SIGINT)
        log = list(server.log)
    assert alive is None, log
    assert head.status_code == 200 and head.content == b""
    assert get.status_code == 200 and get.json()["status"] == "ok"
    assert code == 0 and log[-1] == "llm-tui serve: stopped", log


def test_head_healthz_in_process() -> None:
    with served() as s:
        base = s.url.removesuffix("/v1")
        head = httpx.head(f"{base}/healthz")
        other = httpx.head(f"{base}/v1/models")
    assert head.status_code == 200
    assert other.status_code == 405  # only /healthz is meant for probes


def test_shutdown_grace_from_the_file_and_the_flag() -> None:
    from cli.serve import add_parser, serve_settings
    from engines.config.load import default_config
    from engines.config.serve import parse_serve
    from engines.errors import BadRequest

    warnings: list[str] = []
    assert parse_serve({"shutdown_grace_s": 2.5}, "config.toml", warnings).shutdown_grace_s == 2.5 and not warnings
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(), lambda p: None)
    config = default_config()
    assert serve_settings(parser.parse_args(["serve"]), config, {}).shutdown_grace_s == 10
    assert serve_settings(parser.parse_args(["serve", "--shutdown-grace", "0"]), config, {}).shutdown_grace_s == 0
    with pytest.raises(BadRequest, match="--shutdown-grace must be from 0 to 3600"):
        serve_settings(parser.parse_args(["serve", "--shutdown-grace", "-1"]), config, {})


def test_the_apps_server_ends_running_streams_with_an_error_event_when_turned_off() -> None:
    from engines.adapters.fake import FakeEngine
    from engines.config.load import default_config
    from engines.config.serve import ServeConfig
    from engines.manager import EngineManager
    from engines.server.app import ServerContext
    from engines.server.runner import ServerThread, prepare
    from engines.types import ModelSpec

    with EngineManager() as manager:
        manager.start(ModelSpec("tiny", format="fake", engines=("fake",)), engine=FakeEngine(token_delay_s=0.05))
        server = ServerThread(prepare(ServerContext(manager, default_config(), ServeConfig(port=0))))
        server.start()
        events: list[str] = []
        first = threading.Event()
        client = start_stream(server.url, 2000, events, first)
        assert first.wait(20)
        started = time.monotonic()
        server.stop()  # the app's toggle: no grace
        took = time.monotonic() - started
        client.join(10)
    assert json.loads(events[-1])["error"]["code"] == "server_shutting_down"
    assert took < 2.5 and not server.running
