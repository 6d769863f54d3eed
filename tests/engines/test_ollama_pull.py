"""Pulling through Ollama with the real `ollama` client against a fake daemon on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import ollama
import pytest

from engines.downloads import pacing
from engines.downloads.ollama_source import OllamaPullResult, normalise_name, pull_model
from engines.downloads.pacing import TransferProgress
from engines.downloads.transfer import DownloadCancelled, DownloadNotFound
from engines.errors import BadRequest, DownloadError, EngineUnavailable
from tests.engines.fake_ollama import NOT_FOUND, FakeOllama, PullFault
from tests.engines.stop_when_held import PATIENCE_S, StopWhenHeld


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or API key from the environment may reach the client."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "OLLAMA_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def every_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the Meter report on every line instead of ~10 times a second."""
    monkeypatch.setattr(pacing, "PROGRESS_INTERVAL_S", 0.0)


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(step=1000) as server:
        yield server


def layer_sums(fake: FakeOllama) -> list[int]:
    """Combined completed bytes after each layer line the fake sent (what our progress should say)."""
    have: dict[str, int] = {}
    sums = []
    for line in fake.lines:
        if "digest" in line:
            have[line["digest"]] = line.get("completed", 0)
            sums.append(sum(have.values()))
    return sums


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_progress_is_one_monotonic_sum_of_layers(fake: FakeOllama, every_report: None) -> None:
    model = fake.add("qwen2.5:0.5b", [3000, 10_500, 500])
    reports: list[TransferProgress] = []
    result = pull_model("ollama:qwen2.5:0.5b", host=fake.host, progress=reports.append)
    assert result == OllamaPullResult("qwen2.5:0.5b", 14_000, 3, model.digest)
    done = [r.bytes_done for r in reports]
    assert done == sorted(done)
    assert done[-1] == 14_000 and reports[-1].total == 14_000 and reports[-1].eta_s in (0.0, None)
    assert done[:-1] == layer_sums(fake)  # one report per layer line, then the final one
    totals = [r.total for r in reports]
    assert totals[0] == 3000 and 13_500 in totals  # the total grows as layers appear
    statuses = [line.get("status") for line in fake.lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    body = {"model": "qwen2.5:0.5b", "insecure": False, "stream": True}
    assert [(r.path, r.body) for r in fake.requests if r.method == "POST"] == [("/api/pull", body)]


def test_progress_is_rate_limited_and_ends_at_total(fake: FakeOllama) -> None:
    fake.add("tiny", [50_000, 20_000])
    reports: list[TransferProgress] = []
    result = pull_model("tiny", host=fake.host, progress=reports.append)
    assert (result.name, result.total_bytes, result.layers) == ("tiny:latest", 70_000, 2)
    assert 1 <= len(reports) < 10 < len(fake.lines)
    assert reports[-1].bytes_done == reports[-1].total == 70_000


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("ollama:qwen2.5:0.5b", "qwen2.5:0.5b"),
        ("qwen2.5:0.5b", "qwen2.5:0.5b"),
        ("  llama3.2  ", "llama3.2:latest"),
        ("OLLAMA:gemma3", "gemma3:latest"),
        ("library/gemma3:270m", "library/gemma3:270m"),
        ("ns/name", "ns/name:latest"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
        ("localhost:5000/ns/name", "localhost:5000/ns/name:latest"),
    ],
)
def test_normalise_name(ref: str, name: str) -> None:
    assert normalise_name(ref) == name


@pytest.mark.parametrize(
    "ref",
    ["", "   ", "ollama:", "ollama:  ", "my model", "a/../b", "../x", "/abs", "name/", "a//b", "name:", "x:a b",
     "name:ta/g", "na$me", "-name", "name:.."],
)  # fmt: skip
def test_bad_names_are_refused_before_any_request(ref: str) -> None:
    client = ScriptedClient([{"status": "success"}])
    with pytest.raises(BadRequest, match="Ollama model name"):
        pull_model(ref, host="unused", client=client)
    assert client.pulled == []


def test_error_mid_pull_shows_the_daemon_text(fake: FakeOllama) -> None:
    fake.add("m:1", [5000], PullFault(error_after=2000, error="max retries exceeded: EOF"))
    reports: list[TransferProgress] = []
    with pytest.raises(DownloadError) as caught:
        pull_model("m:1", host=fake.host, progress=reports.append)
    assert type(caught.value) is DownloadError
    assert str(caught.value) == "ollama: max retries exceeded: EOF"
    assert reports and reports[0].bytes_done == 0


@pytest.mark.parametrize("status", [None, 404, 500])
def test_unknown_model_is_not_found_with_the_daemon_text(status: int | None) -> None:
    with FakeOllama(unknown_status=status) as fake, pytest.raises(DownloadNotFound) as caught:
        pull_model("nosuchmodel:7b", host=fake.host)
    assert str(caught.value) == f"ollama: {NOT_FOUND}"


def test_daemon_down_says_how_to_start_it() -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(DownloadError) as caught:
        pull_model("qwen2.5:0.5b", host=host)
    assert str(caught.value) == f"cannot reach Ollama at {host}: is `ollama serve` running?"


def test_dropped_connection_is_a_download_error(fake: FakeOllama) -> None:
    fake.add("m", [5000], PullFault(drop_after=3000))
    with pytest.raises(DownloadError, match=r"connection to .* broke while pulling m:latest .*pull again to resume"):
        pull_model("m", host=fake.host)


def test_stream_ending_without_success_is_an_error(fake: FakeOllama) -> None:
    fake.add("m", [5000], PullFault(end_after=1000))
    with pytest.raises(DownloadError, match="ended early"):
        pull_model("m", host=fake.host)


def test_cancel_while_the_daemon_is_silent_is_quick_and_hangs_up(fake: FakeOllama, every_report: None) -> None:
    model = fake.add("m:1", [2000, 6000], PullFault(hold_after=3000))
    stop = StopWhenHeld(fake)

    def progress(p: TransferProgress) -> None:
        if p.bytes_done >= 3000:  # every line before the hold is read: the client's next read waits on silence
            stop.start()

    with pytest.raises(DownloadCancelled, match="pulling again resumes"):
        pull_model("m:1", host=fake.host, progress=progress, cancel=stop.cancel)
    assert stop.hung_up()  # while the daemon still held the answer: not waiting for it to speak again
    assert model.have == [2000, 1000] and not model.pulled


def test_cancel_between_lines_closes_the_stream_then_pulling_again_resumes(every_report: None) -> None:
    with FakeOllama(step=1000, delay=0.002) as fake:
        model = fake.add("m:1", [4000, 400_000])  # long enough that the fake is still sending when we hang up
        cancel = threading.Event()

        def progress(p: TransferProgress) -> None:
            if p.bytes_done >= 6000:
                cancel.set()

        with pytest.raises(DownloadCancelled):
            pull_model("m:1", host=fake.host, progress=progress, cancel=cancel)
        assert fake.disconnected.wait(PATIENCE_S)
        stopped_at = sum(model.have)
        assert 6000 <= stopped_at < 404_000

        fake.delay = 0.0
        reports: list[TransferProgress] = []
        result = pull_model("m:1", host=fake.host, progress=reports.append)
        assert result.total_bytes == 404_000 and model.pulled and model.pulls == 2
        assert reports[0].bytes_done == 4000  # the complete first layer, reported at once
        assert reports[1].bytes_done == stopped_at  # the second layer starts where the daemon stopped
        assert reports[0].speed_bps == 0.0  # bytes the daemon already had are not speed
        assert reports[-1].bytes_done == 404_000


def test_cancel_already_set_sends_nothing(fake: FakeOllama) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(DownloadCancelled):
        pull_model("m", host=fake.host, cancel=cancel)
    assert fake.requests == []


def test_fake_daemon_answers_like_ollama(fake: FakeOllama) -> None:
    fake.add("a:1", [100])
    fake.add("b", [100])
    pull_model("a:1", host=fake.host)
    with urllib.request.urlopen(fake.host + "/", timeout=5) as answer:
        assert answer.read() == b"Ollama is running"
    with ollama.Client(host=fake.host) as client:
        assert [m.model for m in client.list().models] == ["a:1"]
        assert client.list().models[0].digest == fake.models["a:1"].digest
        assert list(client.pull("a:1", stream=True))[1].completed == 100  # a complete layer: one line


class ScriptedClient:
    """A stand-in for ollama.Client that yields given progress items (for what a real daemon rarely does)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.closed = False
        self.pulled: list[str] = []

    def pull(self, model: str, *, stream: bool) -> Iterator[ollama.ProgressResponse]:
        self.pulled.append(model)
        try:
            for item in self.items:
                yield ollama.ProgressResponse(**item)
        finally:
            self.closed = True

    def list(self) -> ollama.ListResponse:
        raise ollama.ResponseError("no tags here", 500)


def test_a_layer_count_going_back_does_not_move_the_sum_back(every_report: None) -> None:
    layer: dict[str, Any] = {"digest": "sha256:" + "a" * 64, "status": "pulling aaaaaaaaaaaa", "total": 100}
    steps: list[dict[str, Any]] = [{"completed": 60}, {"completed": 30}, {"completed": 100}]
    items = [{"status": "pulling manifest"}, *({**layer, **step} for step in steps), {"status": "success"}]
    client = ScriptedClient(items)
    reports: list[TransferProgress] = []
    result = pull_model("x", host="unused", progress=reports.append, client=client)
    assert [r.bytes_done for r in reports] == [60, 60, 100, 100]
    assert result == OllamaPullResult("x:latest", 100, 1, None) and client.closed


def test_without_the_ollama_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ollama", None)
    with pytest.raises(EngineUnavailable, match="ollama"):
        pull_model("m", host="http://127.0.0.1:1")
    code = "import sys; sys.modules['ollama'] = None; import engines.downloads.ollama_source; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "ok"
