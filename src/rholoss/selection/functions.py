"""The selection functions of the paper and its baselines."""

from __future__ import annotations

import torch
from torch import Tensor

from rholoss.selection.registry import Selection, SelectionInput, register, register_score


@register("uniform", needs_logits=False)
def uniform(batch: SelectionInput, k: int) -> Selection:
    """n_b random points: the large batch is already a uniform draw in random order, so its first k are too."""
    return Selection(torch.arange(k, device=batch.targets.device))


@register_score("reducible_loss", needs_irreducible=True)
def reducible_loss(batch: SelectionInput) -> Tensor:
    """RHO-LOSS: current loss minus irreducible loss; learnable, worth learning, not yet learnt."""
    return batch.loss - batch.irreducible_loss


@register_score("loss")
def loss(batch: SelectionInput) -> Tensor:
    """Highest current training loss (Loshchilov & Hutter; Kawaguchi & Lu); also picks noise."""
    return batch.loss


@register_score("irreducible_loss", needs_irreducible=True)
def irreducible_loss(batch: SelectionInput) -> Tensor:
    """Lowest irreducible loss: points the holdout model finds easy ("easy first")."""
    return -batch.irreducible_loss


@register_score("gradnorm")
def gradnorm(batch: SelectionInput) -> Tensor:
    """Largest last-layer gradient-norm bound ||softmax(logits) - onehot(y)|| (Katharopoulos & Fleuret)."""
    probs = torch.softmax(batch.logits.float(), dim=-1)
    probs = probs - torch.nn.functional.one_hot(batch.targets, probs.shape[-1]).to(probs.dtype)
    return torch.linalg.vector_norm(probs, dim=-1)
