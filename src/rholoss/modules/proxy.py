"""The proxy model of Selection-via-Proxy (Coleman et al., 2020): trained briefly on the pool, it
ranks every pool point by predictive entropy, and the most uncertain points form the core-set."""

from __future__ import annotations

import torch
from torch import Tensor

from rholoss.modules.supervised import Batch, SupervisedModule
from rholoss.selection.functions import entropy
from rholoss.selection.registry import SelectionInput


class EntropyProxy(SupervisedModule):
    """A SupervisedModule (classification) whose ``predict_step`` gives each point's predictive entropy."""

    def predict_step(self, batch: Batch, batch_idx: int) -> tuple[Tensor, Tensor]:
        index, x, y = batch
        return index, entropy(SelectionInput(targets=y, logits=self(x)))


def max_entropy_coreset(entropies: Tensor, fraction: float) -> Tensor:
    """Sorted positions of the ``fraction`` of points with the highest entropy (at least one)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"selection.coreset_fraction must be in (0, 1], got {fraction}.")
    size = max(1, round(fraction * len(entropies)))
    return torch.topk(entropies, size, sorted=False).indices.sort().values
