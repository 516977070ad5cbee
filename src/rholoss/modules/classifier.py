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
        self.save_hyperparameters(ignore=["model", "optimizer"])
        self.model = model
        self.optimizer_factory = optimizer or torch.optim.AdamW
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: Any) -> Tensor:
        return self.model(x)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        _, x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

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
