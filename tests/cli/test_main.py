"""`llm-tui` command line: the contract scripts rely on (exit codes, stdout, stderr)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import engines
from cli.main import main


def run_cli(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=240,
    )


@pytest.fixture
def model_file(isolated_dirs: Path) -> Path:
    path = isolated_dirs / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"llm-tui {engines.__version__}"


def test_chat_prompt_streams_to_stdout_with_stats(model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["chat", str(model_file), "hello world", "--engine", "fake", "--stats"])
    out, err = capsys.readouterr()
    assert status == 0
    assert out == "Echo: hello world\n"
    stats = json.loads(err.strip().splitlines()[-1])
    assert set(stats) >= {"ttft_ms", "tokens_per_s", "prompt_tokens", "completion_tokens", "engine", "model"}
    assert stats["engine"] == "fake" and stats["model"] == "tiny" and stats["completion_tokens"] == 3


def test_chat_reads_prompt_from_stdin(model_file: Path) -> None:
    result = run_cli("chat", str(model_file), "--engine", "fake", stdin="from a pipe\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Echo: from a pipe\n"


def test_empty_stdin_is_a_clear_error(model_file: Path) -> None:
    result = run_cli("chat", str(model_file), "--engine", "fake", stdin="")
    assert result.returncode == 1
    assert result.stderr.strip() == "llm-tui: error: no prompt: give PROMPT or pipe text on stdin"


def test_sampling_flags_reach_the_engine(model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["chat", str(model_file), "a b c d e", "--engine", "fake", "--max-tokens", "3"])
    assert status == 0
    assert capsys.readouterr().out == "Echo: a b\n"
    status = main(["chat", str(model_file), "a b c d e", "--engine", "fake", "--stop", " c"])
    assert capsys.readouterr().out == "Echo: a b\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["chat", "gemma-3-27", "hi"], "unknown model 'gemma-3-27'; did you mean gemma-3-270m"),
        (["chat", "/no/such/model.gguf", "hi"], "no such model file"),
        (["chat", "{model}", "hi", "--engine", "fake", "--temperature", "-1"], "temperature must be between"),
        (["chat", "{model}", "hi", "--engine", "warp-drive"], "unknown engine"),
        (["--config", "/no/such/config.toml", "chat", "{model}", "hi"], "/no/such/config.toml"),
        (["chat", "{model}", "hi", "--config", "/no/such/config.toml"], "/no/such/config.toml"),
    ],
)
def test_failures_exit_1_with_one_line(model_file: Path, args: list[str], message: str) -> None:
    result = run_cli(*[a.replace("{model}", str(model_file)) for a in args])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("llm-tui: error: ") and message in lines[0]
    assert "Traceback" not in result.stderr


def _corrupt_files(tmp: Path) -> list[Path]:
    header = b"GGUF" + struct.pack("<IQQ", 3, 2**40, 2**40)
    files = {
        "not-gguf.gguf": b"PK\x03\x04 definitely a zip",
        "empty.gguf": b"",
        "huge-counts.gguf": header,
        "garbage.gguf": b"GGUF" + os.urandom(4096),
    }
    paths = []
    for name, data in files.items():
        path = tmp / name
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.mark.real_model
def test_corrupt_and_truncated_gguf_exit_cleanly_on_llama_cpp(isolated_dirs: Path, gemma_path: Path) -> None:
    truncated = isolated_dirs / "gemma-truncated.gguf"
    with gemma_path.open("rb") as src, truncated.open("wb") as dst:
        dst.write(src.read(50 * 1024 * 1024))
    for path in [truncated, *_corrupt_files(isolated_dirs)]:
        result = run_cli("chat", str(path), "hi", "--engine", "llama.cpp")
        assert result.returncode == 1, (path, result.returncode, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("llm-tui: error: bad model file"), (path, result.stderr)
        assert result.stdout == ""


@pytest.mark.real_model
def test_real_gemma_chat_with_stats(isolated_dirs: Path, gemma_path: Path) -> None:
    env = {"LLM_TUI_MODELS_DIR": str(gemma_path.parent), "LLM_TUI_N_THREADS": "2"}
    result = run_cli(
        "chat", "gemma-3-270m", "Name three colors.", "--max-tokens", "32", "--temperature", "0", "--stats", env=env
    )
    assert result.returncode == 0, result.stderr
    reply = result.stdout.lower()
    assert sum(color in reply for color in ("red", "blue", "green", "yellow", "orange", "purple", "black")) >= 2, reply
    stats = json.loads(result.stderr.strip().splitlines()[-1])
    assert stats["engine"] == "llama.cpp" and stats["model"] == "gemma-3-270m"
    assert 0 < stats["completion_tokens"] <= 32 and stats["prompt_tokens"] > 5
    assert stats["ttft_ms"] > 0 and stats["tokens_per_s"] > 0


def test_interactive_chat_on_a_terminal_keeps_the_conversation(model_file: Path) -> None:
    import select

    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "chat", str(model_file), "--engine", "fake", "--stats"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    )
    os.close(terminal)
    os.write(controller, b"first question\nsecond one\n/exit\n")
    output = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(timeout=60) == 0
    text = output.decode()
    assert "chatting with tiny (fake)" in text
    assert "Echo: first question" in text and "Echo: second one" in text
    stats = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    # The second turn carries the first question and answer with it.
    assert len(stats) == 2 and stats[1]["prompt_tokens"] > stats[0]["prompt_tokens"] + 4


@pytest.mark.real_model
def test_real_gemma_json_schema_reply_validates(isolated_dirs: Path, gemma_path: Path) -> None:
    schema = isolated_dirs / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": 20}},
                "required": ["name"],
                "additionalProperties": False,
            }
        )
    )
    env = {"LLM_TUI_MODELS_DIR": str(gemma_path.parent), "LLM_TUI_N_THREADS": "2"}
    result = run_cli(
        "chat",
        "gemma-3-270m",
        "Name a color.",
        "--json-schema",
        str(schema),
        "--temperature",
        "0",
        "--max-tokens",
        "48",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == {"name"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--json-schema", "{schema}"], "the fake engine does not support json_schema"),
        (["--json-schema", "{bad}"], "the JSON schema must be a JSON object"),
        (["--json-schema", "/no/such/schema.json"], "--json-schema: cannot read /no/such/schema.json"),
        (["--image", "{image}"], "the fake engine does not support vision"),
        (["--image", "{schema}"], "is not a PNG, JPEG, GIF or WebP image"),
        (["--image", "/no/such.png"], "no such image file: /no/such.png"),
    ],
)
def test_what_the_engine_cannot_do_is_refused_by_name(
    model_file: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_file.parent
    (folder / "s.json").write_text('{"type": "object"}')
    (folder / "bad.json").write_text("[1, 2]")
    (folder / "i.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    names = {"{schema}": str(folder / "s.json"), "{bad}": str(folder / "bad.json"), "{image}": str(folder / "i.png")}
    status = main(["chat", str(model_file), "hi", "--engine", "fake", *[names.get(a, a) for a in extra]])
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("llm-tui: error: ") and message in err and err.count("\n") == 1


def test_embed_prints_vectors_in_text_order(model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", str(model_file), "abc", "zz", "--engine", "fake"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["engine"], out["dimensions"], len(out["embeddings"])) == ("fake", 26, 2)
    assert out["embeddings"][0][:3] == [1.0, 1.0, 1.0] and out["embeddings"][1][25] == 2.0


def test_embed_reads_stdin_and_refuses_nothing(model_file: Path) -> None:
    result = run_cli("embed", str(model_file), "--engine", "fake", stdin="one\n\ntwo\n")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["embeddings"]) == 2
    empty = run_cli("embed", str(model_file), "--engine", "fake", stdin="\n")
    assert empty.returncode == 1 and "nothing to embed" in empty.stderr


@pytest.mark.real_model
def test_real_gemma_embeddings(isolated_dirs: Path, gemma_path: Path) -> None:
    env = {"LLM_TUI_MODELS_DIR": str(gemma_path.parent), "LLM_TUI_N_THREADS": "2"}
    result = run_cli("embed", "gemma-3-270m", "a red apple", "a green pear", env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["engine"] == "llama.cpp" and out["dimensions"] == 640 and len(out["embeddings"]) == 2


def test_chat_with_an_openai_compatible_endpoint_and_a_failure_mid_stream(isolated_dirs: Path) -> None:
    from tests.engines.fake_openai import FakeOpenAI, Reply

    replies = [Reply(pieces=("Hello", " there", "!")), Reply(pieces=("Half", " a", " reply"), error_after=2)]
    with FakeOpenAI(models=("served-model",), api_key="sk-test-123", replies=replies) as fake:
        env = {"MY_KEY": "sk-test-123"}
        ok = run_cli("chat", "--endpoint", fake.endpoint, "served-model", "hi", "--api-key-env", "MY_KEY", env=env)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout == "Hello there!\n"
        broken = run_cli("chat", "--endpoint", fake.endpoint, "served-model", "hi", "--api-key-env", "MY_KEY", env=env)
        refused = run_cli("chat", "--endpoint", fake.endpoint, "served-model", "hi", env={"OPENAI_API_KEY": "sk-wrong"})
    assert broken.returncode == 1 and broken.stdout == "Half a\n"
    assert broken.stderr.count("\n") == 1 and "something went wrong" in broken.stderr
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "sk-wrong" not in refused.stderr
    assert "Traceback" not in broken.stderr + refused.stderr


def test_chat_with_an_ollama_model_through_the_daemon(isolated_dirs: Path) -> None:
    from tests.engines.fake_ollama import ChatReply, FakeOllama

    with FakeOllama() as fake:
        fake.serve(
            "qwen2.5:0.5b", ChatReply(pieces=("Hi", " from", " Ollama")), ChatReply(pieces=("Oops",), error_after=1)
        )
        env = {"OLLAMA_HOST": fake.host.removeprefix("http://")}
        ok = run_cli("chat", "ollama:qwen2.5:0.5b", "hello", "--stats", env=env)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout == "Hi from Ollama\n"
        assert json.loads(ok.stderr.strip().splitlines()[-1])["engine"] == "ollama"
        broken = run_cli("chat", "ollama:qwen2.5:0.5b", "hello", env=env)
        missing = run_cli("chat", "ollama:nope", "hello", env=env)
    assert broken.returncode == 1 and broken.stdout == "Oops\n" and broken.stderr.count("\n") == 1
    assert missing.returncode == 1 and "ollama pull nope" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.real_model
def test_real_gemma_on_transformers_from_the_command_line(
    isolated_dirs: Path, gemma_path: Path, shared_xdg_cache: Path
) -> None:
    """The GGUF is converted once into a cache that outlives the test run (like the assembled GGUF itself)."""
    pytest.importorskip("transformers")
    cache = shared_xdg_cache
    env = {"LLM_TUI_MODELS_DIR": str(gemma_path.parent), "LLM_TUI_N_THREADS": "2", "XDG_CACHE_HOME": str(cache)}
    args = ("chat", "gemma-3-270m", "Say hello", "--engine", "transformers", "--max-tokens", "16", "--stats")
    result = run_cli(*args, "--temperature", "0", env=env)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stderr.strip().splitlines()[-1])
    assert stats["engine"] == "transformers" and 0 < stats["completion_tokens"] <= 16
    assert result.stdout.strip()


def _controlling_terminal() -> None:
    """In the child: a terminal session of its own, so Ctrl-C typed on it becomes SIGINT, as in a shell."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """What a pseudo-terminal's program wrote, read up to each thing a test waits for."""

    def __init__(self, controller: int) -> None:
        self.controller = controller
        self.seen = bytearray()
        self.pos = 0
        """Where the last awaited text ended: the next wait looks after it."""

    @staticmethod
    def wait_until_reading(pid: int, timeout: float = 60) -> None:
        """Until the program's main thread sleeps in its read of the terminal. input() reads in canonical mode, so
        the terminal echoes typed text at once, whatever the program does; and a SIGINT that lands between its
        prompt and its read() is only seen at the next line (CPython checks signals when read() is interrupted)."""
        deadline = time.monotonic() + timeout
        wchan = Path(f"/proc/{pid}/task/{pid}/wchan")
        while wchan.read_text() not in ("wait_woken", "n_tty_read"):
            assert time.monotonic() < deadline, f"the program never waited on the terminal ({wchan.read_text()!r})"
            time.sleep(0.01)

    def wait_for(self, wanted: bytes, timeout: float = 120) -> None:
        import select

        deadline = time.monotonic() + timeout
        while (at := self.seen.find(wanted, self.pos)) < 0:
            ready, _, _ = select.select([self.controller], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"waited for {wanted!r}; the terminal showed {bytes(self.seen[-400:])!r}"
            chunk = os.read(self.controller, 4096)
            assert chunk, f"the terminal closed before {wanted!r}: {bytes(self.seen[-400:])!r}"
            self.seen += chunk
        self.pos = at + len(wanted)


@pytest.mark.real_model
def test_real_gemma_line_chat_ctrl_c_stops_the_reply_and_ctrl_d_quits(isolated_dirs: Path, gemma_path: Path) -> None:
    controller, terminal = pty.openpty()
    env = {**os.environ, "LLM_TUI_MODELS_DIR": str(gemma_path.parent), "LLM_TUI_N_THREADS": "2"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "chat",
            "gemma-3-270m",
            "--max-tokens",
            "400",
            "--temperature",
            "0.8",
            "--seed",
            "2",
        ],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        preexec_fn=_controlling_terminal,
    )
    os.close(terminal)
    term = Terminal(controller)
    try:
        term.wait_for(b">>> ")
        os.write(controller, b"Tell me a long story about a dragon and a knight.\n")
        term.wait_for(b"knight.\r\n")
        reply_start = term.pos
        while len(term.seen) - reply_start < 40:  # some of the reply, then Ctrl-C
            term.wait_for(b" ")
        os.write(controller, b"\x03")
        term.wait_for(b">>> ")  # the reply stopped; the chat goes on
        reply = bytes(term.seen[reply_start : term.pos]).decode(errors="replace")
        os.write(controller, b"\x04")  # Ctrl-D on an empty line quits
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert b"Traceback" not in term.seen
    assert len(reply.strip(" >\r\n^C")) >= 20, reply  # the partial reply stayed on screen


def test_line_chat_ctrl_c_at_the_prompt_drops_the_line_and_goes_on(model_file: Path) -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "chat", str(model_file), "--engine", "fake"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        preexec_fn=_controlling_terminal,
    )
    os.close(terminal)
    term = Terminal(controller)
    try:
        term.wait_for(b">>> ")
        os.write(controller, b"half a line")
        term.wait_for(b"half a line")
        term.wait_until_reading(proc.pid)  # a Ctrl-C before the read races it (seen once in a loaded suite run)
        os.write(controller, b"\x03")  # Ctrl-C at the prompt drops the line, does not quit
        term.wait_for(b"(Ctrl-D or /exit quits)")
        term.wait_for(b">>> ")
        os.write(controller, b"still here\n")
        term.wait_for(b"Echo: still here")
        os.write(controller, b"/exit\n")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert b"Echo: half a line" not in term.seen  # the dropped line never reached the model


@pytest.mark.real_model
def test_real_gemma_one_shot_interrupted_exits_130_keeping_the_partial_reply(
    isolated_dirs: Path, gemma_path: Path
) -> None:
    import signal

    env = {**os.environ, "LLM_TUI_MODELS_DIR": str(gemma_path.parent), "LLM_TUI_N_THREADS": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "chat", "gemma-3-270m", "Write a long story.", "--max-tokens", "400"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.read1(4096)  # type: ignore[attr-defined]
    assert first, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert (first + out).strip(), "the partial reply was lost"
    assert b"Traceback" not in err, err
