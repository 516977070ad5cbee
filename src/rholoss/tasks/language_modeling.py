"""Causal language modelling: a point is a window of tokens, its loss the mean next-token loss.

The per-token losses are the task's own (``token_loss``): the IL store keeps them per token, and
token-level selection (RHO-1's selective language modelling) trains on a share of a batch's tokens.
Validation and test measure the mean token loss on clean held-out text (lower is better), with
perplexity beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric, Metric

from rholoss.tasks.base import Task, TaskMismatchError

if TYPE_CHECKING:
    from rholoss.data import SplitDataModule


class LanguageModeling(Task):
    """Outputs: logits ``[N, T, vocab]``; targets: the next token at each position ``[N, T]``."""

    name = "causal_lm"
    metric = "loss"
    mode = "min"
    class_logits = False
    metric_label = "loss"
    token_level = True

    def fit_to(self, datamodule: SplitDataModule) -> LanguageModeling:
        if getattr(datamodule, "target_kind", "class") != "tokens":
            raise TaskMismatchError(
                f"task=causal_lm needs windows of tokens with next-token targets, but {datamodule.name} has "
                f"{getattr(datamodule, 'target_kind', 'class')} targets: use a text corpus (datamodule=code_corpus) "
                "or task=classification / task=regression."
            )
        assert datamodule.num_classes is not None, "a datamodule knows its vocabulary size once it is set up"
        return LanguageModeling(datamodule.num_classes)

    def token_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        if outputs.ndim != 3 or outputs.shape[:2] != targets.shape:
            raise ValueError(
                f"causal_lm: the model's outputs {tuple(outputs.shape)} are not [N, T, vocab] logits for the "
                f"targets {tuple(targets.shape)}: use a causal language model (model=tiny_gpt2)."
            )
        losses = F.cross_entropy(outputs.float().flatten(0, 1), targets.flatten(), reduction="none")
        return losses.view(targets.shape)

    def point_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self.token_loss(outputs, targets).mean(1)

    def output_problem(self, outputs: Tensor, batch: int) -> str | None:
        if outputs.ndim == 3 and outputs.shape[0] == batch and outputs.shape[-1] == self.num_outputs:
            return None
        return (
            f"outputs shape {tuple(outputs.shape)} for {batch} windows, but task={self.name} needs next-token "
            f"logits ({batch}, seq_len, {self.num_outputs}) over the {self.num_outputs}-token vocabulary"
        )

    def new_metric(self) -> Metric:
        return MeanMetric()

    def update_metric(self, metric: Metric, outputs: Tensor, targets: Tensor) -> None:
        # Every token counts once: the split's mean token loss, however its windows fall into batches.
        metric.update(self.token_loss(outputs, targets))

    def model_arguments(self) -> dict[str, Any]:
        # Next-token prediction is classification over the vocabulary at every position.
        return {"num_classes": self.num_outputs, "num_outputs": self.num_outputs}

    def derived_metrics(self, value: Tensor) -> dict[str, Tensor]:
        return {"ppl": value.exp()}
