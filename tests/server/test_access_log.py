"""The access log: one line per request on `llm_tui.serve` (its format, escaping, no key), and the JSON lines
file of `[serve] access_log` (its fields, mode 0600, rotation)."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import httpx
import pytest

from engines.config.serve import ApiKey, ServeConfig
from engines.secret import Secret
from engines.server.access_log import AccessLog, json_line, line
from engines.server.guard import RequestRecord
from tests.engines.server_fixture import served

KEY = "sk-access-log-Qw9"
METRICS_KEY = "sk-access-metrics-Pz7"
USER = [{"role": "user", "content": "hi"}]
FIELDS = {
    "time",
    "request_id",
    "key",
    "client",
    "method",
    "path",
    "status",
    "ms",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "error",
}


def record(**changes: object) -> RequestRecord:
    values: dict[str, object] = {
        "method": "POST",
        "path": "/v1/chat/completions",
        "status": 200,
        "ms": 41.6,
        "client": "10.0.0.7:52114",
        "request_id": "req-1",
        "key": "app",
        "model": "tiny",
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "ttft_ms": 8.2,
    }
    values.update(changes)
    return RequestRecord(**values)  # type: ignore[arg-type]


def test_the_line_format() -> None:
    assert line(record()) == (
        "req-1 app 10.0.0.7:52114 POST /v1/chat/completions 200 42 ms model=tiny tokens=12/5 ttft=8 ms"
    )
    keyless = record(key=None, model=None, prompt_tokens=None, completion_tokens=None, ttft_ms=None, status=404)
    assert line(keyless) == "req-1 10.0.0.7 10.0.0.7:52114 POST /v1/chat/completions 404 42 ms model=- tokens=-/-"
    failed = record(error='the model "x" does not exist', ttft_ms=None)
    assert line(failed).endswith(' tokens=12/5 (the model \\"x\\" does not exist)')
    assert line(record(error="one\ntwo")).endswith("(one\\ntwo)")


def test_client_text_cannot_forge_a_line() -> None:
    text = line(record(path="/v1/x\n2026 admin 1.2.3.4 GET /v1/models 200", model="a b"))
    assert "\n" not in text and '"/v1/x\\n2026 admin' in text and 'model="a b"' in text


def test_the_file_has_every_field_mode_0600_and_never_a_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "logs" / "access.jsonl"
    keys = (
        ApiKey("app", Secret(KEY), frozenset({"infer"})),
        ApiKey("grafana", Secret(METRICS_KEY), frozenset({"metrics"})),
    )
    with served(serve=ServeConfig(keys=keys, access_log=path)) as s:
        chat = httpx.post(
            f"{s.url}/chat/completions",
            json={"model": "tiny", "messages": USER},
            headers={"Authorization": f"Bearer {KEY}", "X-Request-Id": "trace-42"},
        )
        scrape = httpx.get(f"{s.url.removesuffix('/v1')}/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"})
        refused = httpx.get(f"{s.url}/models", headers={"Authorization": f"Bearer {KEY}x"})
    assert (chat.status_code, scrape.status_code, refused.status_code) == (200, 200, 401)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    lines = [json.loads(raw) for raw in text.splitlines()]
    assert [set(entry) for entry in lines] == [FIELDS] * 3
    first, second, third = lines
    assert (first["request_id"], first["key"], first["method"], first["path"], first["status"]) == (
        "trace-42",
        "app",
        "POST",
        "/v1/chat/completions",
        200,
    )
    assert first["model"] == "tiny" and first["client"].startswith("127.0.0.1:") and first["ms"] >= 0
    assert first["time"].endswith("Z") and first["error"] is None
    assert (second["key"], second["path"], second["status"]) == ("grafana", "/metrics", 200)
    assert third["key"] is None and third["status"] == 401 and "API key" in third["error"]
    assert third["request_id"] == refused.headers["x-request-id"]
    for secret in (KEY, METRICS_KEY):
        assert secret not in text and secret not in caplog.text
    logged = [r.getMessage() for r in caplog.records if r.name == "llm_tui.serve"]
    assert any(m.startswith("trace-42 app 127.0.0.1:") and " POST /v1/chat/completions 200 " in m for m in logged)


def test_the_file_rotates_at_max_bytes_and_each_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    path.write_text("")
    path.chmod(0o644)  # left readable by an earlier setting: narrowed when opened
    log = AccessLog(path, max_bytes=1024, backups=2)
    try:
        for i in range(40):
            log.write(record(request_id=f"req-{i:03d}"))
    finally:
        log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["access.jsonl", "access.jsonl.1", "access.jsonl.2"]
    for name in files:
        file = tmp_path / name
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, name
        assert 0 < file.stat().st_size <= 1024, name
    newest = [json.loads(raw)["request_id"] for raw in path.read_text().splitlines()]
    assert newest[-1] == "req-039"


def test_json_line_fields() -> None:
    entry = json.loads(json_line(record(error="boom"), now=0.25))
    assert entry["time"] == "1970-01-01T00:00:00.250Z"
    assert (entry["prompt_tokens"], entry["completion_tokens"], entry["ttft_ms"], entry["error"]) == (
        12,
        5,
        8.2,
        "boom",
    )
    assert set(entry) == FIELDS
