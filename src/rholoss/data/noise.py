"""Seeded label noise on the training pool, with a record of exactly which points were corrupted.

Class labels get another class; real-valued targets (regression) get the target of another pool
point, i.e. a value drawn from the target distribution itself.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    num_corrupted = round(fraction * len(labels))
    chosen = torch.randperm(len(labels), generator=generator)[:num_corrupted]
    shift = torch.randint(1, max(num_classes, 2), (num_corrupted,), generator=generator)
    noisy = labels.clone()
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    corrupted = torch.zeros(len(labels), dtype=torch.bool)
    corrupted[chosen] = True
    return NoisyLabels(labels=noisy, corrupted=corrupted)


# The release's MNIST pairs (source class -> label it is flipped to): 3 -> 5, 9 -> 7, 4 -> 9. The paper
# (after Rolnick et al., 2017) flips the most confused classes of a trained model's confusion matrix.
PAPER_MNIST_PAIRS: tuple[tuple[int, int], ...] = ((3, 5), (9, 7), (4, 9))


def structured_label_noise(
    labels: Tensor, pairs: Sequence[tuple[int, int]], probability: float, num_classes: int, seed: int
) -> NoisyLabels:
    """For each pair ``(source, target)``, relabel ``round(probability * n_source)`` of the points
    whose clean label is ``source``, chosen uniformly, as ``target``.

    Every flip reads the *clean* labels, so chained pairs (4 -> 9 and 9 -> 7) never flip a point
    twice and the corrupted mask is exactly the set of relabelled points.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"label_noise (the structured flip probability) must be in [0, 1], got {probability}.")
    pairs = [(int(source), int(target)) for source, target in pairs]
    _check_pairs(pairs, num_classes)
    labels = labels.long()
    generator = torch.Generator().manual_seed(seed)
    noisy = labels.clone()
    corrupted = torch.zeros(len(labels), dtype=torch.bool)
    for source, target in pairs:
        members = torch.nonzero(labels == source).flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[: round(probability * len(members))]]
        noisy[chosen] = target
        corrupted[chosen] = True
    return NoisyLabels(labels=noisy, corrupted=corrupted)


def _check_pairs(pairs: list[tuple[int, int]], num_classes: int) -> None:
    if not pairs:
        raise ValueError("Structured label noise needs at least one (source, target) pair in datamodule.noise_pairs.")
    sources = [source for source, _ in pairs]
    for source, target in pairs:
        if not (0 <= source < num_classes and 0 <= target < num_classes):
            raise ValueError(
                f"noise pair ({source}, {target}) names a class outside 0..{num_classes - 1}: this dataset has "
                f"{num_classes} classes, so set datamodule.noise_pairs for it."
            )
        if source == target:
            raise ValueError(f"noise pair ({source}, {target}) flips a class to itself: drop it.")
    if len(set(sources)) != len(sources):
        raise ValueError(f"Each class may be flipped by one pair only; noise_pairs {pairs} repeat a source class.")


def most_confused_pairs(confusion: Tensor, num_pairs: int) -> list[tuple[int, int]]:
    """The ``num_pairs`` largest off-diagonal entries ``(true, predicted)`` of a confusion matrix
    (rows: true class), each true class used once: pairs for :func:`structured_label_noise` on a
    dataset other than MNIST."""
    counts = confusion.double().clone()
    counts.fill_diagonal_(-1.0)
    pairs: list[tuple[int, int]] = []
    for flat in torch.argsort(counts.flatten(), descending=True).tolist():
        source, target = divmod(flat, counts.shape[1])
        if counts[source, target] <= 0 or len(pairs) == num_pairs:
            break
        if source not in {s for s, _ in pairs}:
            pairs.append((source, target))
    return pairs


def resampled_target_noise(targets: Tensor, fraction: float, seed: int) -> NoisyLabels:
    """Give ``round(fraction * N)`` points, chosen uniformly, the target of another pool point drawn
    uniformly: corrupted targets follow the clean targets' distribution, so nothing but a model of
    the inputs can tell them apart. The source is never the point itself, so the mask is exact for
    targets that differ between points."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1], got {fraction}.")
    n = len(targets)
    if fraction > 0 and n < 2:
        raise ValueError("Target noise needs at least two points to draw replacement targets from.")
    generator = torch.Generator().manual_seed(seed)
    num_corrupted = round(fraction * n)
    chosen = torch.randperm(n, generator=generator)[:num_corrupted]
    sources = (chosen + torch.randint(1, max(n, 2), (num_corrupted,), generator=generator)) % n
    noisy = targets.clone()
    noisy[chosen] = targets[sources]
    corrupted = torch.zeros(n, dtype=torch.bool)
    corrupted[chosen] = True
    return NoisyLabels(labels=noisy, corrupted=corrupted)


def apply_label_noise(
    labels: Tensor, noise_type: str, amount: float, num_classes: int, pairs: Sequence[tuple[int, int]] | None, seed: int
) -> NoisyLabels:
    """``uniform``: ``amount`` is the corrupted fraction; ``structured``: the flip probability of each
    pair's source class (``pairs`` None: the paper's MNIST pairs). Real-valued targets take
    ``uniform`` only, as :func:`resampled_target_noise`."""
    if labels.is_floating_point():
        if noise_type != "uniform":
            raise ValueError(
                f"noise_type={noise_type!r} flips classes, but these targets are real-valued: use noise_type=uniform "
                "(corrupted targets are replaced by other points' targets)."
            )
        return resampled_target_noise(labels, amount, seed)
    if noise_type == "uniform":
        return uniform_label_noise(labels, amount, num_classes, seed)
    if noise_type == "structured":
        return structured_label_noise(labels, PAPER_MNIST_PAIRS if pairs is None else pairs, amount, num_classes, seed)
    raise ValueError(f"noise_type must be 'uniform' or 'structured', got {noise_type!r}.")
