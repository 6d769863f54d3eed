"""`llm-tui web` follows the API server's rule (loopback only, unless a password is set) and refuses what a web page
elsewhere could do with it: requests by another host name (DNS rebinding), websockets from another site's page."""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from cli.main import main
from cli.web import app_command, is_loopback
from tests.serve_process import serve_env
from tests.web.web_process import WebProcess, run_web, web_process
from tui.web_serve import COOKIE, Access, FailureLimit

PASSWORD = "correct horse battery staple"


def basic(password: str, user: str = "me") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def handshake(url: str, **headers: str) -> int:
    """The status a websocket handshake to `url` gets (101 when it is accepted; the socket is then closed)."""

    async def go() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url, headers=headers, autoping=False) as ws:
                    await ws.close()
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    return asyncio.run(go())


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    home = tmp_path_factory.mktemp("web-open")
    with web_process(home, "web", "--port", "0") as web:
        yield web


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    home = tmp_path_factory.mktemp("web-locked")
    env = serve_env(home, WEB_SECRET=PASSWORD)
    args = ("web", "--port", "0", "--password-env", "WEB_SECRET", "--public-url", "https://llm.example/")
    with web_process(home, *args, env=env) as web:
        yield web


def test_beyond_loopback_without_a_password_is_refused_with_one_line_and_status_2(tmp_path: Path) -> None:
    done = run_web(tmp_path, "web", "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("llm-tui: error: refusing to listen on 0.0.0.0 without a password")
    assert "--password-env NAME or LLM_TUI_WEB_PASSWORD" in done.stderr


def test_a_password_variable_that_is_not_set_is_one_line(tmp_path: Path) -> None:
    done = run_web(tmp_path, "web", "--port", "0", "--password-env", "NOT_SET_ANYWHERE")
    assert done.returncode == 1
    assert done.stderr == (
        "llm-tui: error: --password-env NOT_SET_ANYWHERE: that environment variable is not set or empty\n"
    )


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_web(tmp_path, "web", "--port", str(port))
    assert done.returncode == 1
    assert done.stderr == (f"llm-tui: error: port {port} on 127.0.0.1 is already in use; choose another with --port\n")


def test_without_textual_serve_the_error_names_the_extra(
    isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "textual_serve" else find_spec(name, *rest)
    )
    assert main(["web", "--port", "0"]) == 1
    assert capsys.readouterr().err == (
        "llm-tui: error: `llm-tui web` needs textual-serve: pip install 'llm-tui[web]'\n"
    )


def test_the_page_is_served_on_loopback_names_and_another_host_name_is_refused(open_server: WebProcess) -> None:
    port = open_server.base.rsplit(":", 1)[1]
    page = httpx.get(open_server.base + "/", timeout=10)
    assert page.status_code == 200
    assert f'data-session-websocket-url="ws://127.0.0.1:{port}/ws"' in page.text
    by_name = httpx.get(open_server.base + "/", headers={"Host": f"localhost:{port}"}, timeout=10)
    assert f'data-session-websocket-url="ws://localhost:{port}/ws"' in by_name.text  # the address the browser used
    rebound = httpx.get(open_server.base + "/", headers={"Host": f"evil.example:{port}"}, timeout=10)
    assert rebound.status_code == 403
    assert "answers only requests addressed to 127.0.0.1, localhost or [::1]" in rebound.text
    assert handshake(open_server.base + "/ws", Host=f"evil.example:{port}", Origin=f"http://evil.example:{port}") == 403


def test_a_websocket_from_another_sites_page_is_refused(open_server: WebProcess) -> None:
    status = handshake(open_server.base + "/ws", Origin="https://evil.example")
    assert status == 403
    assert handshake(open_server.base + "/ws", Origin="http://127.0.0.1:1") == 403  # another port: another origin


def test_with_a_password_nothing_is_served_without_it(locked_server: WebProcess) -> None:
    for path in ("/", "/static/js/textual.js", "/download/x"):
        refused = httpx.get(locked_server.base + path, timeout=10)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"].startswith('Basic realm="llm-tui"')
    wrong = httpx.get(locked_server.base + "/", headers=basic("wrong"), timeout=10)
    assert wrong.status_code == 401
    forged = httpx.get(locked_server.base + "/", cookies={COOKIE: "forged"}, timeout=10)
    assert forged.status_code == 401
    origin = locked_server.base
    assert handshake(locked_server.base + "/ws", Origin=origin) == 401


def test_with_a_password_basic_auth_logs_in_and_its_cookie_opens_the_websocket(locked_server: WebProcess) -> None:
    page = httpx.get(locked_server.base + "/", headers=basic(PASSWORD), timeout=10)
    assert page.status_code == 200
    assert "textual-terminal" in page.text
    set_cookie = page.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert "Secure" in set_cookie  # browsers reach it by https (--public-url)
    assert 'data-session-websocket-url="wss://llm.example/ws"' in page.text
    assert 'href="https://llm.example/static/css/xterm.css"' in page.text
    cookie = page.cookies[COOKIE]
    again = httpx.get(locked_server.base + "/static/js/textual.js", cookies={COOKIE: cookie}, timeout=10)
    assert again.status_code == 200
    assert "set-cookie" not in again.headers
    origin = locked_server.base
    assert handshake(locked_server.base + "/ws", Origin="https://evil.example", Cookie=f"{COOKIE}={cookie}") == 403
    assert handshake(locked_server.base + "/ws", Origin=origin, Cookie=f"{COOKIE}={cookie}") == 101
    # With a password, any host name may be used (a proxy's, the machine's): the password is the guard.
    named = httpx.get(locked_server.base + "/", headers={**basic(PASSWORD), "Host": "box.example:1234"}, timeout=10)
    assert named.status_code == 200


def test_the_password_is_compared_whatever_the_user_name_and_only_as_basic_auth() -> None:
    access = Access(PASSWORD, bound_host="0.0.0.0")
    assert access.password_matches(basic(PASSWORD)["Authorization"])
    assert access.password_matches(basic(PASSWORD, user="")["Authorization"])
    assert not access.password_matches(basic(PASSWORD + "x")["Authorization"])
    assert not access.password_matches("Bearer " + PASSWORD)
    assert not access.password_matches("Basic not-base64!")
    assert not access.password_matches(None)
    assert access.cookie_matches(access.token) and not access.cookie_matches("x") and not access.cookie_matches(None)
    assert Access(PASSWORD, bound_host="0.0.0.0").token != access.token  # a new login after each restart


def test_hosts_and_origins() -> None:
    open_ = Access(None, bound_host="127.0.0.1")
    assert open_.host_allowed("127.0.0.1:8080") and open_.host_allowed("LOCALHOST.") and open_.host_allowed("[::1]:1")
    assert not open_.host_allowed("evil.example:8080") and not open_.host_allowed("127.0.0.1.evil.example")
    assert Access("pw", bound_host="127.0.0.1").host_allowed("evil.example")
    assert open_.origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert open_.origin_allowed(None, "127.0.0.1:8080")  # not a browser: no page to hijack it from
    assert not open_.origin_allowed("http://127.0.0.1:8081", "127.0.0.1:8080")
    assert not open_.origin_allowed("null", "127.0.0.1:8080")
    proxied = Access("pw", bound_host="0.0.0.0", public_url="https://llm.example/")
    assert proxied.origin_allowed("https://llm.example", "127.0.0.1:8080")


def test_wrong_passwords_are_limited_per_address() -> None:
    now = [0.0]
    limit = FailureLimit(per_minute=3, clock=lambda: now[0])
    for _ in range(3):
        assert not limit.blocked("a")
        limit.fail("a")
    assert limit.blocked("a") and not limit.blocked("b")
    now[0] = 61.0
    assert not limit.blocked("a")


def test_a_password_allows_any_address_and_the_public_url_must_be_http() -> None:
    from cli.web import Exposed, WebError, check_settings

    def args(**given: object) -> argparse.Namespace:
        return argparse.Namespace(**{"host": "127.0.0.1", "port": 8080, "public_url": None, **given})

    check_settings(args(host="0.0.0.0"), "pw")
    check_settings(args(host="::1"), None)
    with pytest.raises(Exposed):
        check_settings(args(host="::"), None)
    with pytest.raises(WebError, match="--public-url must start with http:// or https://"):
        check_settings(args(public_url="llm.example"), "pw")
    with pytest.raises(WebError, match="--port must be from 0 to 65535"):
        check_settings(args(port=70000), None)


def test_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("box.example")


def test_the_app_command_runs_this_interpreter_with_the_apps_options_quoted() -> None:
    args = argparse.Namespace(
        config="/tmp/a dir/it's.toml", screen="catalog", model="remote:box/m; rm -rf ~", debug=False
    )
    words = shlex.split(app_command(args))
    assert words[0] == "exec"
    assert words[2:] == [
        "-m",
        "cli.main",
        "--config",
        "/tmp/a dir/it's.toml",
        "--screen",
        "catalog",
        "--model",
        "remote:box/m; rm -rf ~",
    ]
    no_options = argparse.Namespace(config=None, screen=None, model=None, debug=False)
    assert shlex.split(app_command(no_options))[2:] == ["-m", "cli.main"]


def test_the_apps_options_are_accepted_before_and_after_web() -> None:
    from cli.main import build_parser

    parser = build_parser()
    before = parser.parse_args(["--model", "m", "--screen", "catalog", "web"])
    after = parser.parse_args(["web", "--model", "m", "--screen", "catalog", "--config", "c.toml"])
    assert (before.model, before.screen) == ("m", "catalog")
    assert (after.model, after.screen, after.config) == ("m", "catalog", "c.toml")


def test_the_apps_are_not_given_the_password(isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import build_parser, load
    from cli.web import run_web as start
    from tui.web_serve import WebServer

    served: list[WebServer] = []
    monkeypatch.setattr(WebServer, "serve", lambda self, debug=False: served.append(self))
    env = {"MY_SECRET": "pw", "LLM_TUI_WEB_PASSWORD": "other", "KEEP": "1"}
    args = build_parser().parse_args(["web", "--port", "0", "--password-env", "MY_SECRET"])
    assert start(args, load(args), env=env) == 0
    (server,) = served
    server.sock.close()
    assert server.access.password == "pw"
    assert env == {"KEEP": "1"}  # what the apps inherit
