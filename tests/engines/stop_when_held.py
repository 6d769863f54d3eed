"""Press Stop while a fake server holds its answer, and learn whether the client hung up on it.

A fake server's hold lasts until `release()` or until the client hangs up. A client that ignores Stop would
wait on it for good, so a test used to bound the wait with a wall-clock limit ("ended in under 2 s"), which a
loaded machine can break. Here the order of events decides instead: Stop is pressed once the server holds, and
the test asks whether the server then saw the client hang up *while still holding*. Only a client that never
hangs up makes the watcher give up (after `PATIENCE_S`) and release the hold, so that test fails instead of
hanging; how fast the machine is changes nothing else.
"""

from __future__ import annotations

import threading

from tests.engines.fake_stream_server import StreamServer

PATIENCE_S = 30.0
"""How long Stop may take to make the client hang up before the watcher calls it a failure: far above the
~50 ms a cancel watcher polls at, so only a client that never hangs up reaches it."""


class StopWhenHeld:
    """Once `server` holds its answer, set `cancel`; `hung_up()` says whether the client then hung up on the hold."""

    def __init__(self, server: StreamServer, cancel: threading.Event | None = None) -> None:
        self.server = server
        self.cancel = cancel if cancel is not None else threading.Event()
        self._hung_up = False
        self._thread = threading.Thread(target=self._watch, daemon=True, name="stop-when-held")

    def start(self) -> StopWhenHeld:
        """Start watching (call it once the client has read what must come before the Stop); once is enough."""
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()
        return self

    def _watch(self) -> None:
        try:
            if self.server.held.wait(PATIENCE_S):
                self.cancel.set()
                self._hung_up = self.server.disconnected.wait(PATIENCE_S)
        finally:
            self.server.release()  # a client that never hung up gets the rest of the answer and ends

    def hung_up(self) -> bool:
        """Whether the client hung up while the server still held its answer (waits for the watcher to know)."""
        self._thread.join()
        return self._hung_up
