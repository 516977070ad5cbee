"""What the resume tests share: a callback that kills a run at a given step (a crash or a preempted
job), the Hydra overrides that add it to a run, a full / killed / resumed trio of runs, and the
weights a run's last checkpoint holds. The ``selected`` fixture (every step's selections) is in
conftest.py, where pytest finds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from tests.conftest import synthetic_config

# The step the killed runs fail after: mid-epoch in the resume tests' runs, after their checkpoint at step 7.
KILL_AT = 10
# 1800 pool points in large batches of 320: 5 steps per epoch, so steps 7 and KILL_AT (10) are mid-epoch.
STEPS, EVERY = 16, 7


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


def kill_and_resume(root: Path, stage: Any, config: str, *overrides: str) -> tuple[dict, dict]:
    """(uninterrupted result, resumed result) of the synthetic experiment run for ``STEPS`` steps with a
    checkpoint every ``EVERY``; the killed run's folder is ``root/killed``."""
    common = [f"trainer.max_steps={STEPS}", f"checkpoint.every_n_steps={EVERY}", "val_every_n_steps=5", *overrides]
    full = stage(synthetic_config(root, config, *common, output="full"))
    with pytest.raises(RuntimeError, match=f"killed at step {KILL_AT}"):
        stage(synthetic_config(root, config, *common, *kill_at(), output="killed"))
    resumed = stage(synthetic_config(root, config, *common, f"resume={root / 'killed'}", output="resumed"))
    return full, resumed
