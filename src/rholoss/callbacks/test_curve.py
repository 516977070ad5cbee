"""The test metric after every validation, for benchmarks that report the best and the time-to-target
test value of a run (the paper's tables read test accuracy over the run, not only at its end)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import move_data_to_device

from rholoss.atomic import atomic_write_json
from rholoss.modules.supervised import SupervisedModule
from rholoss.tasks import Task

FILE = "test_curve.json"


class TestCurve(pl.Callback):
    """After every validation, measures the task's test metric on the datamodule's test split and
    records ``[step, value, seconds]``; at the end of training writes ``test_curve.json`` into the run
    folder (``{"metric", "mode", "points", "test_seconds"}``).

    ``seconds`` is training time since fit started *without* the time these test passes took, so a
    run's clock reads as if this callback were absent (its validation passes stay in, as in the
    validation curve); ``test_seconds``: the time they took in all. Add it to a run with
    ``+callbacks.test_curve._target_=rholoss.callbacks.TestCurve``.
    """

    __test__ = False  # a callback, not a pytest test class

    def __init__(self) -> None:
        self.points: list[list[float]] = []
        self.test_seconds = 0.0
        self._start = time.perf_counter()
        self._offset = 0.0  # training seconds before this fit (a resumed run)
        self._spent = 0.0  # seconds of test passes in this fit

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        began = time.perf_counter()
        seconds = self._offset + began - self._start - self._spent
        self.points.append([trainer.global_step, self._measure(trainer, pl_module), round(seconds, 3)])
        took = time.perf_counter() - began
        self._spent += took
        self.test_seconds += took

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        task = _task(pl_module)
        metric = task.new_metric().to(pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        with torch.inference_mode():
            for batch in trainer.datamodule.test_dataloader():  # type: ignore[attr-defined]  # set on the Trainer by a Lightning connector: mypy cannot see it
                _, x, y = move_data_to_device(batch, pl_module.device)
                task.update_metric(metric, pl_module(x), y)
        pl_module.train(was_training)
        return float(metric.compute())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            task = _task(pl_module)
            record = {"metric": task.test_metric, "mode": task.mode, "points": self.points}
            atomic_write_json({**record, "test_seconds": round(self.test_seconds, 3)}, self.path(trainer))

    @staticmethod
    def path(trainer: pl.Trainer) -> Path:
        return Path(trainer.default_root_dir) / FILE

    def state_dict(self) -> dict[str, Any]:
        # A resumed run continues the curve, its seconds continuing from the last point.
        return {"points": self.points, "test_seconds": self.test_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.points = list(state_dict["points"])
        self.test_seconds = state_dict["test_seconds"]
        if self.points:
            self._offset = self.points[-1][2]


def _task(pl_module: pl.LightningModule) -> Task:
    if not isinstance(pl_module, SupervisedModule):
        raise TypeError(
            f"TestCurve measures a rholoss SupervisedModule's task metric, not a {type(pl_module).__name__}'s."
        )
    return pl_module.task
