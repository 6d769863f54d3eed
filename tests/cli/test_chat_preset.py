"""`llm-tui chat --preset NAME`, thinking and tool calls on stderr, and the --stats fields for thinking models."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cli.chat_stream import DIM, ReplyPrinter
from cli.main import main
from engines.adapters.fake import FakeEngine
from engines.manager import EngineManager
from engines.types import (
    ChatMessage,
    Delta,
    Done,
    LaunchOptions,
    Metrics,
    ModelSpec,
    Params,
    Reasoning,
    StreamEvent,
    ToolCallDelta,
    Usage,
)
from tests.cli.test_main import run_cli


class RecordingEngine(FakeEngine):
    """The fake engine that keeps the launch options and parameters it was given, and can think and call tools
    before its reply."""

    def __init__(self, before: Sequence[StreamEvent] = (), reasoning_tokens: int = 0) -> None:
        super().__init__()
        self.before = before
        self.reasoning_tokens = reasoning_tokens
        self.options: list[LaunchOptions] = []
        self.params: list[Params] = []

    def load(self, spec: ModelSpec, options: LaunchOptions) -> None:
        self.options.append(options)
        super().load(spec, options)

    def chat(
        self, messages: Sequence[ChatMessage], params: Params, cancel: threading.Event, session: str | None = None
    ) -> Iterator[StreamEvent]:
        self.params.append(params)
        yield from self.before
        for event in super().chat(messages, params, cancel, session):
            if isinstance(event, Done) and self.reasoning_tokens:
                usage = Usage(event.usage.prompt_tokens, event.usage.completion_tokens + self.reasoning_tokens)
                event = Done(
                    Usage(usage.prompt_tokens, usage.completion_tokens, reasoning_tokens=self.reasoning_tokens)
                )
            yield event


@pytest.fixture
def model_file(isolated_dirs: Path) -> Path:
    path = isolated_dirs / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return path


@pytest.fixture
def config_file(isolated_dirs: Path, model_file: Path) -> Path:
    path = isolated_dirs / "presets.toml"
    path.write_text(
        f"""
n_ctx = 2048
[defaults]
temperature = 0.9
top_k = 5

[presets.terse]
description = "Few words"
system = "Answer in five words."
temperature = 0.1
max_tokens = 3
seed = 11
model = "{model_file}"
[presets.terse.launch]
n_ctx = 512
n_gpu_layers = 0

[presets.nomodel]
system = "Be kind."
stop = [" c"]
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> RecordingEngine:
    """The engine every `llm-tui chat` of the test runs on."""
    chosen = RecordingEngine()
    monkeypatch.setattr("cli.chat.EngineManager", lambda: EngineManager(engine_factory=lambda name: chosen))
    return chosen


def chat(config: Path, *args: str) -> int:
    return main(["--config", str(config), "chat", *args, "--engine", "fake"])


def test_a_preset_names_the_model_system_prompt_and_parameters(
    config_file: Path, engine: RecordingEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert chat(config_file, "--preset", "terse", "one two three four") == 0
    assert capsys.readouterr().out == "Echo: one two\n"  # the preset's max_tokens = 3
    assert engine.calls[-1][0] == ChatMessage("system", "Answer in five words.")
    # The preset over [defaults]: its temperature and seed, the defaults' top_k where it says nothing.
    params = engine.params[-1]
    assert (params.temperature, params.top_k, params.max_tokens, params.seed) == (0.1, 5, 3, 11)
    assert (engine.options[-1].n_ctx, engine.options[-1].seed, engine.options[-1].device) == (512, 11, "cpu")


def test_flags_win_over_the_preset(
    config_file: Path, model_file: Path, engine: RecordingEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--preset", "terse", "a b c d e", "--system", "Mine.", "--temperature", "0.5", "--max-tokens", "4"]
    assert chat(config_file, *args, "--n-ctx", "1024", "--seed", "3") == 0
    assert capsys.readouterr().out == "Echo: a b c\n"
    assert engine.calls[-1][0] == ChatMessage("system", "Mine.")
    params = engine.params[-1]
    assert (params.temperature, params.max_tokens, params.seed) == (0.5, 4, 3)
    assert engine.options[-1].n_ctx == 1024


def test_model_and_prompt_beside_a_preset(
    config_file: Path, isolated_dirs: Path, engine: RecordingEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    other = isolated_dirs / "other.gguf"
    other.write_bytes(b"GGUF")
    # Two positionals: the model given wins over the preset's.
    assert chat(config_file, "--preset", "terse", str(other), "x y", "--stats") == 0
    err = capsys.readouterr().err
    assert json.loads(err.strip().splitlines()[-1])["model"] == "other"
    # A preset without a model needs MODEL; its stop sequence and system prompt apply.
    assert chat(config_file, "--preset", "nomodel", str(other), "a b c d") == 0
    assert capsys.readouterr().out == "Echo: a b\n"
    assert engine.calls[-1][0] == ChatMessage("system", "Be kind.")


def test_a_lone_positional_that_names_a_model_is_the_model(config_file: Path, isolated_dirs: Path) -> None:
    other = isolated_dirs / "other.gguf"
    other.write_bytes(b"GGUF")
    args = ("--config", str(config_file), "chat", "--preset", "terse", str(other), "--engine", "fake", "--stats")
    result = run_cli(*args, stdin="from stdin")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Echo: from stdin\n"
    assert json.loads(result.stderr.strip().splitlines()[-1])["model"] == "other"


def test_an_unknown_preset_lists_the_known_ones_and_exits_2(config_file: Path) -> None:
    result = run_cli("--config", str(config_file), "chat", "--preset", "nope", "hi", "--engine", "fake")
    assert result.returncode == 2
    assert result.stderr == "llm-tui: error: no preset named 'nope' (known: nomodel, terse)\n"
    assert result.stdout == ""


def test_no_model_without_a_preset_that_names_one_exits_2(config_file: Path, model_file: Path) -> None:
    result = run_cli("--config", str(config_file), "chat", "--preset", "nomodel", "--engine", "fake", stdin="hi")
    assert result.returncode == 2
    assert result.stderr == "llm-tui: error: give MODEL, or --preset NAME of a preset that names a model\n"


def test_thinking_and_tool_calls_go_to_stderr(
    model_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before: list[StreamEvent] = [
        Reasoning("Let me think."),
        Reasoning(" Done thinking."),
        ToolCallDelta(0, "call_1", "get_weather", '{"city": '),
        ToolCallDelta(0, arguments='"Paris"}'),
    ]
    thinking = RecordingEngine(before, reasoning_tokens=4)
    monkeypatch.setattr("cli.chat.EngineManager", lambda: EngineManager(engine_factory=lambda name: thinking))
    assert main(["chat", str(model_file), "hello", "--engine", "fake", "--stats"]) == 0
    out, err = capsys.readouterr()
    assert out == "Echo: hello\n"
    lines = err.splitlines()
    assert lines[:3] == ["Let me think. Done thinking.", '[tool call] get_weather({"city": "Paris"})', lines[2]]
    stats = json.loads(lines[2])
    assert (stats["completion_tokens"], stats["reasoning_tokens"], stats["reply_tokens"]) == (6, 4, 2)
    assert "reply_ttft_ms" in stats
    assert main(["chat", str(model_file), "hello", "--engine", "fake", "--hide-thinking"]) == 0
    out, err = capsys.readouterr()
    assert out == "Echo: hello\n" and "think" not in err and "[tool call] get_weather" in err


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_thinking_is_dim_on_a_terminal_and_ends_its_line() -> None:
    out, err = io.StringIO(), Tty()
    printer = ReplyPrinter(out, err)
    for event in (Reasoning("hmm"), Delta("Hi"), Delta(" there")):
        assert printer.show(event) is None
    done = Done(Usage(1, 2), metrics=Metrics(ttft_ms=5, tokens_per_s=1, total_ms=9, reply_ttft_ms=7.25))
    assert printer.show(done) is done
    assert err.getvalue() == f"{DIM}hmm\x1b[22m\n" and out.getvalue() == "Hi there\n"
    assert printer.text == "Hi there"  # the newline that ends the line is not part of the reply


def test_stats_line_has_the_thinking_fields() -> None:
    from cli.chat import stats_line

    done = Done(Usage(3, 10, reasoning_tokens=7), metrics=Metrics(1.0, 2.0, 3.0, reply_ttft_ms=12.345))
    line = stats_line(done, ModelSpec(id="m"), "fake")
    assert (line["reasoning_tokens"], line["reply_tokens"], line["reply_ttft_ms"]) == (7, 3, 12.35)
    plain = stats_line(Done(Usage(3, 10), metrics=Metrics(1.0, 2.0, 3.0)), ModelSpec(id="m"), "fake")
    assert plain["reply_ttft_ms"] is None and plain["reasoning_tokens"] == 0 and plain["reply_tokens"] == 10
