"""POST /v1/audio/transcriptions through the official OpenAI client, over the fake speech-to-text engine: every
response format, options passed through, the refusals (a chat model, a text file named .wav, an upload over the
limit, no key, bad fields) and a client that hangs up."""

from __future__ import annotations

import io
import json
import select
import socket
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import openai
import pytest

from engines.adapters.fake import FakeEngine, FakeTranscriber
from engines.audio.types import TranscribeOptions
from engines.config.serve import ServeConfig
from engines.server.audio import upload_name
from tests.engines.server_fixture import Served, served

KEY = "sk-audio"


def wav_bytes(seconds: float, rate: int = 16_000, level: float = 0.3) -> bytes:
    """A mono 16-bit WAV of a 440 Hz tone."""
    t = np.arange(int(seconds * rate)) / rate
    pcm = (np.sin(2 * np.pi * 440 * t) * level * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    path.write_bytes(wav_bytes(31.5))
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    with served({"tiny": FakeEngine(), "whisper": FakeTranscriber()}, serve=ServeConfig().with_keys(KEY)) as s:
        yield s


def client(s: Served, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.url, api_key=key, max_retries=0, timeout=30)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_json_is_the_default(server: Served, wav: Path) -> None:
    with wav.open("rb") as f:
        got = client(server).audio.transcriptions.create(model="whisper", file=f)
    assert got.text == " sound for 30 seconds sound for 1.5 seconds"


def test_text_srt_and_vtt_are_strings(server: Served, wav: Path) -> None:
    c = client(server)
    with wav.open("rb") as f:
        text = c.audio.transcriptions.create(model="whisper", file=f, response_format="text")
    assert text == " sound for 30 seconds sound for 1.5 seconds\n"
    with wav.open("rb") as f:
        srt = c.audio.transcriptions.create(model="whisper", file=f, response_format="srt")
    assert srt == (
        "1\n00:00:00,000 --> 00:00:30,000\nsound for 30 seconds\n\n"
        "2\n00:00:30,000 --> 00:00:31,500\nsound for 1.5 seconds\n\n"
    )
    with wav.open("rb") as f:
        vtt = c.audio.transcriptions.create(model="whisper", file=f, response_format="vtt")
    assert vtt == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:30.000\nsound for 30 seconds\n\n"
        "00:00:30.000 --> 00:00:31.500\nsound for 1.5 seconds\n\n"
    )


def test_verbose_json_and_options_pass_through(server: Served, wav: Path) -> None:
    with wav.open("rb") as f:
        got = client(server).audio.transcriptions.create(
            model="whisper", file=f, response_format="verbose_json", language="fr", prompt="Zoë, Ł", temperature=0.4
        )
    assert (got.language, got.duration, got.text) == ("french", 31.5, " sound for 30 seconds sound for 1.5 seconds")
    assert got.segments is not None and [(s.id, s.start, s.end) for s in got.segments] == [(0, 0, 30), (1, 30, 31.5)]
    assert got.segments[0].temperature == 0.4 and got.segments[1].seek == 3000
    audio, options = server.engines["whisper"].transcribed[-1]  # type: ignore[attr-defined]
    assert options == TranscribeOptions(language="fr", prompt="Zoë, Ł", temperature=0.4)
    assert audio.source == "tone.wav" and audio.duration_s == 31.5


def test_other_sample_rates_are_resampled(server: Served, tmp_path: Path) -> None:
    path = tmp_path / "tone44.wav"
    path.write_bytes(wav_bytes(2.0, rate=44_100))
    with path.open("rb") as f:
        got = client(server).audio.transcriptions.create(model="whisper", file=f)
    assert got.text == " sound for 2 seconds"


def test_a_chat_model_says_it_cannot_transcribe(server: Served, wav: Path) -> None:
    with wav.open("rb") as f, pytest.raises(openai.BadRequestError) as caught:
        client(server).audio.transcriptions.create(model="tiny", file=f)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["message"].startswith("tiny does not support speech to text")
    assert (error["param"], error["code"]) == ("model", "capability_not_supported")
    assert server.engines["tiny"].calls == []


def test_a_text_file_named_wav_gets_the_decoders_message(server: Served, tmp_path: Path) -> None:
    fake = tmp_path / "notes.wav"
    fake.write_text("these are my meeting notes, not audio\n" * 20)
    with fake.open("rb") as f, pytest.raises(openai.BadRequestError) as caught:
        client(server).audio.transcriptions.create(model="whisper", file=f)
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "file"
    said = "notes.wav is not audio: it looks like a text file (named .wav, but without a WAV header)"
    assert error["message"] == said
    assert "meeting" not in error["message"]  # the file's contents are never echoed


def test_an_upload_name_is_said_printable_and_short() -> None:
    assert upload_name("a\nb\x1b[31m.wav") == "ab[31m.wav"
    assert upload_name("x" * 300) == "x" * 100 + "..."
    assert upload_name(None) == upload_name("\n") == "upload"


def test_unknown_model_is_404(server: Served, wav: Path) -> None:
    with wav.open("rb") as f, pytest.raises(openai.NotFoundError):
        client(server).audio.transcriptions.create(model="nope", file=f)


def test_wrong_or_missing_key_is_401(server: Served, wav: Path) -> None:
    with wav.open("rb") as f, pytest.raises(openai.AuthenticationError):
        client(server, key="wrong").audio.transcriptions.create(model="whisper", file=f)
    reply = httpx.post(f"{server.url}/audio/transcriptions", files={"file": ("a.wav", b"x")}, data={"model": "whisper"})
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"


ONE_S = {"file": ("a.wav", wav_bytes(1))}


def post(s: Served, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}"}
    return httpx.post(f"{s.url}/audio/transcriptions", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("files", "data", "param"),
    [
        (None, {"model": "whisper"}, "file"),
        (ONE_S, {}, "model"),
        (ONE_S, {"model": "whisper", "response_format": "docx"}, "response_format"),
        (ONE_S, {"model": "whisper", "temperature": "2"}, "temperature"),
        (ONE_S, {"model": "whisper", "temperature": "nan"}, "temperature"),
        (ONE_S, {"model": "whisper", "timestamp_granularities[]": "x"}, "timestamp_granularities"),
    ],
)
def test_bad_fields_are_400_naming_the_field(
    server: Served, files: dict[str, object] | None, data: dict[str, str], param: str
) -> None:
    # httpx sends a form without files as urlencoded: give it an empty file list so it is multipart all the same.
    reply = post(server, files=files or {"other": ("x.txt", b"")}, data=data)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_json_body_is_415(server: Served) -> None:
    reply = post(server, json={"model": "whisper", "file": "x"})
    assert reply.status_code == 415 and "multipart/form-data" in reply.json()["error"]["message"]


def raw_upload(s: Served, head: bytes, body: Iterator[bytes]) -> tuple[bytes, int]:
    """Send `head` and then body blocks until the server answers; the answer and the body bytes sent."""
    url = urlsplit(s.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sent = 0
    answer = b""
    try:
        sock.sendall(head)
        for block in body:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            _, writable, _ = select.select([sock], [sock], [], 10)
            if not writable:
                break
            try:
                sock.sendall(block)
            except OSError:  # the server answered and closed
                break
            sent += len(block)
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    finally:
        sock.close()
    return answer, sent


def head(s: Served, extra: str) -> bytes:
    host = urlsplit(s.url).netloc
    return (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: multipart/form-data; boundary=XyZ\r\n{extra}\r\n"
    ).encode()


def test_an_upload_over_the_limit_is_refused_unread() -> None:
    limit = 256 * 1024
    total = 64 * 1024 * 1024
    with served({"whisper": FakeTranscriber()}, serve=ServeConfig(max_upload_bytes=limit).with_keys(KEY)) as s:
        # Declared too big: refused from the header, before any of the body is read.
        answer, _ = raw_upload(s, head(s, f"Content-Length: {total}\r\n"), iter([b"--XyZ\r\n"]))
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        message = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["message"]
        assert message == f"the upload is {total} bytes; the limit is {limit} ([serve] max_upload_bytes)"
        # Chunked, with no length: refused once the stream passes the limit; far less than all of it is sent.
        part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        block = b"\0" * 65536
        chunks = iter([b"%x\r\n%s\r\n" % (len(part), part)] + [b"%x\r\n%s\r\n" % (len(block), block)] * 1024)
        answer, sent = raw_upload(s, head(s, "Transfer-Encoding: chunked\r\n"), chunks)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"max_upload_bytes" in answer
        assert sent < total // 2
        assert s.engines["whisper"].transcribed == []  # type: ignore[attr-defined]
        # JSON routes keep their own (smaller) limit; the upload limit is only for uploads.
        assert s.context.serve.max_body_bytes == ServeConfig().max_body_bytes


def test_a_client_that_hangs_up_cancels_the_transcription() -> None:
    import threading

    gate = threading.Event()
    engine = FakeTranscriber(transcribe_gate=gate)
    data = wav_bytes(1)
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\n" + data + b"\r\n--XyZ--\r\n"
    )
    with served({"whisper": engine}, serve=ServeConfig().with_keys(KEY)) as s:
        url = urlsplit(s.url)
        sock = socket.create_connection((url.hostname, url.port), timeout=30)
        sock.sendall(head(s, f"Content-Length: {len(body)}\r\n") + body)
        assert engine.transcribe_started.wait(10)
        sock.close()
        wait_until(lambda: s.context.stats.snapshot()["cancelled"] == 1)
        gate.set()
        wait_until(lambda: s.manager.info(s.run_ids["whisper"]).pending_requests == 0)
        with io.BytesIO(data) as f:
            f.name = "again.wav"
            assert client(s).audio.transcriptions.create(model="whisper", file=f).text == " sound for 1 seconds"


def test_word_timestamps_are_refused_by_name(server: Served, wav: Path) -> None:
    c = client(server)
    with wav.open("rb") as f, pytest.raises(openai.BadRequestError) as caught:
        c.audio.transcriptions.create(
            model="whisper", file=f, response_format="verbose_json", timestamp_granularities=["word"]
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "timestamp_granularities"
    with wav.open("rb") as f:
        got = c.audio.transcriptions.create(
            model="whisper", file=f, response_format="verbose_json", timestamp_granularities=["segment"]
        )
    assert got.segments is not None and len(got.segments) == 2


def test_a_cross_site_form_and_a_foreign_host_are_refused(wav: Path) -> None:
    # multipart/form-data is what a web form can post: the browser's Origin (and, keyless, the Host) refuse it.
    with served({"whisper": FakeTranscriber()}) as s:
        files = {"file": ("a.wav", wav.read_bytes())}
        url = f"{s.url}/audio/transcriptions"
        reply = httpx.post(url, files=files, data={"model": "whisper"}, headers={"Origin": "http://evil.example"})
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "origin_not_allowed"
        reply = httpx.post(url, files=files, data={"model": "whisper"}, headers={"Host": "evil.example"})
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "host_not_allowed"
        assert s.engines["whisper"].transcribed == []  # type: ignore[attr-defined]
        reply = httpx.post(url, files=files, data={"model": "whisper"})
        assert reply.status_code == 200 and reply.json() == {"text": " sound for 30 seconds sound for 1.5 seconds"}


def test_without_python_multipart_the_route_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from engines.config.load import default_config
    from engines.manager import EngineManager
    from engines.server import audio
    from engines.server.app import ServerContext, create_app

    monkeypatch.setattr(audio, "multipart_installed", lambda: False)
    with (
        EngineManager() as manager,
        TestClient(
            create_app(ServerContext(manager, default_config(), ServeConfig())), base_url="http://127.0.0.1"
        ) as http,
    ):
        reply = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"x")}, data={"model": "m"})
        assert reply.status_code == 503
        assert reply.json()["error"]["message"].endswith("pip install 'llm-tui[serve]'")
        assert http.get("/healthz").status_code == 200


def test_a_server_stop_ends_a_running_transcription_with_503() -> None:
    import threading

    from engines.config.load import default_config
    from engines.manager import EngineManager
    from engines.server.app import ServerContext
    from engines.server.runner import ServerThread, prepare
    from engines.types import ModelSpec

    gate = threading.Event()
    engine = FakeTranscriber(transcribe_gate=gate)
    answers: list[httpx.Response] = []
    with EngineManager() as manager:
        manager.start(ModelSpec("whisper", format="fake", engines=("fake",)), engine=engine)
        server = ServerThread(prepare(ServerContext(manager, default_config(), ServeConfig(port=0))))
        server.start()
        files = {"file": ("a.wav", wav_bytes(1))}
        url = f"{server.url}/audio/transcriptions"
        form = {"model": "whisper"}
        sender = threading.Thread(target=lambda: answers.append(httpx.post(url, files=files, data=form)))
        sender.start()
        try:
            assert engine.transcribe_started.wait(10)
            server.stop()  # the app's toggle: no grace
            sender.join(10)
        finally:
            gate.set()
    assert answers and answers[0].status_code == 503, answers
    assert answers[0].json()["error"]["code"] == "server_shutting_down"
