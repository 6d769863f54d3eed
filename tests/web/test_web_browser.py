"""The real `llm-tui web` in a real headless Chromium: the page loads, the app's chat screen renders, typed keys
reach the prompt, and a reply streamed by a fake OpenAI-compatible server (a `remote` endpoint) shows up piece by
piece (the fake holds the stream after its third piece until the test has seen its start on the page). A
screenshot goes to the test artifacts folder.

How the screen is read: textual-serve's page draws with xterm.js on a canvas (WebGL), so the page's DOM holds no
text. The page keeps its xterm.js `Terminal` as `this.terminal` of a session object in a local variable; an init
script catches it as it is assigned (a setter for `terminal` on Object.prototype) and the test reads the
terminal's buffer, the text xterm.js draws, line by line. If textual-serve renames that property, the first wait
fails saying so.

Chromium is the system's package (Playwright downloads no browser here); scripts/test.sh installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.engines.fake_openai import FakeOpenAI, Reply
from tests.serve_process import serve_env
from tests.web.web_process import WebProcess, web_process

MODEL = "remote:fake/fake-model"
READY = f"{MODEL} · remote · ready"
PROMPT = "hello from the browser"
REPLY = f"Echo: {PROMPT}"
PASSWORD = "open sesame"

CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
    if (!value || typeof value.onWriteParsed !== "function") return;  // not xterm.js's Terminal
    const screen = () => {
      const buffer = value.buffer.active, lines = [];
      for (let y = 0; y < value.rows; y++) {
        const line = buffer.getLine(buffer.viewportY + y);
        lines.push(line ? line.translateToString(true) : "");
      }
      return lines.join("\\n");
    };
    window.llmTuiTest = {screen};
  },
});
"""

NOT_HERE = re.compile(r"^https?://(?!127\.0\.0\.1[:/])")
"""Requests to anywhere but this server (the page asks Google Fonts for its font): refused at once, offline."""


def artifacts_dir() -> Path:
    """Where screenshots are kept after the run: $LLM_TUI_TEST_ARTIFACTS, else /tmp/llm-tui-test-artifacts."""
    folder = Path(os.environ.get("LLM_TUI_TEST_ARTIFACTS") or "/tmp/llm-tui-test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def keep(path: Path) -> Path:
    """Copy a file from the test's temporary folder to the artifacts folder."""
    return Path(shutil.copy2(path, artifacts_dir() / path.name))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: scripts/test.sh installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class Page:
    """A browser tab on the app, with the screen read from xterm.js."""

    def __init__(self, page: Any, web: WebProcess, folder: Path) -> None:
        self.page = page
        self.web = web
        self.folder = folder

    def screen(self) -> str:
        text = self.page.evaluate("() => window.llmTuiTest ? window.llmTuiTest.screen() : null")
        if text is None:
            return "(no terminal caught: does textual-serve's page still keep its xterm.js Terminal as `.terminal`?)"
        return str(text)

    def wait_for(self, text: str, what: str, timeout_s: float = 20) -> float:
        """Wait until the screen shows `text`; the seconds it took. Fails with the screen, the log, a screenshot."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        start = time.monotonic()
        try:
            self.page.wait_for_function(
                "text => window.llmTuiTest && window.llmTuiTest.screen().includes(text)",
                arg=text,
                timeout=timeout_s * 1000,
            )
        except PlaywrightTimeout:
            shot = self.folder / "llm-tui-web-failure.png"
            self.page.screenshot(path=shot)
            pytest.fail(
                f"timed out after {timeout_s} s waiting for {what}; screenshot {keep(shot)}; the screen shows:\n"
                f"{self.screen()}\nllm-tui web's log:\n" + "\n".join(self.web.log)
            )
        return time.monotonic() - start


def open_page(browser: Any, web: WebProcess, folder: Path, **context: Any) -> Page:
    tab = browser.new_context(viewport={"width": 1100, "height": 700}, **context)
    tab.route(NOT_HERE, lambda route: route.abort())
    tab.add_init_script(CATCH_TERMINAL)
    return Page(tab.new_page(), web, folder)


def test_the_app_runs_in_a_browser_and_streams_a_reply(browser: Any, tmp_path: Path) -> None:
    folder = tmp_path / "artifacts"
    folder.mkdir()
    # The reply stops after its third piece until the test has seen the start of it on the page.
    with FakeOpenAI(("fake-model",), default=Reply(hold_after=3)) as fake:
        config = tmp_path / "config.toml"
        config.write_text(f'[[remote_endpoints]]\nname = "fake"\nurl = "{fake.endpoint}"\n')
        started = time.monotonic()
        with web_process(tmp_path, "--config", str(config), "web", "--port", "0", "--model", MODEL) as web:
            timings = {"server_start_s": time.monotonic() - started}
            page = open_page(browser, web, folder)
            start = time.monotonic()
            page.page.goto(web.base + "/")  # returns on the page's load event
            timings["page_load_s"] = time.monotonic() - start
            page.wait_for("F1Chat", "the app's first frame")
            timings["first_frame_s"] = time.monotonic() - start
            page.wait_for(READY, "the fake model to be ready")
            timings["model_ready_s"] = time.monotonic() - start

            page.page.focus("textarea.xterm-helper-textarea")  # where xterm.js takes the keyboard
            page.page.keyboard.type(PROMPT)
            page.wait_for(f"{PROMPT}", "the typed text in the prompt", timeout_s=10)
            start = time.monotonic()
            page.page.keyboard.press("Enter")
            # The first piece is shown at once; the engine holds later ones back until more arrive (engines/relay.py).
            page.wait_for("Echo:", "the first piece of the reply")
            assert REPLY not in page.screen()
            fake.release()
            page.wait_for(REPLY, "the rest of the reply")
            timings["reply_s"] = time.monotonic() - start
            page.wait_for("tok/s", "the reply's metrics line", timeout_s=10)
            shot = folder / "llm-tui-web-chat.png"
            page.page.screenshot(path=shot)
            keep(shot)

            # Ctrl+C with the tab still open: the session is closed, its app quits, the page says so.
            assert web.stop() == 0
            page.page.wait_for_selector("body.-closed", state="attached", timeout=10_000)
            page.page.context.close()
            assert web.log[-1] == "llm-tui web: stopped", "\n".join(web.log)
            assert not any("Traceback" in line for line in web.log), "\n".join(web.log)
        timings["total_s"] = time.monotonic() - started
        (folder / "llm-tui-web-timings.json").write_text(json.dumps(timings, indent=1) + "\n")
        keep(folder / "llm-tui-web-timings.json")

    db = tmp_path / "xdg_data_home" / "llm-tui" / "llm-tui.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT role, content, status FROM messages ORDER BY id").fetchall()
    assert rows == [("user", PROMPT, "complete"), ("assistant", REPLY, "complete")]


def test_with_a_password_the_browser_logs_in_and_the_app_runs(browser: Any, tmp_path: Path) -> None:
    env = serve_env(tmp_path, LLM_TUI_WEB_PASSWORD=PASSWORD)
    with web_process(tmp_path, "web", "--port", "0", env=env) as web:
        from playwright.sync_api import Error as PlaywrightError

        refused = open_page(browser, web, tmp_path)
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):  # the 401, without a password
            refused.page.goto(web.base + "/")
        refused.page.context.close()

        # Basic auth answers the page's challenge; the cookie it sets then opens the websocket.
        page = open_page(browser, web, tmp_path, http_credentials={"username": "me", "password": PASSWORD})
        answer = page.page.goto(web.base + "/")
        assert answer is not None and answer.status == 200
        page.wait_for("F1Chat", "the app's first frame")
        assert "llm_tui_web" in {cookie["name"] for cookie in page.page.context.cookies()}
        # The app runs with the server's environment, less the password.
        # The server's own child (the app may have started children of its own by now: not those).
        (app,) = [p for p in psutil.Process(web.process.pid).children() if p.cmdline()[1:3] == ["-m", "cli.main"]]
        assert app.cmdline()[1:] == ["-m", "cli.main"] and "TEXTUAL_DRIVER" in app.environ()
        assert not any(PASSWORD in value for value in app.environ().values())
        page.page.context.close()
