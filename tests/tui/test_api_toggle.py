"""The app's API toggle: `a` on the instances screen and the command palette start and stop the same
OpenAI-compatible server `llm-tui serve` runs, over the app's instances; its URL, requests and errors show."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import openai
from textual.pilot import Pilot
from textual.widgets import Label, Log

from engines.adapters.fake import FakeEngine
from engines.types import LaunchOptions, ModelSpec
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import palette, until
from tests.tui.test_instances_screen import drive
from tui.app import LlmTuiApp
from tui.screens.modals.log_view import LogModal
from tui.widgets.api_status import ApiStatus

ANY_PORT = {"LLM_TUI_SERVE_PORT": "0"}


def api_line(app: LlmTuiApp) -> str:
    return str(app.screen.query_one(ApiStatus).render())


def start_tiny(app: LlmTuiApp, fake_model: Path) -> str:
    return app.runtime.manager.start(ModelSpec(id="tiny", path=fake_model), LaunchOptions(), FakeEngine())


def notes(app: LlmTuiApp) -> str:
    return "\n".join(n.message for n in app._notifications)


def test_a_starts_the_api_over_the_running_instances_and_shows_its_requests(
    make_app: AppFactory, fake_model: Path
) -> None:
    app = make_app(screen="instances", launch=False, env=ANY_PORT)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        run_id = start_tiny(app, fake_model)
        assert "API off" in api_line(app) and "http://127.0.0.1:0/v1" in api_line(app)
        await pilot.press("a")
        await until(pilot, lambda: "API on" in api_line(app), "the API starts")
        server = app.runtime.api
        assert server is not None and server.url in api_line(app) and ":0/" not in server.url
        assert "no key (loopback only)" in api_line(app) and "0 requests" in api_line(app)
        assert f"API {server.url}" in app.sub_title and "serving the running models at" in notes(app)

        client = openai.AsyncOpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=30)
        reply = await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "Echo: hi"
        by_run_id = await client.chat.completions.create(model=run_id, messages=[{"role": "user", "content": "yo"}])
        assert by_run_id.choices[0].message.content == "Echo: yo"
        async with httpx.AsyncClient() as raw:
            missing = await raw.post(f"{server.url}/chat/completions", json={"model": "nope", "messages": []})
        assert missing.status_code == 400  # an empty conversation: refused naming the field
        # The server counts a request just after its reply is sent; the screen redraws the line every second.
        await until(pilot, lambda: "3 requests" in api_line(app), "the count on screen")
        line = api_line(app)
        assert "1 error" in line and "last error: 400 /v1/chat/completions" in line

        await pilot.press("A")
        await until(pilot, lambda: isinstance(app.screen, LogModal), "the API log opens")
        logged = "\n".join(str(line) for line in app.screen.query_one(Log).lines)
        assert logged.count("POST /v1/chat/completions 200") == 2 and "POST /v1/chat/completions 400" in logged
        log = app.screen.query_one(Log)
        assert log.max_scroll_x > 0, "the refusal's reason runs past the dialog"
        assert "← → scroll long lines" in str(app.screen.query_one(".dialog-hint", Label).render())
        await pilot.press("right")
        assert log.scroll_x > 0, "→ shows the rest of a long line"
        await pilot.press("escape")

        url = server.url
        await pilot.press("a")
        await until(pilot, lambda: "API server stopped" in notes(app), "the API stops")
        assert app.runtime.api is None and "API" not in app.sub_title and "API off" in api_line(app)
        async with httpx.AsyncClient() as raw:
            try:
                await raw.get(f"{url}/models", timeout=2)
            except httpx.ConnectError:
                pass
            else:
                raise AssertionError("the server still answers after it was stopped")

    drive(app, test)


def test_a_port_in_use_is_said_and_the_api_stays_off(make_app: AppFactory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = make_app(screen="instances", launch=False, env={"LLM_TUI_SERVE_PORT": str(port)})

        async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
            await pilot.press("a")
            await until(pilot, lambda: "already in use" in notes(app), "the refusal")
            assert f"port {port} on 127.0.0.1 is already in use" in notes(app)
            assert app.runtime.api is None and "API off" in api_line(app)

        drive(app, test)


def test_an_open_address_without_a_key_is_refused(make_app: AppFactory) -> None:
    app = make_app(screen="instances", launch=False, env={"LLM_TUI_SERVE_HOST": "0.0.0.0", **ANY_PORT})

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await pilot.press("a")
        await until(pilot, lambda: "without an API key" in notes(app), "the refusal")
        assert app.runtime.api is None

    drive(app, test)


def test_the_command_palette_starts_and_stops_it_with_a_key(make_app: AppFactory, fake_model: Path) -> None:
    env = {"LLM_TUI_API_KEY": "sk-app-key-42", **ANY_PORT}
    app = make_app(screen="chat", launch=False, env=env)

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        start_tiny(app, fake_model)
        await palette(pilot, "Start API server")
        await until(pilot, lambda: app.runtime.api is not None, "the API starts")
        server = app.runtime.api
        assert server is not None and server.key_count == 1
        async with httpx.AsyncClient() as raw:
            without = await raw.get(f"{server.url}/models")
            keyed = await raw.get(f"{server.url}/models", headers={"Authorization": "Bearer sk-app-key-42"})
        assert without.status_code == 401 and keyed.json()["data"][0]["id"] == "tiny"
        await palette(pilot, "Stop API server")
        await until(pilot, lambda: app.runtime.api is None, "the API stops")

    drive(app, test)


def test_quitting_the_app_stops_the_api(make_app: AppFactory) -> None:
    app = make_app(screen="instances", launch=False, env=ANY_PORT)
    urls: list[str] = []

    async def test(app: LlmTuiApp, pilot: Pilot[int]) -> None:
        await pilot.press("a")
        await until(pilot, lambda: app.runtime.api is not None, "the API starts")
        assert app.runtime.api is not None
        urls.append(app.runtime.api.url)

    drive(app, test)
    app.runtime.close()
    try:
        httpx.get(f"{urls[0]}/models", timeout=2)
    except httpx.ConnectError:
        return
    raise AssertionError("the server outlived the app")
