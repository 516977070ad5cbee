"""Seeded label noise on the training pool, with a record of exactly which points were corrupted."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class NoisyLabels:
    labels: Tensor
    corrupted: Tensor  # bool, True where labels differ from the clean ones


def uniform_label_noise(labels: Tensor, fraction: float, num_classes: int, seed: int) -> NoisyLabels:
    """Give ``round(fraction * N)`` points, chosen uniformly, a label drawn uniformly from the
    *other* classes.

    "Other" (never the true class) makes the recorded mask exact: every point marked corrupted has
    a wrong label and every other point has its clean label.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1], got {fraction}.")
    if fraction > 0 and num_classes < 2:
        raise ValueError("Label noise needs at least two classes.")
    labels = labels.long()
    generator = torch.Generator().manual_seed(seed)
    num_corrupted = int(round(fraction * len(labels)))
    chosen = torch.randperm(len(labels), generator=generator)[:num_corrupted]
    shift = torch.randint(1, max(num_classes, 2), (num_corrupted,), generator=generator)
    noisy = labels.clone()
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    corrupted = torch.zeros(len(labels), dtype=torch.bool)
    corrupted[chosen] = True
    return NoisyLabels(labels=noisy, corrupted=corrupted)
