"""Scores reused across steps (Loshchilov & Hutter's loss reuse; ``selection.stale_every``): a per-point
cache of what the scoring pass computes, re-filled by one pass over the whole pool every ``every``
steps, with the points trained on refreshing their own entries from the training forward pass for free.
No score is older than ``every`` steps, and a step then needs no scoring forward pass at all: cheaper
than per-step scoring when ``every`` exceeds an epoch (pool / n_B steps).

The cache holds the outputs for rules that need class logits, and one loss per point for the others
(small for any task, a sequence's included). It is a persistent buffer: a resumed run continues with
the scores it had.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from rholoss.selection.registry import SelectionRule
from rholoss.selection.step import map_inputs
from rholoss.tasks import Task


class StaleScores(nn.Module):
    """The cache of a pool's scores; ``keeps_outputs``: whole outputs (class-logit rules), else losses."""

    cache: Tensor

    def __init__(self, every: int, keeps_outputs: bool) -> None:
        super().__init__()
        self.every = every
        self.keeps_outputs = keeps_outputs
        self.register_buffer("cache", torch.empty(0))

    def allocate(self, pool_size: int, num_outputs: int) -> None:
        """Size the cache for the pool (zeros until the first refresh)."""
        width = (num_outputs,) if self.keeps_outputs else ()
        self.cache = torch.zeros(pool_size, *width, device=self.cache.device)

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def refresh(self, batches: Any, forward: Callable[[Any], Tensor], task: Task) -> None:
        """Re-score every pool point: ``batches`` the pool's ``(index, x, y)`` batches, ``forward`` the
        scoring forward pass."""
        device = self.cache.device
        for index, x, y in batches:
            outputs = forward(map_inputs(x, lambda t: t.to(device, non_blocking=True)))
            self.put(index.to(device), outputs, y.to(device), task)

    def put(self, index: Tensor, outputs: Tensor, y: Tensor, task: Task) -> None:
        if self.keeps_outputs:
            self.cache[index] = outputs.detach().float().reshape(len(index), -1)
        else:
            self.cache[index] = task.point_loss(outputs.detach(), y)


def check_stale_every(rule: SelectionRule, stale_every: int | None) -> None:
    if stale_every is None:
        return
    if not rule.needs_forward or rule.needs_mc_samples:
        raise ValueError(
            f"selection.stale_every applies to methods scored from one forward pass per point, not to "
            f"{rule.name!r}: remove it."
        )
    if stale_every < 1:
        raise ValueError(f"selection.stale_every must be a positive number of steps, got {stale_every}.")
