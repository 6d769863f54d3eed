"""`llm-tui gauges`: one snapshot as JSON or a table, a line per interval, clear errors, the real command."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli.gauges import run_gauges
from cli.main import build_parser, main
from engines.config.load import Config
from engines.errors import BadRequest
from engines.telemetry.fake import GIB, FakeGpuSource, FakeProcess
from engines.telemetry.sources import GpuSource, NoGpuSource

SNAPSHOT_KEYS = {"taken_at", "gpus", "host", "gpu_status"}
GPU_KEYS = {"index", "name", "uuid", "utilization_pct", "memory_used_bytes", "memory_total_bytes", "memory_free_bytes"}
GPU_KEYS |= {"temperature_c", "power_w", "power_limit_w", "processes", "error"}
HOST_KEYS = {"cpu_pct", "per_cpu_pct", "ram_used_bytes", "ram_total_bytes", "ram_available_bytes"}
HOST_KEYS |= {"swap_used_bytes", "swap_total_bytes", "process_rss_bytes", "disk_free_bytes", "disk_path"}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    models = tmp_path / "models"
    models.mkdir()
    return Config(models_dir=models, data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")


class Sleeps:
    """Stands in for time.sleep: records how long the command asked to wait, waits not at all."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def gauges(config: Config, *argv: str, gpu: GpuSource | None = None) -> tuple[str, Sleeps]:
    args = build_parser().parse_args(["gauges", *argv])
    out, sleeps = io.StringIO(), Sleeps()
    assert run_gauges(args, config, gpu_source=gpu or FakeGpuSource(), out=out, sleep=sleeps) == 0
    return out.getvalue(), sleeps


def test_once_json_has_both_gpus_and_the_host(config: Config) -> None:
    fake = FakeGpuSource(processes=[FakeProcess(gpu=0, pid=4242, used_bytes=3 * GIB)])
    text, _ = gauges(config, "--once", "--json", gpu=fake)
    data = json.loads(text)
    assert set(data) == SNAPSHOT_KEYS
    assert data["gpu_status"] is None and isinstance(data["taken_at"], float)
    assert [gpu["index"] for gpu in data["gpus"]] == [0, 1]
    first = data["gpus"][0]
    assert set(first) == GPU_KEYS
    assert first["name"] == "NVIDIA RTX 4090 (fake)"
    assert (first["memory_used_bytes"], first["memory_total_bytes"]) == (14 * GIB, 24 * GIB)
    assert first["memory_free_bytes"] == 10 * GIB
    assert first["processes"] == [{"pid": 4242, "used_bytes": 3 * GIB, "name": "python", "run_id": None}]
    assert set(data["host"]) >= HOST_KEYS
    assert data["host"]["ram_total_bytes"] > 0
    assert data["host"]["disk_path"] == str(config.models_dir)
    assert fake.samples == 1


def test_once_json_without_a_gpu_says_why(config: Config) -> None:
    text, _ = gauges(config, "--once", "--json", gpu=NoGpuSource("no NVIDIA GPU found"))
    data = json.loads(text)
    assert data["gpus"] == []
    assert data["gpu_status"] == "no NVIDIA GPU found"


def test_once_table_is_for_people(config: Config) -> None:
    fake = FakeGpuSource(processes=[FakeProcess(gpu=1, pid=4242, used_bytes=GIB)], script=[{1: None}])
    text, _ = gauges(config, "--once", gpu=fake)
    lines = text.splitlines()
    assert lines[0].startswith("CPU") and any(line.startswith("Disk") for line in lines)
    row = next(line for line in lines if "RTX 4090" in line)
    assert row.split()[0] == "0"
    for cell in ("63%", "14.0/24.0 GiB", "66°C", "287/450 W"):
        assert cell in row
    lost = next(line for line in lines if "RTX 3060" in line)
    assert lost.endswith("GPU is lost")
    assert not any("pid 4242" in line for line in lines)  # a lost GPU lists no processes


def test_once_table_uses_binary_units_throughout(config: Config) -> None:
    """GiB pairs beside GB figures read as a mismatch: every size is in KiB/MiB/GiB, as on the gauges screen."""
    text, _ = gauges(config, "--once", gpu=FakeGpuSource())
    units = re.findall(r"\d (T|G|M|K)?(i)?B\b", text)
    assert units and all(binary for _, binary in units), text
    assert re.search(r"RSS \d+(\.\d)? [KMG]iB", text) and re.search(r"Disk +\d+(\.\d)? [KMGT]iB free of", text)


def test_once_table_without_a_gpu_gives_the_reason(config: Config) -> None:
    text, _ = gauges(config, "--once", gpu=NoGpuSource("the NVIDIA driver is not loaded"))
    assert text.splitlines()[-1] == "GPUs: none (the NVIDIA driver is not loaded)"


def test_streaming_prints_one_compact_line_per_sample(config: Config) -> None:
    fake = FakeGpuSource(script=[{}, {1: None}])
    text, sleeps = gauges(config, "--count", "3", "--interval", "0.5", gpu=fake)
    lines = text.splitlines()
    assert len(lines) == 3
    assert fake.samples == 3
    for line in lines:
        assert line[:8].count(":") == 2  # HH:MM:SS first
        for part in ("CPU ", "RAM ", "swap ", "RSS ", "iB free", "GPU0 63% 14.0/24.0 GiB 66°C 287/450 W"):
            assert part in line
    assert "GPU1 4% 1.0/12.0 GiB 41°C 18/170 W" in lines[0]
    assert lines[1].endswith("GPU1 GPU is lost")
    # One short settle before the first sample, then a wait between samples and none after the last.
    assert len(sleeps.calls) == 3
    assert all(0 <= seconds <= 0.5 for seconds in sleeps.calls)


def test_streaming_json_is_one_object_per_line(config: Config) -> None:
    text, _ = gauges(config, "--json", "--count", "2", gpu=NoGpuSource("no GPU here"))
    objects = [json.loads(line) for line in text.splitlines()]
    assert len(objects) == 2
    assert all(set(obj) == SNAPSHOT_KEYS and obj["gpus"] == [] for obj in objects)


def test_streaming_without_a_gpu_says_why_once_on_stderr(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    text, _ = gauges(config, "--count", "3", gpu=NoGpuSource("no NVIDIA GPU found"))
    assert all(line.endswith("GPU N/A") for line in text.splitlines())
    assert capsys.readouterr().err == "llm-tui: no NVIDIA GPU found\n"


def test_the_interval_defaults_to_the_config(config: Config) -> None:
    from dataclasses import replace

    _, sleeps = gauges(replace(config, telemetry_interval_s=0.1), "--count", "2")
    assert all(seconds <= 0.1 for seconds in sleeps.calls)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--interval", "0"], "--interval must be a positive number of seconds"),
        (["--interval", "-1"], "--interval must be a positive number of seconds"),
        (["--interval", "nan"], "--interval must be a positive number of seconds"),
        (["--count", "0"], "--count must be at least 1"),
    ],
)
def test_bad_input_is_a_bad_request(config: Config, argv: list[str], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        gauges(config, *argv)


def test_bad_interval_is_one_line_and_exit_1(isolated_dirs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gauges", "--interval", "0"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "llm-tui: error: --interval must be a positive number of seconds, got 0.0\n"


def test_the_real_command_on_this_machine(isolated_dirs: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "gauges", "--once", "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == SNAPSHOT_KEYS
    assert data["host"]["ram_total_bytes"] > 0
    if data["gpus"]:  # a machine with an NVIDIA GPU and nvidia-ml-py
        assert all(set(gpu) == GPU_KEYS for gpu in data["gpus"])
    else:
        reason = data["gpu_status"]
        assert reason and ("pip install 'llm-tui[nvidia]'" in reason or "NVIDIA" in reason or "NVML" in reason)
