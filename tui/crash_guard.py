"""The last line of defence: an exception that escapes a screen action, a message handler or a worker is written
with its traceback to crash.log, said once, and the app keeps running with its instances loaded.

Textual exits the app on any such exception. Two places see them: `MessagePump._dispatch_message` (every event,
message, action, timer and callback of every widget, screen and the app; after an exception there the pump's loop
ends, so that widget would never handle a message again) and `App._handle_exception` (workers, compose, layout).
`install()` wraps the first once per process; the app overrides the second. Both hand the exception to the active
app's `crash_guard` and re-raise as before in any app that has none. The guard does not replace fixing the cause:
the key sweep asserts the log stays empty.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual._context import active_app
from textual.message import Message
from textual.message_pump import MessagePump

NOTIFY_AGAIN_AFTER_S = 10.0
"""The same error again within this many seconds is logged, not said again (a failing timer would flood)."""
MAX_ENTRIES_PER_ERROR = 20
"""Full tracebacks written for one error before further ones are only counted (a failing refresh repeats)."""


class CrashGuard:
    """Writes caught exceptions with their tracebacks to `path` and tells the user once per error."""

    def __init__(self, path: Path, notify: Callable[[str], None]) -> None:
        self.path = path
        self._notify = notify
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._said_at: dict[str, float] = {}
        self.caught = 0
        """How many exceptions were caught in this run."""

    def catch(self, error: BaseException, where: str) -> None:
        """Log `error` (raised in `where`) and say so, unless the same error was said moments ago."""
        signature = f"{type(error).__name__}: {error}"
        now = time.monotonic()
        with self._lock:
            self.caught += 1
            count = self._seen[signature] = self._seen.get(signature, 0) + 1
            say = now - self._said_at.get(signature, -NOTIFY_AGAIN_AFTER_S) >= NOTIFY_AGAIN_AFTER_S
            if say:
                self._said_at[signature] = now
        written = count > MAX_ENTRIES_PER_ERROR or self._write(error, where, count)
        if not say:
            return
        summary = " ".join(signature.split())[:160]
        if written:
            self._notify(f"{summary}\nllm-tui kept running; the traceback is in {self.path}")
        else:
            self._notify(f"{summary}\nllm-tui kept running; the traceback could not be written to {self.path}")

    def _write(self, error: BaseException, where: str, count: int) -> bool:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        lines = "".join(traceback.format_exception(error))
        again = f" (seen {count} times)" if count > 1 else ""
        entry = f"--- {stamp} in {where}{again}\n{lines}\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as log:
                log.write(entry)
        except OSError:
            return False
        return True


def guard_of_active_app() -> CrashGuard | None:
    """The running app's guard, or None outside an app that has one."""
    app = active_app.get(None)
    guard = getattr(app, "crash_guard", None)
    return guard if isinstance(guard, CrashGuard) else None


_installed = False


def install() -> None:
    """Route exceptions from every message pump's dispatch to the active app's guard (idempotent)."""
    global _installed
    if _installed:
        return
    original = MessagePump._dispatch_message

    async def guarded_dispatch(self: MessagePump, message: Message) -> Any:
        try:
            return await original(self, message)
        except Exception as error:  # CancelledError is a BaseException and still ends the task
            guard = guard_of_active_app()
            if guard is None:
                raise
            guard.catch(error, f"{type(self).__name__} handling {type(message).__name__}")
            return None

    MessagePump._dispatch_message = guarded_dispatch  # type: ignore[method-assign]
    _installed = True
