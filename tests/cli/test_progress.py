"""The CLI's progress line: what it says, and that it draws only on a terminal."""

from __future__ import annotations

import io

from cli.progress import ProgressLine, describe
from engines.downloads.pacing import TransferProgress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_describe_with_and_without_a_total() -> None:
    p = TransferProgress(bytes_done=1_100_000_000, total=2_500_000_000, speed_bps=38e6, eta_s=37.0)
    assert describe(p) == "[########............]  44%  1.1 GB/2.5 GB  38 MB/s  ETA 37 s"
    assert describe(TransferProgress(5_000_000, None, 1e6, None)) == "5 MB  1 MB/s"
    assert describe(TransferProgress(10, 10, 0.0, None)).startswith("[####################] 100%")
    assert "ETA 2.0 h" in describe(TransferProgress(0, 10**10, 1e6, 7200.0))


def test_draws_in_place_on_a_terminal_and_only_the_final_line_otherwise() -> None:
    tty = Tty()
    line = ProgressLine("m.gguf", tty)
    line(TransferProgress(1, 4, 1.0, 3.0))
    line(TransferProgress(2, 4, 1.0, 2.0))  # within the redraw interval: skipped
    line.finish("done")
    text = tty.getvalue()
    assert text.startswith("\rm.gguf: [#####...............]  25%") and text.count("\r") == 2
    assert text.endswith("\rm.gguf: done\n")

    piped = io.StringIO()
    line = ProgressLine("m.gguf", piped)
    line(TransferProgress(1, 4, 1.0, 3.0))
    line.finish("done")
    assert piped.getvalue() == "m.gguf: done\n"
