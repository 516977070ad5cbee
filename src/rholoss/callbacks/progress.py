from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    """Lightning's bar with the optimizer step in front: runs here are budgeted in steps, not epochs."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        return {"step": trainer.global_step, **super().get_metrics(trainer, pl_module)}
