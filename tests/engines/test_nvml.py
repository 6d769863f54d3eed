"""NvmlSource over a scripted fake `pynvml` module: full reads, N/A fields, lost GPUs, no library, no driver."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from types import ModuleType, SimpleNamespace
from typing import Any

import psutil
import pytest

from engines.telemetry.nvml import NvmlSource, open_gpu_source
from engines.telemetry.snapshot import GpuProcess, GpuStats
from engines.telemetry.sources import NoGpuSource

GIB = 1 << 30
NOT_AVAILABLE = (1 << 64) - 1
NO_SUCH_PID = 4_194_304 + 7  # above Linux's largest pid_max: psutil cannot name it


class NVMLError(Exception):
    """pynvml's base error; subclasses below mirror the ones pynvml generates from its error codes."""

    def __str__(self) -> str:
        return type(self).__name__.removeprefix("NVMLError_")


ERRORS = {
    name: type(f"NVMLError_{name}", (NVMLError,), {})
    for name in ("NotSupported", "NoPermission", "Unknown", "GpuIsLost", "LibraryNotFound", "DriverNotLoaded")
}


@dataclass
class Device:
    """One fake GPU; `fail` maps a pynvml function name to the error it raises for this device."""

    name: str | bytes
    uuid: str
    util: int = 63
    used: int = 14 * GIB
    total: int = 24 * GIB
    temp: int = 66
    power_mw: int = 287_500
    limit_mw: int = 450_000
    compute: list[tuple[int, int | None]] = field(default_factory=list)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)


class FakeNvml:
    """Builds a `pynvml` module whose answers come from `devices`; counts every call."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices
        self.calls: Counter[str] = Counter()
        self.init_error: Exception | None = None
        self.handle_errors: dict[int, Exception] = {}

    def module(self) -> ModuleType:
        mod = ModuleType("pynvml")
        mod.NVMLError = NVMLError  # type: ignore[attr-defined]
        for name, cls in ERRORS.items():
            setattr(mod, f"NVMLError_{name}", cls)
        mod.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
        mod.nvmlInit = self._call("nvmlInit", self._init)  # type: ignore[attr-defined]
        mod.nvmlShutdown = self._call("nvmlShutdown", lambda: None)  # type: ignore[attr-defined]
        mod.nvmlDeviceGetCount = self._call("nvmlDeviceGetCount", lambda: len(self.devices))  # type: ignore[attr-defined]
        mod.nvmlDeviceGetHandleByIndex = self._call("nvmlDeviceGetHandleByIndex", self._handle)  # type: ignore[attr-defined]
        readers: dict[str, Any] = {
            "nvmlDeviceGetName": lambda d: d.name,
            "nvmlDeviceGetUUID": lambda d: d.uuid,
            "nvmlDeviceGetUtilizationRates": lambda d: SimpleNamespace(gpu=d.util, memory=10),
            "nvmlDeviceGetMemoryInfo": lambda d: SimpleNamespace(used=d.used, total=d.total, free=d.total - d.used),
            "nvmlDeviceGetTemperature": self._temperature,
            "nvmlDeviceGetPowerUsage": lambda d: d.power_mw,
            "nvmlDeviceGetEnforcedPowerLimit": lambda d: d.limit_mw,
            "nvmlDeviceGetComputeRunningProcesses": lambda d: _procs(d.compute),
            "nvmlDeviceGetGraphicsRunningProcesses": lambda d: _procs(d.graphics),
        }
        for name, read in readers.items():
            setattr(mod, name, self._call(name, self._device(name, read)))
        return mod

    def _call(self, name: str, fn: Any) -> Any:
        def counted(*args: Any) -> Any:
            self.calls[name] += 1
            return fn(*args)

        return counted

    def _init(self) -> None:
        if self.init_error is not None:
            raise self.init_error

    def _handle(self, index: int) -> Device:
        if index in self.handle_errors:
            raise self.handle_errors[index]
        return self.devices[index]

    def _device(self, name: str, read: Any) -> Any:
        def call(device: Device, *args: Any) -> Any:
            if name in device.fail:
                raise device.fail[name]
            return read(device, *args)

        return call

    @staticmethod
    def _temperature(device: Device, sensor: int) -> int:
        assert sensor == 0, "asked for a sensor other than NVML_TEMPERATURE_GPU"
        return device.temp


def _procs(entries: list[tuple[int, int | None]]) -> list[SimpleNamespace]:
    return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in entries]


def two_devices() -> list[Device]:
    return [
        Device(name="NVIDIA GeForce RTX 4090", uuid="GPU-aaaa"),
        # Older nvidia-ml-py returns bytes for names.
        Device(name=b"NVIDIA GeForce RTX 3060", uuid="GPU-bbbb", util=4, used=GIB, total=12 * GIB, temp=41,
               power_mw=18_000, limit_mw=170_000),
    ]  # fmt: skip


FULL = (
    GpuStats(0, "NVIDIA GeForce RTX 4090", "GPU-aaaa", 63.0, 14 * GIB, 24 * GIB, 66.0, 287.5, 450.0),
    GpuStats(1, "NVIDIA GeForce RTX 3060", "GPU-bbbb", 4.0, GIB, 12 * GIB, 41.0, 18.0, 170.0),
)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    nvml = FakeNvml(two_devices())
    monkeypatch.setitem(sys.modules, "pynvml", nvml.module())
    return nvml


def opened() -> NvmlSource:
    source = open_gpu_source()
    assert isinstance(source, NvmlSource), getattr(source, "reason", source)
    return source


def test_two_gpus_are_read_fully(fake: FakeNvml) -> None:
    source = opened()
    gpus, status = source.sample({})
    assert status is None
    assert gpus == FULL
    assert gpus[0].memory_free_bytes == 10 * GIB


def test_handles_are_fetched_once_and_again_when_the_count_changes(fake: FakeNvml) -> None:
    source = opened()
    for _ in range(3):
        source.sample({})
    assert fake.calls["nvmlDeviceGetHandleByIndex"] == 2
    assert fake.calls["nvmlDeviceGetName"] == 2  # names never change: read once
    fake.devices.append(Device(name="NVIDIA A100", uuid="GPU-cccc"))
    gpus, _ = source.sample({})
    assert [gpu.name for gpu in gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3060", "NVIDIA A100"]
    assert fake.calls["nvmlDeviceGetHandleByIndex"] == 5


@pytest.mark.parametrize(
    ("function", "error", "attribute"),
    [
        ("nvmlDeviceGetUtilizationRates", "NotSupported", "utilization_pct"),
        ("nvmlDeviceGetMemoryInfo", "NoPermission", "memory_used_bytes"),
        ("nvmlDeviceGetTemperature", "Unknown", "temperature_c"),
        ("nvmlDeviceGetPowerUsage", "NotSupported", "power_w"),
        ("nvmlDeviceGetEnforcedPowerLimit", "NotSupported", "power_limit_w"),
        ("nvmlDeviceGetName", "Unknown", "name"),
        ("nvmlDeviceGetUUID", "NotSupported", "uuid"),
    ],
)
def test_a_field_nvml_cannot_read_is_none_and_the_rest_is_filled(
    fake: FakeNvml, function: str, error: str, attribute: str
) -> None:
    fake.devices[1].fail[function] = ERRORS[error]()
    gpus, status = opened().sample({})
    assert status is None
    assert gpus[0] == FULL[0]
    changes: dict[str, Any] = {attribute: None}
    if attribute == "memory_used_bytes":
        changes["memory_total_bytes"] = None
    assert gpus[1] == replace(FULL[1], **changes)


def test_an_unexpected_exception_in_one_field_is_also_na(fake: FakeNvml) -> None:
    fake.devices[0].fail["nvmlDeviceGetPowerUsage"] = RuntimeError("ctypes went wrong")
    gpus, _ = opened().sample({})
    assert gpus[0] == replace(FULL[0], power_w=None)


def test_a_gpu_lost_mid_run_reports_the_loss_without_raising(fake: FakeNvml) -> None:
    source = opened()
    assert source.sample({})[0] == FULL
    fake.devices[1].fail["nvmlDeviceGetUtilizationRates"] = ERRORS["GpuIsLost"]()
    fake.devices[1].fail["nvmlDeviceGetMemoryInfo"] = ERRORS["GpuIsLost"]()
    gpus, status = source.sample({})
    assert status is None
    assert gpus[0] == FULL[0]
    assert gpus[1] == GpuStats(index=1, name="NVIDIA GeForce RTX 3060", uuid="GPU-bbbb", error="GPU is lost")
    # It gave up on that GPU at the first sign of loss instead of trying every field.
    assert fake.calls["nvmlDeviceGetMemoryInfo"] == 3


def test_a_device_handle_that_fails_gives_a_lost_gpu(fake: FakeNvml) -> None:
    fake.handle_errors[1] = ERRORS["GpuIsLost"]()
    gpus, status = opened().sample({})
    assert status is None
    assert gpus == (FULL[0], GpuStats(index=1, error="GPU is lost"))


def test_per_process_memory_is_deduplicated_and_attributed_to_our_run(fake: FakeNvml) -> None:
    ours = os.getpid()
    fake.devices[0].compute = [(ours, 2 * GIB), (NO_SUCH_PID, NOT_AVAILABLE)]
    fake.devices[0].graphics = [(ours, 2 * GIB), (NO_SUCH_PID + 1, None)]
    fake.devices[1].fail["nvmlDeviceGetComputeRunningProcesses"] = ERRORS["NotSupported"]()
    fake.devices[1].graphics = [(ours, GIB)]
    gpus, _ = opened().sample({ours: "run-7"})
    name = psutil.Process(ours).name()
    assert gpus[0].processes == (
        GpuProcess(pid=ours, used_bytes=2 * GIB, name=name, run_id="run-7"),
        GpuProcess(pid=NO_SUCH_PID, used_bytes=None, name=None, run_id=None),
        GpuProcess(pid=NO_SUCH_PID + 1, used_bytes=None, name=None, run_id=None),
    )
    assert gpus[1].processes == (GpuProcess(pid=ours, used_bytes=GIB, name=name, run_id="run-7"),)


def test_close_shuts_nvml_down_once(fake: FakeNvml) -> None:
    source = opened()
    source.sample({})
    source.close()
    source.close()
    assert fake.calls["nvmlShutdown"] == 1
    gpus, status = source.sample({})
    assert gpus == () and status
    assert fake.calls["nvmlDeviceGetCount"] == 2  # open + the one live sample; none after close


def test_without_nvidia_ml_py_on_a_machine_with_an_nvidia_gpu_the_reason_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    source = open_gpu_source(lambda: True)
    assert isinstance(source, NoGpuSource)
    assert source.reason == "GPU gauges need nvidia-ml-py: pip install 'llm-tui[nvidia]'"
    assert source.sample({}) == ((), source.reason)


def test_without_nvidia_ml_py_and_no_nvidia_gpu_it_says_there_is_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    source = open_gpu_source(lambda: False)
    assert isinstance(source, NoGpuSource) and source.reason == "no NVIDIA GPU found"


def test_the_device_check_looks_at_device_files_the_driver_and_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    import glob
    import shutil

    from engines.telemetry.nvml import nvidia_device_present

    monkeypatch.setattr(glob, "glob", lambda pattern: [])
    monkeypatch.setattr(os.path, "isdir", lambda path: False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert not nvidia_device_present()
    devices = {"/dev/nvidia[0-9]*": ["/dev/nvidia0"]}
    monkeypatch.setattr(glob, "glob", lambda pattern: devices.get(pattern, []))
    assert nvidia_device_present()
    monkeypatch.setattr(glob, "glob", lambda pattern: [])
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    assert nvidia_device_present()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("LibraryNotFound", "NVML library (libnvidia-ml) was not found"),
        ("DriverNotLoaded", "NVIDIA driver is not loaded"),
        ("NoPermission", "no permission"),
        ("Unknown", "NVML could not start: Unknown"),
    ],
)
def test_nvml_init_failing_gives_the_reason(fake: FakeNvml, error: str, expected: str) -> None:
    fake.init_error = ERRORS[error]()
    source = open_gpu_source()
    assert isinstance(source, NoGpuSource)
    assert expected in source.reason
    assert fake.calls["nvmlShutdown"] == 0  # never initialised, so nothing to shut down


def test_no_gpu_means_a_reason_and_nvml_shut_down(fake: FakeNvml) -> None:
    fake.devices.clear()
    source = open_gpu_source()
    assert isinstance(source, NoGpuSource)
    assert "no NVIDIA GPU" in source.reason
    assert fake.calls["nvmlShutdown"] == 1


def test_importing_the_module_does_not_import_pynvml() -> None:
    code = "import sys, engines.telemetry.nvml, cli.gauges; print('pynvml' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
