"""What a wrong request is told (issue 18, items 9 and 12): a body that is not declared JSON is 415 saying to send
`Content-Type: application/json` (refused, so a web page cannot post a form to a keyless server), README's curl
lines work as written, malformed JSON is said in plain words with no param, a prompt past the context is OpenAI's
`context_length_exceeded`, and unknown [serve] keys are named when `llm-tui serve` starts."""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from engines.adapters.fake import FakeEngine
from engines.config.serve import ServeConfig
from tests.engines.server_fixture import served
from tests.serve_process import serve_process

ROOT = Path(__file__).resolve().parents[2]
USER = [{"role": "user", "content": "hello"}]
BODY = b'{"model": "tiny", "messages": [{"role": "user", "content": "hello"}]}'
KEY = "sk-readme-test-key"


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, object] = body["error"]
    return error


FORMS = [None, "application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
"""No type (curl -d without -H sends the form type) and the types a web page may post cross-site without asking."""


@pytest.mark.parametrize("content_type", FORMS)
def test_a_body_not_declared_json_is_415_saying_what_to_send(content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    with served() as s:
        answer = httpx.post(f"{s.url}/chat/completions", content=BODY, headers=headers)
        declared = httpx.post(
            f"{s.url}/chat/completions", content=BODY, headers={"Content-Type": "Application/JSON; charset=utf-8"}
        )
    assert answer.status_code == 415, answer.text
    error = error_of(answer)
    assert "send Content-Type: application/json" in str(error["message"]) and error["code"] == "unsupported_media_type"
    assert declared.status_code == 200  # any case, with parameters
    assert len(s.engines["tiny"].calls) == 1


def readme_curl_lines() -> list[str]:
    """The `curl` command lines of README.md's bash blocks, as written."""
    lines: list[str] = []
    in_bash = False
    for line in (ROOT / "README.md").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_bash = stripped in ("```bash", "```sh", "```console")
            continue
        if in_bash and stripped.startswith("curl "):
            lines.append(stripped.split("  #")[0].strip())
    return lines


def here(found: re.Match[str], port: int | None) -> str:
    """README's address with the test server's port; a loopback name is kept, any other becomes 127.0.0.1."""
    name = found.group(2) if found.group(2) in ("localhost", "127.0.0.1", "[::1]") else "127.0.0.1"
    return f"{found.group(1) or ''}{name}:{port}"


def test_readme_curl_lines_work_as_written() -> None:
    """Each README curl line runs in a shell against a server of the model it names; a line that sends a key
    (`$LLM_KEY`, as README's keyed example sets it) runs against a server that requires that key."""
    lines = readme_curl_lines()
    assert lines, "README.md shows no curl line"
    for line in lines:
        model = re.search(r'"model":\s*"([^"]+)"', line)
        assert model is not None, line
        keyed = "Authorization" in line
        serve = ServeConfig().with_keys(KEY) if keyed else ServeConfig()
        with served({model.group(1): FakeEngine(reply="Hello there")}, serve=serve) as s:
            address = functools.partial(here, port=urlsplit(s.url).port)
            command = re.sub(r"(https?://)?([\w.-]+|\[::1\]):8000\b", address, line)
            env = {**os.environ, "LLM_KEY": KEY}
            done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=30)
        assert done.returncode == 0, (line, done.stderr)
        assert '"error"' not in done.stdout, (line, done.stdout)
        assert "Hello there" in done.stdout, (line, done.stdout)


def test_malformed_json_is_said_in_plain_words_with_no_param() -> None:
    with served() as s:
        answer = httpx.post(
            f"{s.url}/chat/completions", content=b'{"model": "tiny",', headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 400
    error = error_of(answer)
    assert error["param"] is None, error
    message = str(error["message"])
    assert message.startswith("the request body is not valid JSON: "), message
    assert "JSON decode error" not in message and not message.startswith("1:")


@pytest.mark.parametrize(
    ("field", "value"),
    [("seed", False), ("max_tokens", True), ("top_k", True), ("n", True), ("temperature", True), ("top_p", True)],
)
def test_true_or_false_in_a_number_field_is_refused_naming_it(field: str, value: bool) -> None:
    """Pydantic reads true as 1 and false as 0; the schema says a number (schemathesis found `"seed": false`)."""
    with served() as s:
        answer = httpx.post(f"{s.url}/chat/completions", json={"model": "tiny", "messages": USER, field: value})
    assert answer.status_code == 400, answer.text
    error = error_of(answer)
    assert error["param"] == field and "not true or false" in str(error["message"]), error


@pytest.mark.real_model
def test_a_prompt_past_the_context_is_context_length_exceeded(gemma_path: Path) -> None:
    from engines.adapters.llama_cpp import LlamaCppEngine
    from engines.catalog.resolve import spec_for_file
    from engines.manager import EngineManager
    from engines.types import LaunchOptions

    manager = EngineManager()
    run_id = manager.start(
        spec_for_file(gemma_path), LaunchOptions(n_ctx=128, n_threads=2), engine=LlamaCppEngine(selftest=False)
    )
    long = [{"role": "user", "content": "colour " * 400}]
    with served({}, manager=manager) as s:
        answer = httpx.post(f"{s.url}/chat/completions", json={"model": run_id, "messages": long}, timeout=60)
        streamed = httpx.post(
            f"{s.url}/chat/completions", json={"model": run_id, "messages": long, "stream": True}, timeout=60
        )
    for reply in (answer, streamed):
        assert reply.status_code == 400, reply.text
        error = error_of(reply)
        assert error["code"] == "context_length_exceeded" and error["param"] == "messages", error
        assert "tokens but the context holds" in str(error["message"])


def test_unknown_serve_keys_are_named_when_serve_starts(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[serve]\ncors = true\nbogus_key = 1\n")
    with serve_process(tmp_path, "--config", str(config), "--port", "0", start_s=60) as served:
        log = list(served.log)
    text = "\n".join(log)
    warnings = [line for line in log if "warning" in line]
    assert any("'cors'" in w for w in warnings) and any("'bogus_key'" in w for w in warnings), text
