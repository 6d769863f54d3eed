"""The machine on the gauges screen: CPU (total and per core) with history, RAM, swap, this process, disk."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content

from engines.telemetry.snapshot import HostStats
from tui.widgets.gauges import NA, GaugeRow, Readout, gauge_line, human_bytes, label, pct, ratio, ticks, used_of


def cores_line(per_cpu: Sequence[float]) -> Content:
    """ "cores ▂▁▁▃█▁▁▁  (8)": one mini bar per core, so a single pegged core stands out."""
    if not per_cpu:
        return Content.assemble(label("cores"), NA)
    return Content.assemble(label("cores"), ticks(per_cpu), (f" {len(per_cpu)}", "$text-muted"))


def swap_line(host: HostStats) -> Content:
    """Swap as a bar, or "none" on a machine without swap."""
    if host.swap_total_bytes == 0:
        return Content.assemble(label("swap"), ("none", "$text-muted"))
    fraction = ratio(host.swap_used_bytes, host.swap_total_bytes)
    return gauge_line("swap", fraction, used_of(host.swap_used_bytes, host.swap_total_bytes))


def process_line(host: HostStats) -> Content:
    """This app's own footprint: resident memory and threads."""
    threads = NA if host.process_threads is None else str(host.process_threads)
    return Content.assemble(
        label("app"),
        ("RSS ", "$text-muted"),
        human_bytes(host.process_rss_bytes),
        ("   threads ", "$text-muted"),
        threads,
    )


def disk_line(host: HostStats) -> Content:
    """Free space where models are stored, with the path it was measured at."""
    free, total = host.disk_free_bytes, host.disk_total_bytes
    used = None if free is None or total is None else total - free
    value = NA if free is None else f"{human_bytes(free)} free"
    return Content.assemble(
        gauge_line("disk", ratio(used, total), value),
        ("  ", ""),
        (host.disk_path or NA, "$text-muted"),
    )


class HostPanel(Vertical):
    """CPU, memory, this process and the models disk, one compact line each."""

    DEFAULT_CSS = """
    HostPanel {
        height: auto;
    }
    """

    def __init__(self) -> None:
        super().__init__(id="host", classes="gauge-panel")
        self.border_title = "Host"
        self.cpu = GaugeRow(100.0, classes="host-cpu")
        self.cores = Readout(classes="host-cores")
        self.ram = GaugeRow(1.0, classes="host-ram")
        self.swap = Readout(classes="host-swap")
        self.process = Readout(classes="host-process")
        self.disk = Readout(classes="host-disk")

    def compose(self) -> ComposeResult:
        yield self.cpu
        yield self.cores
        yield self.ram
        yield self.swap
        yield self.process
        yield self.disk

    def show(self, host: HostStats, cpu: Sequence[float], ram: Sequence[float]) -> None:
        """Show one sample with the CPU and RAM history (oldest first); unchanged parts are not repainted."""
        self.cpu.show(gauge_line("cpu", ratio(host.cpu_pct, 100), pct(host.cpu_pct)), cpu)
        self.cores.show(cores_line(host.per_cpu_pct))
        fraction = ratio(host.ram_used_bytes, host.ram_total_bytes)
        used = used_of(host.ram_used_bytes, host.ram_total_bytes)
        self.ram.show(gauge_line("ram", fraction, used), ram, top=host.ram_total_bytes)
        self.swap.show(swap_line(host))
        self.process.show(process_line(host))
        self.disk.show(disk_line(host))
