"""SupervisedModule: plain training of a model on a task's per-point loss; the IL model is one of these."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics import Metric

from rholoss.tasks import Task, as_task

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
Batch = tuple[Tensor, Any, Tensor]  # (index, x, y)


class SupervisedModule(pl.LightningModule):
    """Trains ``model`` on the mean of the task's per-point loss over every batch (cross-entropy for
    classification); logs the task's metric as ``val/<metric>`` and ``test/<metric>`` (``val/acc``
    for classification); its ``predict_step`` returns each point's index and loss, which is how
    irreducible losses are made.

    ``task``: a :class:`~rholoss.tasks.Task` sized for the data, or a class count (classification).
    """

    def __init__(self, model: nn.Module, task: Task | int, optimizer: OptimizerFactory | None = None) -> None:
        super().__init__()
        self.task = as_task(task)
        # The init arguments of this class or a subclass (selection settings), less the objects.
        self.save_hyperparameters(ignore=["model", "optimizer", "augment", "task", "selection", "diagnostics"])
        self.hparams.update(task=self.task.name, num_outputs=self.task.num_outputs)
        self.model = model
        self.optimizer_factory = optimizer or torch.optim.AdamW
        self.val_metric = self.task.new_metric()
        self.test_metric = self.task.new_metric()
        self._interval_sums: dict[str, Tensor] = {}
        self._interval_steps = 0

    def forward(self, x: Any) -> Tensor:
        return self.model(x)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        _, x, y = batch
        loss = self.task.point_loss(self(x), y).mean()
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
        interval = self.trainer.log_every_n_steps if self._trainer is not None else 1  # type: ignore[attr-defined]  # set on the Trainer by a Lightning connector: mypy cannot see it
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
        self.task.update_metric(self.val_metric, self(x), y)

    def on_validation_epoch_end(self) -> None:
        self._log_metric(self.val_metric, "val", prog_bar=True)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        _, x, y = batch
        self.task.update_metric(self.test_metric, self(x), y)

    def on_test_epoch_end(self) -> None:
        self._log_metric(self.test_metric, "test")

    def _log_metric(self, metric: Metric, stage: str, prog_bar: bool = False) -> None:
        """The split's value of the task's metric (synced over DDP ranks by the metric itself), with
        what derives from it (perplexity from a mean token loss)."""
        value = metric.compute()
        metric.reset()
        self.log(f"{stage}/{self.task.metric}", value, prog_bar=prog_bar)
        for name, derived in self.task.derived_metrics(value).items():
            self.log(f"{stage}/{name}", derived)

    def predict_step(self, batch: Batch, batch_idx: int) -> tuple[Tensor, Tensor]:
        index, x, y = batch
        outputs = self(x)
        # Sequences: the loss of every token (a per-token IL store); otherwise one loss per point.
        return index, self.task.token_loss(outputs, y) if self.task.token_level else self.task.point_loss(outputs, y)

    def configure_optimizers(self) -> Optimizer:
        return self.optimizer_factory(self.parameters())
