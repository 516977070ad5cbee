"""The time an optimizer step takes, without validation: what a selection method costs per step."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytorch_lightning as pl


class StepTimer(pl.Callback):
    """Records the wall-clock interval between consecutive training-step ends, leaving out every
    interval with a validation pass in it, so :attr:`median_seconds` is a step's cost (data,
    selection, forward, backward, optimizer) comparable between methods. On a GPU the intervals
    include waiting for queued work, which at steady state is the step's device time."""

    def __init__(self) -> None:
        self.intervals: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.intervals.append(now - self._last)
        self._last = now

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = None  # the next interval would include validation

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.intervals) if self.intervals else None
