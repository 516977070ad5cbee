"""Classification: cross-entropy per example, accuracy on validation and test (the paper's task)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from rholoss.tasks.base import Task, TaskMismatchError

if TYPE_CHECKING:
    from rholoss.data import SplitDataModule


class Classification(Task):
    """``num_classes`` (= the output width) comes from the data; give it only to use the task on
    its own (e.g. in your own training loop)."""

    name = "classification"
    metric = "acc"
    mode = "max"
    metric_label = "accuracy"
    class_logits = True
    metric_is_fraction = True

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__(num_classes)

    @property
    def num_classes(self) -> int | None:
        return self.num_outputs

    def fit_to(self, datamodule: SplitDataModule) -> Classification:
        kind = getattr(datamodule, "target_kind", "class")
        num_classes = getattr(datamodule, "num_classes", None)
        if kind != "class" or not num_classes:
            fix = "task=causal_lm" if kind == "tokens" else "task=regression"
            what = "windows of tokens" if kind == "tokens" else "real-valued targets"
            raise TaskMismatchError(
                f"task=classification needs class labels, but {datamodule.name} has {what}: use {fix} (or a "
                "dataset with class labels)."
            )
        return Classification(int(num_classes))

    def point_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs.float(), targets, reduction="none")

    def new_metric(self) -> Metric:
        if self.num_classes is None:
            raise ValueError(
                "Classification needs num_classes for its accuracy metric: use Classification(num_classes)."
            )
        return MulticlassAccuracy(self.num_classes, average="micro")

    def model_arguments(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "num_outputs": self.num_classes}
