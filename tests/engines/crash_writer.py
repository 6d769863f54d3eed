"""Child process of the crash test: streams a long reply into the store until it is killed.

Usage: python crash_writer.py DB_PATH. Prints "streaming <session id> <message id>"
once the partial reply has been written to the database, then keeps streaming.
"""

from __future__ import annotations

import sys
from pathlib import Path

from engines.adapters.fake import FakeEngine
from engines.manager import EngineManager
from engines.store.sessions import Store
from engines.types import Delta, ModelSpec


def main(db_path: str) -> int:
    store = Store(Path(db_path))
    session = store.create_session("Crash test", model="fake-model", engine="fake")
    store.add_message(session.id, "user", "Tell me a very long story.")
    reply = " ".join(f"word{i}" for i in range(200_000))  # minutes of tokens: the parent kills us long before
    with EngineManager() as manager:
        run_id = manager.start(ModelSpec(id="fake-model"), engine=FakeEngine(reply=reply, token_delay_s=0.002))
        writer = store.begin_reply(session.id, model="fake-model", engine="fake", params=None, flush_interval_s=0.05)
        handle = manager.submit(run_id, store.chat_messages(session.id))
        announced = False
        for event in handle:
            writer.feed(event)
            if isinstance(event, Delta) and not announced and writer.flushes:
                print(f"streaming {session.id} {writer.message_id}", flush=True)
                announced = True
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
