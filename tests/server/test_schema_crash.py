"""Issue 18, item 1: one request with a JSON schema killed `llm-tui serve` (SIGSEGV); so did `llm-tui chat`.

A real keyless loopback server with the real Gemma GGUF on llama.cpp, one process for every case here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from engines.structured.check import check_reply
from engines.structured.limits import MAX_REPEAT
from tests.serve_process import serve_env, serve_process

pytestmark = pytest.mark.real_model

# The issue's body, verbatim but for the model's name (the served id of the GGUF under test).
ISSUE_BODY = (
    '{"model":"gemma-3-270m","messages":[{"role":"user","content":"hi"}],"max_tokens":4,'
    '"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","maxLength":10000}}}}'
)
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 50},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "student": {"type": "boolean"},
    },
    "required": ["name", "age", "student"],
}


@dataclass
class Server:
    url: str
    model: str
    process: subprocess.Popen[str]
    log: list[str]

    def chat(self, body: str) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        return httpx.post(f"{self.url}/v1/chat/completions", content=body, headers=headers, timeout=120)

    def schema_request(self, schema: object, max_tokens: int = 4) -> httpx.Response:
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        body = {"model": self.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
        return self.chat(json.dumps({**body, "response_format": fmt}))

    def assert_alive(self) -> None:
        assert self.process.poll() is None, "llm-tui serve died:\n" + "\n".join(self.log[-20:])
        assert httpx.get(f"{self.url}/healthz", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("schema-serve")
    with serve_process(home, "--port", "0", "--model", str(gemma_path), "--threads", "2", "--n-ctx", "1024") as s:
        model = httpx.get(f"{s.base}/v1/models", timeout=10).json()["data"][0]["id"]
        yield Server(s.base, model, s.process, s.log)


def test_the_issues_request_is_a_400_and_the_server_lives(server: Server) -> None:
    reply = server.chat(ISSUE_BODY.replace('"gemma-3-270m"', json.dumps(server.model)))
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == "response_format"
    assert error["message"] == f"json_schema: /maxLength is 10000; the limit is {MAX_REPEAT}"
    server.assert_alive()
    huge = server.schema_request({"type": "string", "maxLength": 1_000_000})
    assert huge.status_code == 400 and "/maxLength is 1000000" in huge.json()["error"]["message"]
    server.assert_alive()


def test_a_schema_llama_cpp_refuses_in_its_test_run_is_a_400_naming_response_format(server: Server) -> None:
    """Within the limits, so it reaches the engine: the child process's refusal is the answer, not a crash."""
    started = time.monotonic()
    reply = server.schema_request({"type": "no-such-type"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == "response_format"
    assert error["message"].startswith("llama.cpp cannot follow this JSON schema"), error
    assert time.monotonic() - started < 60
    server.assert_alive()


def test_a_normal_schema_still_works_and_its_test_run_is_cached(server: Server) -> None:
    ask = "Describe a student called Ana, aged 20, as JSON."
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    body = {
        "model": server.model,
        "messages": [{"role": "user", "content": ask}],
        "max_tokens": 96,
        "temperature": 0,
        "response_format": fmt,
    }
    timings = []
    for _ in range(2):  # one token each: the first pays for the schema's test run, the second finds it cached
        started = time.monotonic()
        short = server.chat(json.dumps({**body, "max_tokens": 1}))
        timings.append(time.monotonic() - started)
        assert short.status_code == 200, short.text
    print(f"one-token reply: first {timings[0]:.2f} s (with the test run), same schema again {timings[1]:.2f} s")
    assert timings[1] < timings[0]
    reply = server.chat(json.dumps(body))
    assert reply.status_code == 200, reply.text
    choice = reply.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    assert set(check_reply(choice["message"]["content"], PERSON)) == {"name", "age", "student"}
    server.assert_alive()


def test_chat_cli_refuses_the_schema_file_in_one_line(gemma_path: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"type": "string", "maxLength": 10000}))
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "chat", str(gemma_path), "hi", "--json-schema", str(big)],
        capture_output=True,
        text=True,
        env=serve_env(tmp_path),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"llm-tui: error: json_schema: /maxLength is 10000; the limit is {MAX_REPEAT}"
    ]
