"""`llm-tui tune` through cli.main.main: bad data is refused with its line numbers (exit 2) before any model loads,
QLoRA on a machine without CUDA is refused with the reason, and a tiny real run prints one JSON event a line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from cli.tune import progress_text
from engines.tune.events import from_line
from engines.tune.types import Finished, Started, StepDone, Stopped, Validated


def _chat(question: str, answer: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _good(path: Path, n: int = 8) -> Path:
    return _write(path, [_chat(f"What is {i} + 1?", f"{i + 1}.") for i in range(n)])


def test_bad_rows_are_listed_with_their_lines_and_exit_2(
    isolated_dirs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [_chat("Hi?", "Hello."), "{not json", json.dumps({"instruction": "Add 1 and 1", "output": "2"})]
    rows += [json.dumps({"text": "plain text to learn"}), json.dumps({"messages": []}), json.dumps({"colour": "red"})]
    data = _write(isolated_dirs / "data.jsonl", rows)

    code = main(["tune", "no-such-model", str(data), "--out", "run1"])

    err = capsys.readouterr().err
    assert code == 2
    assert "data.jsonl: 3 usable rows (1 chat, 1 instruction, 1 text)" in err
    bad_lines = sorted(int(line.split(":")[0].split()[1]) for line in err.splitlines() if line.startswith("line "))
    assert bad_lines == [2, 5, 6]
    assert "3 refused rows" in err
    assert not (isolated_dirs / "xdg_data_home" / "llm-tui" / "tune").exists()  # no run was created


def test_only_the_first_20_problems_are_shown_with_the_total(
    isolated_dirs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _write(isolated_dirs / "data.jsonl", [_chat("Hi?", "Hello.")] + ["[1]"] * 25)

    assert main(["tune", "base", str(data), "--out", "run1"]) == 2

    err = capsys.readouterr().err
    shown = [line for line in err.splitlines() if line.startswith("line ")]
    assert len(shown) == 20 and shown[0].startswith("line 2:") and shown[-1].startswith("line 21:")
    assert "25 refused rows (first 20 shown, 5 more)" in err


def test_qlora_without_cuda_is_refused_with_the_reason(
    isolated_dirs: Path, gemma_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: QLoRA is not refused here")
    data = _good(isolated_dirs / "data.jsonl")

    code = main(["tune", str(gemma_path), str(data), "--out", "q", "--qlora"])

    assert code == 1
    assert "QLoRA (a 4-bit base) needs a CUDA GPU" in capsys.readouterr().err


def test_resume_takes_no_base_or_data(isolated_dirs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "base", "data.jsonl", "--resume", "run1"]) == 1
    assert "--resume NAME takes no BASE" in capsys.readouterr().err


def test_the_progress_line_has_every_figure() -> None:
    step = StepDone(
        step=12, epoch=0.5, loss=1.23456, learning_rate=2e-4, tokens_per_s=1234.4, memory_bytes=1_200_000_000,
        elapsed_s=30.0, eta_s=180.0,
    )  # fmt: skip
    assert progress_text(step, 100, 1.5) == (
        "step 12/100  loss 1.2346  val 1.5000  lr 2.0e-04  1,234 tok/s  ETA 3 min  mem 1.2 GB"
    )


@pytest.mark.real_model
def test_a_tiny_real_run_prints_json_events(
    isolated_dirs: Path,
    gemma_path: Path,
    shared_xdg_cache: Path,
    transformers_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("peft")
    from engines.adapters.transformers_convert import ensure_converted

    ensure_converted(gemma_path, transformers_cache)  # the shared conversion, so the child does not convert again
    monkeypatch.setenv("LLM_TUI_CACHE_DIR", str(shared_xdg_cache / "llm-tui"))
    data = _good(isolated_dirs / "train.jsonl")
    val = _good(isolated_dirs / "val.jsonl", 2)
    args = ["tune", str(gemma_path), str(data), "--out", "tiny", "--json", "--max-steps", "2", "--max-seq-len", "32"]
    args += ["--batch-size", "2", "--val-file", str(val), "--eval-every", "1", "--device", "cpu"]

    code = main(args)

    out, err = capsys.readouterr()
    events = [from_line(line) for line in out.splitlines()]
    assert code == 0, err
    assert None not in events  # every stdout line is one event
    assert isinstance(events[0], Started) or any(isinstance(e, Started) for e in events)
    steps = [e for e in events if isinstance(e, StepDone)]
    assert [s.step for s in steps] == [1, 2]
    assert all(s.loss > 0 for s in steps)
    assert [e.step for e in events if isinstance(e, Validated)][-1] == 2
    finished = events[-1]
    assert isinstance(finished, Finished) and (finished.adapter_dir / "adapter_model.safetensors").is_file()
    assert "finished: adapter in" in err


class _Interrupted:
    """A run's event queue where the user presses Ctrl+C while waiting; the child then saves and stops."""

    def __init__(self, process: _Process) -> None:
        self.process = process
        self.pressed = False

    def get(self, timeout: float) -> object:
        if not self.pressed:
            self.pressed = True
            raise KeyboardInterrupt
        assert self.process.stop_asked, "the child must be asked to stop before it says it stopped"
        return Stopped(step=7, checkpoint=Path("/runs/r/checkpoints/step-7"))

    def empty(self) -> bool:
        return False


class _Process:
    name = "r"
    run_dir = Path("/runs/r")
    running = True

    def __init__(self) -> None:
        self.stop_asked = False

    def stop(self) -> None:
        self.stop_asked = True

    def wait(self, timeout: float | None = None) -> int:
        return 0


def test_ctrl_c_asks_for_a_checkpoint_and_says_how_to_resume() -> None:
    import io

    from cli.tune import _follow

    process = _Process()
    err, out = io.StringIO(), io.StringIO()
    code = _follow(process, _Interrupted(process), False, out, err)  # type: ignore[arg-type]
    assert code == 130 and process.stop_asked
    text = err.getvalue()
    assert "stopping: saving a checkpoint" in text
    assert "stopped at step 7; resume with: llm-tui tune --resume r" in text
