"""The selection functions of the paper and its baselines."""

from __future__ import annotations

import torch
from torch import Tensor

from rholoss.selection.registry import (
    Selection,
    SelectionInput,
    TokenSelectionInput,
    register,
    register_score,
    register_token_score,
)


@register("uniform", needs_forward=False)
def uniform(batch: SelectionInput, k: int) -> Selection:
    """n_b random points: the large batch is already a uniform draw in random order, so its first k are too."""
    return Selection(torch.arange(k, device=batch.targets.device), prefix=True)


@register_score("reducible_loss", needs_irreducible=True)
def reducible_loss(batch: SelectionInput) -> Tensor:
    """RHO-LOSS: current loss minus irreducible loss; learnable, worth learning, not yet learnt."""
    return batch.loss - batch.il


@register_score("loss")
def loss(batch: SelectionInput) -> Tensor:
    """Highest current training loss (Loshchilov & Hutter; Kawaguchi & Lu); also picks noise."""
    return batch.loss


@register_score("loss_stale", default_stale_every=200)
def loss_stale(batch: SelectionInput) -> Tensor:
    """Highest training loss as last seen: scores up to ``stale_every`` steps old (Loshchilov & Hutter's loss reuse)."""
    return batch.loss


@register("svp", needs_forward=False, needs_class_logits=True, needs_coreset=True)
def svp(batch: SelectionInput, k: int) -> Selection:
    """Selection-via-Proxy: uniform draws from a core-set of max proxy entropy, chosen once before training."""
    return uniform(batch, k)


@register_score("irreducible_loss", needs_forward=False, needs_irreducible=True)
def irreducible_loss(batch: SelectionInput) -> Tensor:
    """Lowest irreducible loss: points the holdout model finds easy ("easy first")."""
    return -batch.il


@register_score("gradnorm", needs_class_logits=True)
def gradnorm(batch: SelectionInput) -> Tensor:
    """Largest last-layer gradient-norm bound ||softmax(logits) - onehot(y)|| (Katharopoulos & Fleuret)."""
    probs = torch.softmax(batch.class_logits.float(), dim=-1)
    probs = probs - torch.nn.functional.one_hot(batch.targets, probs.shape[-1]).to(probs.dtype)
    return torch.linalg.vector_norm(probs, dim=-1)


@register("gradnorm_is", needs_class_logits=True, with_replacement=True)
def gradnorm_importance_sampling(batch: SelectionInput, k: int) -> Selection:
    """Importance sampling with replacement, p ∝ gradient-norm bound, weights 1/(n_B p) (Katharopoulos & Fleuret).

    E[mean(w * loss)] over the draw is the mean loss of the large batch, so the gradient is unbiased;
    the tiny floor on p keeps points with a zero bound drawable, so the estimator stays unbiased
    for them too.
    """
    norms = gradnorm(batch)
    probs = norms + 1e-8 * norms.sum().clamp_min(1e-8)
    probs = probs / probs.sum()
    positions = torch.multinomial(probs, k, replacement=True)
    return Selection(positions, weights=1.0 / (batch.size * probs[positions]), scores=norms)


@register_score("entropy", needs_class_logits=True)
def entropy(batch: SelectionInput) -> Tensor:
    """Highest predictive entropy of the current model (label-free, as in active learning)."""
    log_probs = torch.log_softmax(batch.class_logits.float(), dim=-1)
    return -(log_probs.exp() * log_probs).sum(-1)


@register_score("bald", needs_mc_samples=True)
def bald(batch: SelectionInput) -> Tensor:
    """Highest BALD score from MC dropout: entropy of the mean prediction minus mean entropy."""
    log_probs = torch.log_softmax(batch.mc_class_logits.float(), dim=-1)  # [samples, n_B, classes]
    mean_probs = log_probs.exp().mean(0)
    predictive = -(mean_probs * mean_probs.clamp_min(1e-12).log()).sum(-1)
    expected = -(log_probs.exp() * log_probs).sum(-1).mean(0)
    return predictive - expected


@register("reducible_loss_sampled", needs_irreducible=True)
def reducible_loss_sampled(batch: SelectionInput, k: int, temperature: float = 1.0) -> Selection:
    """Samples without replacement ∝ softmax(reducible loss / temperature) (Gumbel top-k)."""
    if temperature <= 0:
        raise ValueError(f"selection.temperature must be positive, got {temperature}.")
    scores = batch.loss - batch.il
    gumbel = -torch.log(-torch.log(torch.rand_like(scores).clamp_min(1e-20)))
    return Selection(torch.topk(scores / temperature + gumbel, k, sorted=False).indices, scores=scores)


@register_token_score("token_reducible_loss", needs_irreducible=True)
def token_reducible_loss(batch: TokenSelectionInput) -> Tensor:
    """RHO-1's selective language modelling: the batch's tokens with the highest loss minus reference (IL) loss."""
    return batch.token_loss - batch.il


@register_token_score("token_loss")
def token_loss(batch: TokenSelectionInput) -> Tensor:
    """The batch's tokens with the highest current loss (no reference model)."""
    return batch.token_loss
