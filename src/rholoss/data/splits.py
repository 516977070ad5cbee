"""Seeded, deterministic splits of a labelled source into pool / holdout / val."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Splits:
    """Indices into the source's training set for each split; the test set is separate."""

    pool: Tensor
    holdout: Tensor
    val: Tensor


def split_indices(num_points: int, val_size: int, holdout_fraction: float, seed: int) -> Splits:
    """Shuffle ``range(num_points)`` with ``seed``, take ``val_size`` for validation and split the
    rest into holdout (``holdout_fraction``) and pool.

    The permutation depends only on the arguments, so every stage and every run that uses the same
    settings sees the same pool and the IL store stays valid for it.
    """
    if not 0 <= val_size < num_points:
        raise ValueError(f"val_size must be in [0, {num_points}) for {num_points} points, got {val_size}.")
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}.")
    order = _seeded_order(num_points, seed)
    val, rest = order[:val_size], order[val_size:]
    num_holdout = round(holdout_fraction * len(rest))
    holdout, pool = rest[:num_holdout], rest[num_holdout:]
    if len(pool) == 0:
        raise ValueError(
            f"The pool is empty: {num_points} points minus val_size={val_size} and "
            f"holdout_fraction={holdout_fraction} leave nothing to train on."
        )
    return Splits(pool=pool.sort().values, holdout=holdout.sort().values, val=val.sort().values)


def seeded_fraction(num_points: int, fraction: float, seed: int) -> Tensor:
    """Sorted positions of a seeded ``fraction`` of ``range(num_points)``: the part of the holdout
    split an IL model trains on when ``irreducible.holdout_fraction`` < 1."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    return _seeded_order(num_points, seed)[: round(fraction * num_points)].sort().values


def pool_halves(pool_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Two disjoint seeded halves of the pool positions that cover it: the training sets of the two IL
    models of ``irreducible.strategy=two_halves``."""
    order = _seeded_order(pool_size, seed)
    return order[: pool_size // 2].sort().values, order[pool_size // 2 :].sort().values


def _seeded_order(num_points: int, seed: int) -> Tensor:
    return torch.randperm(num_points, generator=torch.Generator().manual_seed(seed))
