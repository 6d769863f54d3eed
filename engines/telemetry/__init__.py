"""Telemetry: GPUs through NVML, the host through psutil, sampled in one Snapshot; a poller thread keeps history."""
