"""`/audio PATH` in the chat's prompt: the file is transcribed into the prompt, to be edited before it is sent.

The transcription runs on a speech-to-text instance (a Whisper model): the active one if it transcribes, else the
most recently used one that does. The file is decoded and checked first (engines/audio/decode.py), so a bad file
is one message and no model sees it; the message sent afterwards records which file it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engines.errors import LlmTuiError
from tui.widgets.prompt import PromptInput

if TYPE_CHECKING:
    from collections.abc import Callable

    from engines.audio.types import Transcript
    from engines.manager import EngineManager
    from engines.types import InstanceInfo
    from tui.runtime import Runtime
    from tui.screens.chat import ChatScreen


@dataclass(frozen=True, slots=True)
class Heard:
    """A file transcribed into the prompt."""

    path: Path
    text: str
    seconds: float
    model: str


def split_audio(text: str) -> tuple[str, Path | None]:
    """The prompt without its first `/audio PATH` line, and that path (`~` expanded, made absolute)."""
    kept: list[str] = []
    found: Path | None = None
    for line in text.splitlines():
        command, _, rest = line.strip().partition(" ")
        if found is None and command == "/audio" and rest.strip():
            found = Path(rest.strip().strip("'\"")).expanduser().absolute()
        else:
            kept.append(line)
    return "\n".join(kept).strip(), found


def stt_instance(runtime: Runtime) -> InstanceInfo | None:
    """The instance to transcribe on: the active one if it can, else the most recently used one that can."""
    from engines.errors import InstanceNotFound
    from engines.types import Capability, InstanceState

    manager = runtime.manager
    usable = (InstanceState.READY, InstanceState.BUSY)

    def can(info: InstanceInfo) -> bool:
        try:
            return info.state in usable and manager.engine_of(info.run_id).supports(Capability.TRANSCRIBE)
        except InstanceNotFound:
            return False

    instances = [i for i in manager.instances() if can(i)]
    active = runtime.active
    chosen = next((i for i in instances if active is not None and i.run_id == active.run_id), None)
    return chosen or max(instances, key=lambda i: i.last_used_at, default=None)


def transcribe_file(manager: EngineManager, info: InstanceInfo, path: Path, progress: Callable[[float], None]) -> Heard:
    """Decode `path` and transcribe it on `info`'s instance (blocking: run it in a worker). Raises LlmTuiError
    (BadAudio for a file that is not usable audio, before the model sees anything)."""
    from engines.audio.decode import load_audio
    from engines.audio.types import TranscribeOptions

    audio = load_audio(path)
    transcript: Transcript = manager.transcribe(
        info.run_id, audio, TranscribeOptions(timestamps=False), progress=progress
    )
    return Heard(path, transcript.text.strip(), audio.duration_s, info.model_id)


def with_heard(before: str, heard: Heard) -> str:
    """The prompt after the transcription: what was typed around the `/audio` line, then the text heard."""
    return "\n".join(part for part in (before, heard.text) if part)


class AudioPrompt:
    """The chat screen's `/audio`: the transcription under way (its status line), and the file the prompt's
    text came from, which the next message sent records."""

    def __init__(self, screen: ChatScreen) -> None:
        self.screen = screen
        self.hearing: str | None = None
        """While a file is being transcribed: what the status line says."""
        self.heard: Heard | None = None

    def start(self, before: str, path: Path) -> None:
        """Transcribe `path` on a speech-to-text instance, in a worker; the text lands in the prompt after `before`."""
        screen = self.screen
        if self.hearing is not None:
            screen.notify("A file is being transcribed already.", severity="warning")
            return
        info = stt_instance(screen.runtime)
        if info is None:
            screen.notify(
                "No speech-to-text model is running: launch a Whisper model (F2, transformers engine), then /audio.",
                title="Not transcribed",
                severity="error",
                timeout=10,
            )
            return
        self._say(f"transcribing {path.name} with {info.model_id}")
        manager, app = screen.runtime.manager, screen.app

        def progress(done: float) -> None:
            app.call_from_thread(self._say, f"transcribing {path.name} with {info.model_id} · {done:.0%}")

        def work() -> None:
            try:
                heard = transcribe_file(manager, info, path, progress)
            except LlmTuiError as exc:
                app.call_from_thread(self._failed, str(exc))
            else:
                app.call_from_thread(self._done, before, heard)

        screen.run_worker(work, thread=True, group="audio", name="transcribe")

    def source_of(self, text: str) -> str | None:
        """The audio file a message being sent came from (its transcript is in the text), then forgotten."""
        heard, self.heard = self.heard, None
        return str(heard.path) if heard is not None and heard.text in text else None

    def _say(self, line: str | None) -> None:
        self.hearing = line
        self.screen.update_status()

    def _done(self, before: str, heard: Heard) -> None:
        self._say(None)
        if not heard.text:
            self.screen.notify(
                f"Nothing was heard in {heard.path.name} ({heard.seconds:.0f} s): silence, or speech {heard.model}"
                " does not recognise.",
                title="Not transcribed",
                severity="warning",
                markup=False,
            )
            return
        self.heard = heard
        prompt = self.screen.query_one(PromptInput)
        prompt.text = with_heard(before, heard)
        prompt.focus()
        prompt.move_cursor(prompt.document.end)
        self.screen.notify(
            f"{heard.seconds:.0f} s of {heard.path.name} transcribed with {heard.model}: edit it, Enter sends.",
            markup=False,
        )

    def _failed(self, reason: str) -> None:
        self._say(None)
        self.screen.notify(reason, title="Not transcribed", severity="error", timeout=10, markup=False)
