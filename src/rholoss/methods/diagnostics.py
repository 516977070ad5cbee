"""What training was spent on, recorded in one place: how often each pool point was trained on, and
how much of it was noise, relevant or (for sequences) how many tokens.

Every method reports each step's choice as a :class:`~rholoss.methods.base.StepOutcome`; the training
module hands it to :meth:`SelectionDiagnostics.record`, so no method counts anything itself. The counts
are device buffers (no host sync per step), saved in checkpoints (a resumed run reports the same
totals), summed over DDP ranks by :meth:`sum_over_ranks` and read by :meth:`results` for
``results.json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pytorch_lightning.strategies import Strategy
from torch import Tensor, nn

from rholoss.tasks import Task

if TYPE_CHECKING:
    from rholoss.data import SplitDataModule


class SelectionDiagnostics(nn.Module):
    """Counts over a pool of ``pool_size`` points.

    ``noise``: which points had their label corrupted (``[N]``) or, for sequences, which of their
    target tokens are noise (``[N, T]``); None for clean data. ``relevant``: which points belong to
    relevant classes (None: no relevance split). ``seq_len``: the tokens per point when points are
    sequences, so that tokens trained on are counted.
    """

    # Per-pool masks: reloaded from the datamodule, not checkpointed.
    noise: Tensor
    relevant: Tensor
    # Counts: checkpointed.
    selection_counts: Tensor
    num_selected_corrupted: Tensor
    num_selected_relevant: Tensor
    num_tokens_trained: Tensor
    num_noise_tokens_trained: Tensor

    def __init__(
        self, pool_size: int, noise: Tensor | None = None, relevant: Tensor | None = None, seq_len: int | None = None
    ) -> None:
        super().__init__()
        empty = torch.empty(0, dtype=torch.bool)
        if seq_len is None and noise is not None and noise.ndim == 2:
            seq_len = noise.shape[1]
        self.seq_len = seq_len
        self.register_buffer("noise", empty if noise is None else noise.to(torch.bool), persistent=False)
        self.register_buffer("relevant", empty if relevant is None else relevant.to(torch.bool), persistent=False)
        self.register_buffer("selection_counts", torch.zeros(pool_size, dtype=torch.long))
        for name in _TOTALS:
            self.register_buffer(name, torch.zeros((), dtype=torch.long))

    @classmethod
    def for_pool(cls, datamodule: SplitDataModule, task: Task) -> SelectionDiagnostics:
        """Counts over the datamodule's pool, with its noise and relevance masks."""
        return cls(
            len(datamodule.split("pool")),
            noise=datamodule.pool_noise(),
            relevant=datamodule.relevant,
            seq_len=datamodule.sequence_length if task.token_level else None,
        )

    @property
    def counts_tokens(self) -> bool:
        return self.seq_len is not None

    @property
    def token_noise(self) -> bool:
        return self.noise.ndim == 2 and self.noise.numel() > 0

    def record(self, trained: Tensor, token_mask: Tensor | None = None) -> None:
        """Count one step: ``trained`` the pool indices of the points trained on (repeats counted);
        ``token_mask`` (``[len(trained), T]``) the tokens of those sequences that the loss averaged
        over, None when every token of a trained sequence was."""
        self.selection_counts.index_add_(0, trained, torch.ones_like(trained))
        if self.counts_tokens:
            if token_mask is None:
                token_mask = torch.ones(len(trained), self.seq_len or 0, dtype=torch.bool, device=trained.device)
            self.num_tokens_trained += token_mask.sum()
            if self.token_noise:
                self.num_noise_tokens_trained += (self.noise[trained] & token_mask).sum()
        elif self.noise.numel():
            self.num_selected_corrupted += self.noise[trained].sum()
        if self.relevant.numel():
            self.num_selected_relevant += self.relevant[trained].sum()

    def running(self) -> dict[str, Tensor]:
        """Shares of everything trained on so far that was noise / relevant, as device tensors (logged
        every logging interval)."""
        total = self.selection_counts.sum()
        running = {}
        if self.token_noise:
            running["selection/noisy_fraction"] = self.num_noise_tokens_trained / self.num_tokens_trained.clamp_min(1)
        elif self.noise.numel():
            running["selection/noisy_fraction"] = self.num_selected_corrupted / total
        if self.relevant.numel():
            running["selection/relevant_fraction"] = self.num_selected_relevant / total
        return running

    def sum_over_ranks(self, strategy: Strategy, world_size: int) -> None:
        """Under DDP each rank counted only what it trained on: make every count global on every rank."""
        if world_size == 1:
            return
        for counts in self._counts():
            counts.copy_(strategy.reduce(counts.clone(), reduce_op="sum"))

    def _counts(self) -> list[Tensor]:
        return [self.selection_counts, *(getattr(self, name) for name in _TOTALS)]

    @property
    def noisy_selected_fraction(self) -> float | None:
        """Exact share of all selected points whose label was corrupted, or for sequences of all
        tokens trained on that were noise; None without noise."""
        if self.token_noise:
            return float(self.num_noise_tokens_trained) / max(int(self.num_tokens_trained), 1)
        if self.noise.numel() == 0:
            return None
        return float(self.num_selected_corrupted) / max(int(self.selection_counts.sum()), 1)

    @property
    def relevant_selected_fraction(self) -> float | None:
        """Exact share of all selected points from relevant classes; None without relevance split."""
        if self.relevant.numel() == 0:
            return None
        return float(self.num_selected_relevant) / max(int(self.selection_counts.sum()), 1)

    @property
    def tokens_trained(self) -> int | None:
        """Tokens whose loss entered a training step (sequences only; None otherwise)."""
        return int(self.num_tokens_trained) if self.counts_tokens else None

    def selection_count_summary(self) -> dict[str, Any]:
        """How often pool points were trained on: histogram as [[times selected, number of points], …]."""
        histogram = torch.bincount(self.selection_counts).cpu()
        return {
            "never_selected": int(histogram[0]) if len(histogram) else 0,
            "histogram": [[times, n] for times, n in enumerate(histogram.tolist()) if n],
        }

    def results(self) -> dict[str, Any]:
        """What ``results.json`` reports of the whole run."""
        return {
            "noisy_selected_fraction": self.noisy_selected_fraction,
            "tokens_trained": self.tokens_trained,
            "relevant_selected_fraction": self.relevant_selected_fraction,
            "selection_counts": self.selection_count_summary(),
        }


_TOTALS = ("num_selected_corrupted", "num_selected_relevant", "num_tokens_trained", "num_noise_tokens_trained")
