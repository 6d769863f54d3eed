"""NVIDIA GPUs through NVML (nvidia-ml-py, imported lazily): every field N/A-safe, a lost GPU never raises."""

from __future__ import annotations

import functools
import glob
import importlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, TypeVar

from engines.telemetry.snapshot import GpuProcess, GpuStats
from engines.telemetry.sources import GpuSource, NoGpuSource

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'llm-tui[nvidia]'"
NO_GPU = "no NVIDIA GPU found"
LOST = "GPU is lost"
NOT_AVAILABLE = (1 << 64) - 1
"""NVML_VALUE_NOT_AVAILABLE as an unsigned long long: what usedGpuMemory holds when the driver cannot tell."""

T = TypeVar("T")


def nvidia_device_present() -> bool:
    """Whether this machine shows an NVIDIA GPU or driver without NVML: device files, the driver's /proc entry,
    or nvidia-smi on PATH (cheap checks: no library is loaded, no process started)."""
    return bool(
        glob.glob("/dev/nvidia[0-9]*")
        or os.path.isdir("/proc/driver/nvidia/gpus")
        or shutil.which("nvidia-smi") is not None
    )


def open_gpu_source(device_present: Callable[[], bool] = nvidia_device_present) -> GpuSource:
    """An NvmlSource, or a NoGpuSource that says why there is none (no GPU, library missing, no driver).

    Without nvidia-ml-py, `device_present` decides between "no NVIDIA GPU" and the extra to install.
    """
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        if not device_present():
            return NoGpuSource(NO_GPU)
        return NoGpuSource(f"GPU gauges need nvidia-ml-py: {INSTALL_HINT}")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError, or an OSError from a broken library: no GPU source, the app goes on
        return NoGpuSource(_init_reason(nvml, exc))
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except Exception as exc:
        _shutdown(nvml)
        return NoGpuSource(f"NVML could not count the GPUs: {exc}")
    if count <= 0:
        _shutdown(nvml)
        return NoGpuSource(f"{NO_GPU} (the NVIDIA driver is loaded but reports no device)")
    return NvmlSource(nvml)


def _init_reason(nvml: ModuleType, exc: BaseException) -> str:
    if _is(nvml, exc, "LibraryNotFound"):
        return "no NVIDIA driver: the NVML library (libnvidia-ml) was not found"
    if _is(nvml, exc, "DriverNotLoaded"):
        return "the NVIDIA driver is not loaded (no NVIDIA GPU, or the kernel module is missing)"
    if _is(nvml, exc, "NoPermission"):
        return "no permission to use NVML (the NVIDIA device files are not accessible to this user)"
    return f"NVML could not start: {exc or type(exc).__name__}"


def _is(nvml: ModuleType, exc: BaseException, name: str) -> bool:
    """Whether `exc` is pynvml's NVMLError_<name> (classes pynvml generates from its error codes)."""
    cls = getattr(nvml, f"NVMLError_{name}", None)
    return isinstance(cls, type) and isinstance(exc, cls)


def _shutdown(nvml: ModuleType) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        log.debug("nvmlShutdown failed", exc_info=True)


class _GpuLost(Exception):
    """Raised inside one GPU's read to abandon it: the rest of its fields are N/A."""


class NvmlSource:
    """Samples every NVIDIA GPU: utilization, memory, temperature, power and per-process memory.

    Takes an initialised pynvml module; device handles are fetched once and fetched again when the
    device count changes. Thread-safe; `close()` shuts NVML down once.
    """

    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml
        self._lock = threading.Lock()
        self._handles: list[Any] = []
        """Per index: the device handle, or None when it could not be had (that GPU reads as lost)."""
        self._static: dict[int, tuple[str | None, str | None]] = {}
        """Per index: (name, uuid), read once so a GPU that is lost later keeps its name."""
        self._closed = False

    def sample(self, pids: Mapping[int, str]) -> tuple[tuple[GpuStats, ...], str | None]:
        with self._lock:
            if self._closed:
                return (), "NVML has been shut down"
            try:
                count = int(self._nvml.nvmlDeviceGetCount())
            except Exception as exc:
                if not self._handles:
                    return (), f"NVML could not count the GPUs: {exc}"
                count = len(self._handles)  # keep what we had; each GPU then says what is wrong with it
            if count != len(self._handles):
                self._read_handles(count)
            return tuple(self._read_gpu(i, handle, pids) for i, handle in enumerate(self._handles)), None

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._handles = []
                _shutdown(self._nvml)

    def _read_handles(self, count: int) -> None:
        nvml = self._nvml
        self._handles = []
        self._static = {}
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except Exception as exc:
                log.debug("no handle for GPU %d: %s", index, exc)
                handle = None
            self._handles.append(handle)

    def _read_gpu(self, index: int, handle: Any, pids: Mapping[int, str]) -> GpuStats:
        nvml = self._nvml
        name, uuid = self._static.get(index, (None, None))
        if handle is None:
            return GpuStats(index=index, name=name, uuid=uuid, error=LOST)
        try:
            if name is None or uuid is None:  # read once (they never change), again only if that failed
                name = name or _field(nvml, lambda: _text(nvml.nvmlDeviceGetName(handle)))
                uuid = uuid or _field(nvml, lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
                self._static[index] = (name, uuid)
            utilization = _field(nvml, lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
            memory = _field(nvml, lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
            temperature = _field(nvml, lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)))
            power = _field(nvml, lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
            limit = _field(nvml, lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0)
            processes = self._processes(handle, pids)
        except _GpuLost:
            return GpuStats(index=index, name=name, uuid=uuid, error=LOST)
        return GpuStats(
            index=index,
            name=name,
            uuid=uuid,
            utilization_pct=utilization,
            memory_used_bytes=None if memory is None else _int(getattr(memory, "used", None)),
            memory_total_bytes=None if memory is None else _int(getattr(memory, "total", None)),
            temperature_c=temperature,
            power_w=power,
            power_limit_w=limit,
            processes=processes,
        )

    def _processes(self, handle: Any, pids: Mapping[int, str]) -> tuple[GpuProcess, ...]:
        """Compute and graphics processes, one entry per pid (a process can be in both lists)."""
        nvml = self._nvml
        used: dict[int, int | None] = {}
        for function in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            for info in _field(nvml, functools.partial(_call_list, nvml, function, handle)) or ():
                pid = _int(getattr(info, "pid", None))
                if pid is None:
                    continue
                memory = _int(getattr(info, "usedGpuMemory", None))
                previous = used.get(pid)
                used[pid] = memory if previous is None else max(previous, memory or 0)
        return tuple(
            GpuProcess(pid=pid, used_bytes=memory, name=_process_name(pid), run_id=pids.get(pid))
            for pid, memory in sorted(used.items())
        )


def _field(nvml: ModuleType, read: Callable[[], T]) -> T | None:
    """One NVML read: its value, None when the GPU cannot say (NotSupported, NoPermission, ...).

    A lost GPU raises _GpuLost, so the caller gives up on that GPU instead of waiting on every field.
    """
    try:
        return read()
    except Exception as exc:
        if _is(nvml, exc, "GpuIsLost"):
            raise _GpuLost from exc
        return None


def _call_list(nvml: ModuleType, function: str, handle: Any) -> list[Any]:
    return list(getattr(nvml, function)(handle))


def _text(value: str | bytes) -> str:
    # Older nvidia-ml-py versions return bytes for names and UUIDs.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _int(value: object) -> int | None:
    if not isinstance(value, int) or value < 0 or value >= NOT_AVAILABLE:
        return None
    return value


def _process_name(pid: int) -> str | None:
    import psutil

    try:
        name = psutil.Process(pid).name()
    except Exception:  # gone, another user's, or another PID namespace (a container): N/A
        return None
    return str(name) if name else None
