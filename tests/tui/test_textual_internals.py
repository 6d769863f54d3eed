"""The Textual internals our code leans on are still there (pyproject pins Textual to the minor release tested).

The crash guard wraps MessagePump._dispatch_message; the chat log's static lines and quiet tail use
Widget._size_updated(layout=...), Widget._on_mount, Screen._layout_widgets, App._filters, Styles._cache_key and
the Compositor. When an upgrade moves one of them, this fails first and names it, before subtler tests do.
"""

from __future__ import annotations

import asyncio
import inspect

from textual._compositor import Compositor
from textual.app import App
from textual.css.styles import RenderStyles
from textual.message_pump import MessagePump
from textual.screen import Screen
from textual.widget import Widget


def test_the_internals_we_use_are_where_we_use_them() -> None:
    assert inspect.iscoroutinefunction(MessagePump._dispatch_message)
    assert "layout" in inspect.signature(Widget._size_updated).parameters
    assert callable(Widget._on_mount)
    assert inspect.isclass(Compositor)


def test_the_internal_attributes_exist_on_a_running_app() -> None:
    async def main() -> None:
        app = App[None]()
        async with app.run_test():
            screen = app.screen
            assert isinstance(screen, Screen)
            assert hasattr(screen, "_layout_widgets")
            assert isinstance(app._filters, list)
            assert isinstance(screen.styles, RenderStyles)
            assert hasattr(screen.styles, "_cache_key")

    asyncio.run(main())
