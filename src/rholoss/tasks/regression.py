"""Regression: squared error per example (mean over target dimensions); MSE on validation and test."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor
from torchmetrics import MeanMetric, Metric

from rholoss.tasks.base import Task, TaskMismatchError

if TYPE_CHECKING:
    from rholoss.data import SplitDataModule


class Regression(Task):
    """Real-valued targets ``[N]`` or ``[N, D]``; the model's outputs must hold ``D`` values per
    point (``[N, D]``; ``[N]`` or ``[N, 1]`` for ``D = 1``)."""

    name = "regression"
    metric = "mse"
    mode = "min"
    metric_label = "MSE"
    class_logits = False

    def fit_to(self, datamodule: SplitDataModule) -> Regression:
        if getattr(datamodule, "target_kind", "class") != "real":
            raise TaskMismatchError(
                f"task=regression needs real-valued targets, but {datamodule.name} has class labels: use "
                "task=classification (or a dataset with real-valued targets)."
            )
        return Regression(int(datamodule.target_dim))

    def point_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        n = targets.shape[0]
        outputs, targets = outputs.float().reshape(n, -1), targets.float().reshape(n, -1)
        if outputs.shape != targets.shape:
            raise ValueError(
                f"Regression: the model gives {outputs.shape[1]} values per point but the targets have "
                f"{targets.shape[1]}: build the model with num_outputs={targets.shape[1]}."
            )
        return (outputs - targets).square().mean(1)

    def output_problem(self, outputs: Tensor, batch: int) -> str | None:
        if self.num_outputs == 1 and tuple(outputs.shape) == (batch,):
            return None  # one value per point, without the trailing dimension
        return super().output_problem(outputs, batch)

    def new_metric(self) -> Metric:
        # The mean of per-point squared errors over the split: its MSE.
        return MeanMetric()

    def update_metric(self, metric: Metric, outputs: Tensor, targets: Tensor) -> None:
        metric.update(self.point_loss(outputs, targets))
