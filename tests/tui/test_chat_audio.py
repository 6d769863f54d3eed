"""`/audio PATH` in the chat: transcribed into the prompt for editing, on a speech-to-text instance, and recorded."""

from __future__ import annotations

import threading
import wave
from pathlib import Path

import numpy as np

from engines.adapters.fake import FakeEngine
from engines.audio.types import Audio, TranscribeOptions, Transcript
from engines.types import Capability
from tests.tui.conftest import AppFactory
from tests.tui.test_chat_screen import ready, run, until
from tui.widgets.chat_log import ChatLog
from tui.widgets.prompt import PromptInput


class HearingEngine(FakeEngine):
    """The fake engine that also transcribes: a fixed sentence, in two chunks."""

    capabilities = FakeEngine.capabilities | Capability.TRANSCRIBE

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[tuple[Audio, TranscribeOptions]] = []

    def transcribe(
        self, audio: Audio, options: TranscribeOptions, cancel: threading.Event, progress=None
    ) -> Transcript:  # type: ignore[no-untyped-def]
        self.heard.append((audio, options))
        for done in (0.5, 1.0):
            if progress is not None:
                progress(done)
        return Transcript(" the tone says hello ", duration_s=audio.duration_s, model="fake")


def tone(path: Path, seconds: float = 2.0, rate: int = 8000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 0.3 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def last_note(app: object) -> str:
    return list(app._notifications)[-1].message  # type: ignore[attr-defined]


def test_audio_is_transcribed_into_the_prompt_then_sent_and_recorded(make_app: AppFactory, tmp_path: Path) -> None:
    wav = tone(tmp_path / "note.wav")
    engine = HearingEngine()

    async def go() -> None:
        app = make_app(engine=engine)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            prompt = screen.query_one(PromptInput)
            prompt.focus()
            await pilot.press(*"summarise:", "ctrl+j", *f"/audio {wav}", "enter")
            await until(pilot, lambda: "the tone says hello" in prompt.text, "the transcript in the prompt")
            assert prompt.text == "summarise:\nthe tone says hello"
            assert engine.calls == []  # nothing sent: the text is the user's to edit first
            ((audio, options),) = engine.heard
            assert abs(audio.duration_s - 2.0) < 0.01 and options.timestamps is False
            assert "2 s of note.wav transcribed" in last_note(app)
            await pilot.press("end", *" please", "enter")
            await until(pilot, lambda: len(engine.calls) == 1 and screen.turn is None, "the reply")
            assert engine.calls[0][-1].content == "summarise:\nthe tone says hello please"
            user = screen.query_one(ChatLog).messages[-2]
            assert user.footer == "🎤 note.wav"
            assert screen.session is not None
            stored = [m for m in screen.store.messages(screen.session.id) if m.role == "user"]
            assert [m.audio for m in stored] == [str(wav)]
            await pilot.press(*"and typed", "enter")  # the next message is typed: no audio on it
            await until(pilot, lambda: len(engine.calls) == 2 and screen.turn is None, "the second reply")
            stored = [m for m in screen.store.messages(screen.session.id) if m.role == "user"]
            assert [m.audio for m in stored] == [str(wav), None]

    run(go())


def test_without_a_speech_to_text_model_nothing_is_lost(make_app: AppFactory, tmp_path: Path) -> None:
    wav = tone(tmp_path / "note.wav")

    async def go() -> None:
        app = make_app()  # the plain fake engine: it chats, it does not transcribe
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            prompt = screen.query_one(PromptInput)
            prompt.focus()
            await pilot.press(*f"/audio {wav}", "enter")
            await pilot.pause()
            assert "No speech-to-text model is running" in last_note(app)
            assert prompt.text == f"/audio {wav}"

    run(go())


def test_a_file_that_is_not_audio_is_refused_before_the_model_sees_it(make_app: AppFactory, tmp_path: Path) -> None:
    fake = tmp_path / "notes.wav"
    fake.write_text("this is a text file\n" * 20)
    engine = HearingEngine()

    async def go() -> None:
        app = make_app(engine=engine)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            prompt = screen.query_one(PromptInput)
            prompt.focus()
            await pilot.press(*f"/audio {fake}", "enter")
            refused = lambda: any("notes.wav" in n.message for n in app._notifications)  # noqa: E731
            await until(pilot, refused, "the refusal")
            assert screen.audio.hearing is None and engine.heard == []
            assert prompt.text == f"/audio {fake}"  # kept, to fix the path

    run(go())


def test_audio_with_nothing_heard_says_so_and_keeps_the_prompt(make_app: AppFactory, tmp_path: Path) -> None:
    wav = tone(tmp_path / "quiet.wav")

    class DeafEngine(HearingEngine):
        def transcribe(
            self, audio: Audio, options: TranscribeOptions, cancel: threading.Event, progress=None
        ) -> Transcript:  # type: ignore[no-untyped-def]
            return Transcript("  ", duration_s=audio.duration_s, model="fake")

    async def go() -> None:
        app = make_app(engine=DeafEngine())
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await ready(pilot)
            prompt = screen.query_one(PromptInput)
            prompt.focus()
            await pilot.press(*f"/audio {wav}", "enter")
            heard = lambda: any("Nothing was heard in quiet.wav" in n.message for n in app._notifications)  # noqa: E731
            await until(pilot, heard, "the warning")
            assert prompt.text == f"/audio {wav}" and screen.audio.heard is None

    run(go())
