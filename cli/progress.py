"""One terminal line of transfer progress for the CLI: bar, percent, bytes, speed, ETA, redrawn in place.

Drawn only on a terminal (scripts reading stderr get the final line alone), at most five times a second.
Plain text on purpose: `engines/` never imports rich or textual.
"""

from __future__ import annotations

import shutil
import time
from typing import TextIO

from engines.catalog.fit import human_bytes, human_duration
from engines.downloads.pacing import TransferProgress

BAR = 20
REDRAW_S = 0.2


def describe(p: TransferProgress, width: int = BAR) -> str:
    """`[#########...........]  45%  1.1 GB/2.5 GB  38 MB/s  ETA 37 s` (no bar when the total is unknown)."""
    speed = f"{human_bytes(int(p.speed_bps))}/s"
    if not p.total:
        return f"{human_bytes(p.bytes_done)}  {speed}"
    fraction = min(1.0, p.bytes_done / p.total)
    filled = int(fraction * width)
    bar = "#" * filled + "." * (width - filled)
    eta = f"  ETA {human_duration(p.eta_s)}" if p.eta_s is not None and p.speed_bps > 0 else ""
    return f"[{bar}] {fraction:4.0%}  {human_bytes(p.bytes_done)}/{human_bytes(p.total)}  {speed}{eta}"


class ProgressLine:
    """Callable as a transfer's `progress`; `finish(text)` replaces the line with a final message."""

    def __init__(self, label: str, out: TextIO) -> None:
        self.label = label
        self.out = out
        self.live = out.isatty()
        self.last = 0.0
        self.drawn = False

    def __call__(self, p: TransferProgress) -> None:
        now = time.monotonic()
        if not self.live or now - self.last < REDRAW_S:
            return
        self.last = now
        width = shutil.get_terminal_size((100, 24)).columns - 1
        line = f"{self.label}: {describe(p)}"
        self.out.write("\r" + line[:width].ljust(width))
        self.out.flush()
        self.drawn = True

    def finish(self, text: str) -> None:
        if self.drawn:
            self.out.write("\r")
        self.out.write(f"{self.label}: {text}\n")
        self.out.flush()
