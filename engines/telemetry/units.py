"""Byte counts as GPU and memory tools show them: binary units (MiB, GiB), the same on the gauges screen and in
`llm-tui gauges`."""

from __future__ import annotations

NA = "N/A"


def human_bytes(n: int | None) -> str:
    """Binary units: 312 MiB, 14.0 GiB; None is N/A."""
    if n is None:
        return NA
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if unit in ("TiB", "GiB") else f"{value:.0f} {unit}"
    return f"{n} B"


def used_of(used: int | None, total: int | None) -> str:
    """ "14.0/24.0 GiB" in the larger number's unit, or N/A when either is unknown."""
    if used is None or total is None:
        return NA
    unit, scale = ("GiB", 1 << 30) if total >= 1 << 30 else ("MiB", 1 << 20)
    digits = 1 if unit == "GiB" else 0
    return f"{used / scale:.{digits}f}/{total / scale:.{digits}f} {unit}"
