"""What the resume tests share: a callback that kills a run at a given step (a crash or a preempted
job), the Hydra overrides that add it to a run, and the weights a run's last checkpoint holds. The
``selected`` fixture (every step's selections) is in conftest.py, where pytest finds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

# The step the killed runs fail after: mid-epoch in the resume tests' runs, after their checkpoint at step 7.
KILL_AT = 10


class KillAt(pl.Callback):
    """Stands in for a crash or a preempted job: fails after ``step`` optimizer steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"killed at step {self.step}")


def kill_at(step: int = KILL_AT) -> list[str]:
    """Overrides that add :class:`KillAt` to a run's callbacks (Hydra instantiates it by its dotted path)."""
    return [f"+callbacks.kill._target_={KillAt.__module__}.KillAt", f"+callbacks.kill.step={step}"]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The model weights in ``run_dir``'s last checkpoint."""
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


class KillScoringAt(pl.Callback):
    """Stands in for a job preempted while the IL stage scores its pool: fails at the end of the
    ``shard``-th prediction that scored anything, before that shard is saved."""

    def __init__(self, shard: int) -> None:
        self.shard, self.scored = shard, 0

    def on_predict_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.in_shard = True

    def on_predict_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.in_shard = False

    def on_predict_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.scored += self.in_shard
        if self.scored == self.shard:
            raise RuntimeError(f"killed while scoring shard {self.shard}")


def kill_scoring_at(shard: int) -> list[str]:
    """Overrides that add :class:`KillScoringAt` to an IL run's callbacks."""
    return [f"+callbacks.kill._target_={KillScoringAt.__module__}.KillScoringAt", f"+callbacks.kill.shard={shard}"]
