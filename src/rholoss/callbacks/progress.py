from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    """Lightning's bar with the optimizer step in front (runs here are budgeted in steps, not
    epochs), redrawn by the clock instead of every N steps.

    A redraw costs about as much as a small model's step, and reading the logged values reads them
    back from the device. So the training bar redraws at most every ``refresh_seconds`` (one clock
    read per step otherwise), and its values are read only when there can be new ones: after a
    logging interval (``trainer.log_every_n_steps``) or a validation.
    """

    def __init__(self, refresh_seconds: float = 0.5, process_position: int = 0, leave: bool = False) -> None:
        if refresh_seconds <= 0:
            raise ValueError(f"callbacks.progress_bar.refresh_seconds must be positive, got {refresh_seconds}.")
        # refresh_rate: Lightning's every-N-batches rule, kept for the short validation/test bars.
        super().__init__(refresh_rate=1, process_position=process_position, leave=leave)
        self.refresh_seconds = refresh_seconds
        self._next_redraw = 0.0
        self._done = 0
        self._validations = 0
        self._read_at: tuple[int, int] | None = None
        self._metrics: dict[str, Any] = {}

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._done = batch_idx + 1
        now = time.monotonic()
        if now >= self._next_redraw or self._done == self.train_progress_bar.total:
            self._next_redraw = now + self.refresh_seconds
            self._redraw(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._redraw(trainer, pl_module)  # the final step, whenever the last redraw was
        super().on_train_end(trainer, pl_module)

    def _redraw(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        bar = self.train_progress_bar
        if not bar.disable:
            bar.n = self._done
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validations += 1
        super().on_validation_end(trainer, pl_module)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        read_at = (trainer.global_step // max(trainer.log_every_n_steps, 1), self._validations)  # type: ignore[attr-defined]  # set on the Trainer by a Lightning connector: mypy cannot see it
        if read_at != self._read_at:
            self._read_at, self._metrics = read_at, super().get_metrics(trainer, pl_module)
        return {"step": trainer.global_step, **self._metrics}
