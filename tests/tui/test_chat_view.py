"""The chat log widget: streamed text equals the whole, finished blocks freeze, long histories page in."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult

from tui.widgets.chat_view import ChatLog, LogMessage, MessageView, fenced_code_blocks
from tui.widgets.segmenter import Segmenter

REPLY = "".join(
    f"Paragraph {i} says something **bold** about item {i}.\n\n"
    + (f"```python\ndef f{i}(x):\n    return x + {i}\n```\n\n" if i % 7 == 0 else "")
    for i in range(300)
)


class LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ChatLog(id="log")


def test_segmenter_gives_the_same_pieces_however_the_text_is_chunked() -> None:
    whole = Segmenter()
    pieces_whole = [p.markdown for p in whole.feed(REPLY)] + [whole.finish().markdown]
    streamed = Segmenter()
    pieces_streamed: list[str] = []
    for start in range(0, len(REPLY), 7):
        pieces_streamed += [p.markdown for p in streamed.feed(REPLY[start : start + 7])]
    pieces_streamed.append(streamed.finish().markdown)
    assert pieces_streamed == pieces_whole
    assert "".join(pieces_whole) == REPLY
    # A long reply becomes tens of frozen segments, not one widget per block.
    assert 5 < len(pieces_whole) < 60


def test_streamed_reply_freezes_segments_and_keeps_all_text() -> None:
    async def go() -> None:
        app = LogApp()
        async with app.run_test(size=(100, 30)) as pilot:
            log = app.query_one(ChatLog)
            view = log.start_reply(1, header="model · engine")
            await pilot.pause()
            for start in range(0, len(REPLY), 40):
                view.append(REPLY[start : start + 40])
                if start % 400 == 0:
                    await pilot.pause(0.05)
            view.finish(footer="TTFT 1 ms · 2.0 tok/s · 3→4 tokens")
            await pilot.pause()
            assert view.text == REPLY
            assert log.messages[-1].content == REPLY
            markdowns = list(view.query("Markdown"))
            assert len(markdowns) > 5  # frozen segments + the tail
            assert len(fenced_code_blocks(view.text)) == len([i for i in range(300) if i % 7 == 0])
            assert view.code_blocks()[-1] == "def f294(x):\n    return x + 294"

    asyncio.run(go())


def test_long_history_mounts_a_window_and_pages_in_older_messages() -> None:
    async def go() -> None:
        app = LogApp()
        async with app.run_test(size=(100, 30)) as pilot:
            log = app.query_one(ChatLog)
            log.load([LogMessage(i, "user" if i % 2 == 0 else "assistant", f"message {i}") for i in range(500)])
            await pilot.pause()
            assert len(log.query(MessageView)) == ChatLog.INITIAL_MESSAGES
            assert len(log.messages) == 500
            log.focus()
            await pilot.press("home")
            await pilot.pause()
            assert len(log.query(MessageView)) == 500
            assert log.messages[0].content == "message 0"

    asyncio.run(go())


def test_keys_select_messages_and_post_selected() -> None:
    selected: list[LogMessage | None] = []

    class Watching(LogApp):
        def on_chat_log_selected(self, event: ChatLog.Selected) -> None:
            selected.append(event.message)

    async def go() -> None:
        app = Watching()
        async with app.run_test(size=(100, 30)) as pilot:
            log = app.query_one(ChatLog)
            log.load([LogMessage(i, "user", f"m{i}") for i in range(3)])
            log.focus()
            await pilot.press("up", "up")
            await pilot.pause()
            assert log.selected_message is not None and log.selected_message.content == "m1"
            assert [m.content for m in selected if m] == ["m2", "m1"]

    asyncio.run(go())
