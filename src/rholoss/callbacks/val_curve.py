from __future__ import annotations

import time
from typing import Literal

import pytorch_lightning as pl


class ValCurve(pl.Callback):
    """Records ``[step, value of monitor, seconds since training started]`` after every validation,
    the curve from which steps (and time) to a target value are read; ``mode``: whether a higher
    (``max``, accuracy) or lower (``min``, a loss) value is better."""

    def __init__(self, monitor: str = "val/acc", mode: Literal["max", "min"] = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
        self.monitor = monitor
        self.mode = mode
        self.points: list[list[float]] = []
        self._start = time.perf_counter()
        self._offset = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        self.points.append([trainer.global_step, value, round(self._offset + time.perf_counter() - self._start, 3)])

    def state_dict(self) -> dict[str, list[list[float]]]:
        # A resumed run continues the curve (steps and seconds of the first part included).
        return {"points": self.points}

    def load_state_dict(self, state_dict: dict[str, list[list[float]]]) -> None:
        self.points = list(state_dict["points"])
        if self.points:  # seconds continue from the last point, not from zero
            self._offset = self.points[-1][2]

    @property
    def best(self) -> float | None:
        pick = max if self.mode == "max" else min
        return pick((p[1] for p in self.points), default=None)
