"""Who may talk to the server (issue 18, item 2): DNS rebinding is refused by the Host rule of a keyless server,
and a web page's requests by the Origin rule (`[serve] allowed_origins`), with a key or without."""

from __future__ import annotations

import string
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engines.config.load import load_config
from engines.config.serve import ServeConfig
from engines.errors import ConfigError
from engines.server.errors import ApiError
from engines.server.guard import Guard, ServerStats, host_name
from tests.engines.server_fixture import Served, served

KEY = "sk-host-origin-test"
REBIND = "rebind.attacker.example"


def port_of(s: Served) -> int:
    port = urlsplit(s.url).port
    assert port is not None
    return port


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, object] = body["error"]
    return error


def test_keyless_server_refuses_a_rebound_host_on_every_path() -> None:
    with served() as s:
        port = port_of(s)
        base = s.url.removesuffix("/v1")
        rebound = {"Host": f"{REBIND}:{port}", "Origin": f"http://{REBIND}:{port}"}
        host_only = {"Host": f"{REBIND}:{port}"}
        answers = [
            httpx.get(f"{base}/healthz", headers=host_only),
            httpx.get(f"{s.url}/models", headers=host_only),
            httpx.post(f"{s.url}/chat/completions", headers=host_only, json={"model": "tiny", "messages": []}),
            httpx.get(f"{s.url}/models", headers=rebound),
        ]
    assert [a.status_code for a in answers] == [403, 403, 403, 403]
    refused = error_of(answers[1])
    assert refused["code"] == "host_not_allowed" and refused["type"] == "permission_error"
    message = str(refused["message"])
    assert REBIND in message and "127.0.0.1" in message and "API key" in message, message
    assert s.engines["tiny"].calls == []  # nothing reached the model


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST.", "[::1]"])
def test_keyless_server_serves_loopback_names_with_or_without_the_port(host: str) -> None:
    with served() as s:
        port = port_of(s)
        with_port = httpx.get(f"{s.url}/models", headers={"Host": f"{host}:{port}"})
        without = httpx.get(f"{s.url.removesuffix('/v1')}/healthz", headers={"Host": host})
    assert (with_port.status_code, without.status_code) == (200, 200)


def test_the_bound_address_is_served_too() -> None:
    with served(serve=ServeConfig(host="127.0.0.2")) as s:
        port = port_of(s)
        bound = httpx.get(f"{s.url}/models")  # Host: 127.0.0.2:port
        other = httpx.get(f"{s.url}/models", headers={"Host": f"127.0.0.3:{port}"})
    assert "127.0.0.2" in s.url and bound.status_code == 200
    assert other.status_code == 403


def test_a_server_with_a_key_serves_any_host_name_that_brings_the_key() -> None:
    with served(serve=ServeConfig().with_keys(KEY)) as s:
        other = httpx.get(f"{s.url}/models", headers={"Host": "gpu-box.lan:8000", "Authorization": f"Bearer {KEY}"})
        keyless = httpx.get(f"{s.url}/models", headers={"Host": "gpu-box.lan:8000"})
    assert other.status_code == 200
    assert keyless.status_code == 401  # the key rule, not the Host rule, answers a keyed server


def test_an_origin_not_allowed_is_403_with_or_without_a_key() -> None:
    page = {"Origin": "http://evil.example"}
    with served() as keyless, served(serve=ServeConfig().with_keys(KEY)) as keyed:
        plain = httpx.get(f"{keyless.url}/models", headers=page)
        health = httpx.get(f"{keyless.url.removesuffix('/v1')}/healthz", headers=page)
        keyed_answer = httpx.get(f"{keyed.url}/models", headers={**page, "Authorization": f"Bearer {KEY}"})
        posted = httpx.post(
            f"{keyless.url}/chat/completions", headers=page, json={"model": "tiny", "messages": [{"role": "user"}]}
        )
    assert [r.status_code for r in (plain, health, keyed_answer, posted)] == [403, 403, 403, 403]
    error = error_of(keyed_answer)
    assert error["code"] == "origin_not_allowed" and "allowed_origins" in str(error["message"])
    assert keyless.engines["tiny"].calls == []


def test_allowed_origins_are_served_with_cors_headers_and_preflight() -> None:
    serve = ServeConfig(allowed_origins=("http://localhost:3000",))
    with served(serve=serve) as s:
        ok = httpx.get(f"{s.url}/models", headers={"Origin": "http://localhost:3000"})
        other = httpx.get(f"{s.url}/models", headers={"Origin": "http://localhost:3001"})
        preflight = httpx.options(
            f"{s.url}/chat/completions",
            headers={
                "Origin": "http://localhost:3000",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        refused_preflight = httpx.options(
            f"{s.url}/chat/completions",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 204 and "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"]
    assert refused_preflight.status_code == 403


def test_star_allows_any_origin() -> None:
    with served(serve=ServeConfig(allowed_origins=("*",))) as s:
        answer = httpx.get(f"{s.url}/models", headers={"Origin": "https://anything.example"})
    assert answer.status_code == 200


def test_allowed_origins_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[serve]\nallowed_origins = ["HTTP://LocalHost:3000/", "*"]\n')
    assert load_config(path, env={}).serve.allowed_origins == ("http://localhost:3000", "*")
    path.write_text('[serve]\nallowed_origins = ["localhost:3000/app"]\n')
    with pytest.raises(ConfigError, match=r"serve\.allowed_origins must be a list of origins"):
        load_config(path, env={})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits + ".-:[]@_", min_size=1, max_size=40))
def test_only_loopback_names_pass_the_host_rule(host: str) -> None:
    """Whatever a Host header holds, a keyless guard lets it through only when its name is a loopback one."""
    guard = Guard(_nothing, ServeConfig(), ServerStats())
    try:
        guard._check_host({"host": host})
    except ApiError as refused:
        assert refused.status == 403
        return
    assert host_name(host) in {"127.0.0.1", "localhost", "[::1]"}, host


async def _nothing(scope: object, receive: object, send: object) -> None:
    """An app the guard never reaches in the property test."""
