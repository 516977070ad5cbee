"""ClassifierModule: plain supervised training of a model; the IL model is one of these."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics.classification import MulticlassAccuracy

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
Batch = tuple[Tensor, Any, Tensor]  # (index, x, y)


class ClassifierModule(pl.LightningModule):
    """Trains ``model`` with cross-entropy on every batch; logs ``val/acc`` and ``test/acc``; its
    ``predict_step`` returns each point's index and loss, which is how irreducible losses are made."""

    def __init__(self, model: nn.Module, num_classes: int, optimizer: OptimizerFactory | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "augment"])
        self.model = model
        self.optimizer_factory = optimizer or torch.optim.AdamW
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self._interval_sums: dict[str, Tensor] = {}
        self._interval_steps = 0

    def forward(self, x: Any) -> Tensor:
        return self.model(x)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        _, x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log_interval_means({"train/loss": loss})
        return loss

    def log_interval_means(
        self, values: dict[str, Tensor], current: Callable[[], dict[str, Tensor]] | None = None
    ) -> None:
        """Sum ``values`` on the device each step; every ``log_every_n_steps`` steps, log their mean
        over the interval together with what ``current`` returns (running totals as they are now,
        computed only on the steps that log).

        One ``self.log`` call costs milliseconds of Python, as much as a small model's step, so the
        per-step path only adds tensors (no host sync) and Lightning sees one call per interval.
        """
        for name, value in values.items():
            self._interval_sums[name] = self._interval_sums.get(name, 0) + value.detach()
        self._interval_steps += 1
        interval = self.trainer.log_every_n_steps if self._trainer is not None else 1
        if (self.global_step + 1) % interval and self._interval_steps < interval:
            return
        means = {name: total / self._interval_steps for name, total in self._interval_sums.items()}
        # sync_dist: under DDP the logged values are means over the ranks (a no-op on one device).
        if "train/loss" in means:  # shown on the progress bar
            self.log("train/loss", means.pop("train/loss"), prog_bar=True, sync_dist=True)
        self.log_dict({**means, **(current() if current else {})}, sync_dist=True)
        self._interval_sums, self._interval_steps = {}, 0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The unlogged part of the current interval, so a resumed run logs the same means.
        checkpoint["interval_means"] = {"sums": self._interval_sums, "steps": self._interval_steps}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("interval_means", {"sums": {}, "steps": 0})
        self._interval_sums = {name: value.to(self.device) for name, value in state["sums"].items()}
        self._interval_steps = state["steps"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        _, x, y = batch
        self.val_acc(self(x), y)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        _, x, y = batch
        self.test_acc(self(x), y)
        self.log("test/acc", self.test_acc)

    def predict_step(self, batch: Batch, batch_idx: int) -> tuple[Tensor, Tensor]:
        index, x, y = batch
        return index, F.cross_entropy(self(x).float(), y, reduction="none")

    def configure_optimizers(self) -> Optimizer:
        return self.optimizer_factory(self.parameters())
