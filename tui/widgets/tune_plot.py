"""The Tune screen's plots (textual-plotext): train and validation loss over steps, and the learning rate."""

from __future__ import annotations

import math
from collections.abc import Sequence

from textual_plotext import PlotextPlot

from engines.tune.types import StepDone, Validated

TICKS = 5


def step_ticks(steps: Sequence[int], count: int = TICKS) -> list[float]:
    """Round steps (1, 2 or 5 times a power of ten apart, at most `count` of them) over the range, and the first
    step when it is not next to one (plotext alone would label a step axis 10.8, 20.5…)."""
    if not steps:
        return []
    low, high = min(steps), max(steps)
    wanted = (high - low) / max(1, count - 1)
    step = next(m * 10**e for e in range(12) for m in (1, 2, 5) if m * 10**e >= wanted)
    ticks = list(range(math.ceil(low / step) * step, high + 1, step))
    if not ticks or ticks[0] - low >= step / 2:
        ticks.insert(0, low)
    return [float(t) for t in ticks]


def lr_scale(rates: Sequence[float]) -> int:
    """The power of ten the learning rates are shown in (2e-4 … 1e-5 → -4: the axis reads 2.0 … 0.1)."""
    top = max((abs(r) for r in rates), default=0.0)
    return math.floor(math.log10(top)) if top > 0 else 0


class LossPlot(PlotextPlot):
    """Train loss (a line over every step) and validation loss (a point at each validation) against the step."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.steps: tuple[StepDone, ...] = ()
        self.validations: tuple[Validated, ...] = ()

    def on_mount(self) -> None:
        self._draw()

    def show(self, steps: Sequence[StepDone], validations: Sequence[Validated]) -> None:
        """Draw this curve instead (the whole of it: a resumed run's steps continue the same line)."""
        self.steps, self.validations = tuple(steps), tuple(validations)
        self._draw()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss")
        if self.steps:
            plt.plot([s.step for s in self.steps], [s.loss for s in self.steps], label="train", marker="braille")
        if self.validations:
            plt.scatter(
                [v.step for v in self.validations], [v.val_loss for v in self.validations], label="val", marker="dot"
            )
        xs = [s.step for s in self.steps] + [v.step for v in self.validations]
        ticks = step_ticks(xs)
        plt.xticks(ticks, [f"{t:.0f}" for t in ticks])
        if not xs:
            plt.yticks([])
        self.refresh()


class LearningRatePlot(PlotextPlot):
    """The learning rate the schedule gave each step, in units of a power of ten named in the title."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.steps: tuple[StepDone, ...] = ()

    def on_mount(self) -> None:
        self._draw()

    def show(self, steps: Sequence[StepDone]) -> None:
        self.steps = tuple(steps)
        self._draw()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        rates = [s.learning_rate for s in self.steps]
        scale = lr_scale(rates)
        plt.title(f"learning rate ×1e{scale}" if scale else "learning rate")
        if self.steps:
            plt.plot([s.step for s in self.steps], [r / 10**scale for r in rates], marker="braille")
        ticks = step_ticks([s.step for s in self.steps], 3)
        plt.xticks(ticks, [f"{t:.0f}" for t in ticks])
        if not self.steps:
            plt.yticks([])
        self.refresh()
