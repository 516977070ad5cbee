"""Structured label noise (the paper's most-confused-pairs scheme) and the noise switch."""

from __future__ import annotations

import pytest
import torch

from rholoss.data.noise import PAPER_MNIST_PAIRS, apply_label_noise, most_confused_pairs, structured_label_noise


def _clean(n: int = 2000, classes: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


def test_structured_noise_flips_exactly_half_of_each_source_class() -> None:
    clean = _clean()
    noisy = structured_label_noise(clean, PAPER_MNIST_PAIRS, 0.5, num_classes=10, seed=0)
    for source, target in PAPER_MNIST_PAIRS:
        members = clean == source
        flipped = noisy.corrupted & members
        assert int(flipped.sum()) == round(0.5 * int(members.sum()))
        assert bool((noisy.labels[flipped] == target).all())
        assert bool((noisy.labels[members & ~flipped] == source).all())
    # the mask is exact: corrupted <=> the label changed; no other class is touched
    assert torch.equal(noisy.corrupted, noisy.labels != clean)
    untouched = ~torch.isin(clean, torch.tensor([s for s, _ in PAPER_MNIST_PAIRS]))
    assert not bool(noisy.corrupted[untouched].any())


def test_chained_pairs_read_the_clean_labels() -> None:
    """4 -> 9 and 9 -> 7: a 4 relabelled 9 must not go on to 7, and all 9s keep the 9 -> 7 rate."""
    clean = torch.tensor([4] * 100 + [9] * 100)
    noisy = structured_label_noise(clean, [(4, 9), (9, 7)], 1.0, num_classes=10, seed=0)
    assert torch.equal(noisy.labels, torch.tensor([9] * 100 + [7] * 100))
    assert bool(noisy.corrupted.all())


def test_paper_pairs_are_the_releases_mnist_pairs() -> None:
    assert PAPER_MNIST_PAIRS == ((3, 5), (9, 7), (4, 9))


def test_structured_noise_is_seeded_and_random_within_a_class() -> None:
    clean = _clean()
    a, b = (structured_label_noise(clean, PAPER_MNIST_PAIRS, 0.5, 10, seed=3) for _ in range(2))
    assert torch.equal(a.labels, b.labels) and torch.equal(a.corrupted, b.corrupted)
    c = structured_label_noise(clean, PAPER_MNIST_PAIRS, 0.5, 10, seed=4)
    assert not torch.equal(a.corrupted, c.corrupted) and int(a.corrupted.sum()) == int(c.corrupted.sum())
    threes = torch.nonzero(clean == 3).flatten()
    flipped = a.corrupted[threes].float()
    assert 0.3 < float(flipped[: len(threes) // 2].mean()) < 0.7  # not simply the first half of the class


def test_zero_probability_changes_nothing() -> None:
    clean = _clean(100)
    noisy = structured_label_noise(clean, PAPER_MNIST_PAIRS, 0.0, 10, seed=0)
    assert torch.equal(noisy.labels, clean) and not bool(noisy.corrupted.any())


@pytest.mark.parametrize(
    ("pairs", "classes", "message"),
    [
        ([(3, 5)], 4, r"outside 0\.\.3.*datamodule.noise_pairs"),
        ([(2, 2)], 10, "flips a class to itself"),
        ([(2, 5), (2, 7)], 10, "repeat a source class"),
        ([], 10, "at least one"),
        ([(-1, 2)], 10, "outside"),
    ],
)
def test_bad_pairs_are_clear_errors(pairs: list, classes: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        structured_label_noise(torch.zeros(5, dtype=torch.long), pairs, 0.5, classes, seed=0)


def test_bad_probability_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="structured flip probability"):
        structured_label_noise(torch.zeros(5, dtype=torch.long), PAPER_MNIST_PAIRS, 1.5, 10, seed=0)


def test_most_confused_pairs_reads_the_confusion_matrix() -> None:
    confusion = torch.eye(4) * 100
    confusion[2, 1] = 9  # true 2 predicted as 1: the most confused
    confusion[0, 3] = 7
    confusion[2, 3] = 5  # 2 again: skipped, each source class flips once
    confusion[3, 0] = 1
    assert most_confused_pairs(confusion, 2) == [(2, 1), (0, 3)]
    assert most_confused_pairs(confusion, 5) == [(2, 1), (0, 3), (3, 0)]  # zeros are never pairs
    clean = torch.arange(4).repeat(50)
    noisy = structured_label_noise(clean, most_confused_pairs(confusion, 2), 0.5, 4, seed=0)
    assert int(noisy.corrupted.sum()) == 50


def test_apply_label_noise_dispatches_on_the_type() -> None:
    clean = _clean()
    uniform = apply_label_noise(clean, "uniform", 0.1, 10, None, seed=0)
    assert int(uniform.corrupted.sum()) == 200
    structured = apply_label_noise(clean, "structured", 0.5, 10, None, seed=0)
    assert torch.equal(structured.labels, structured_label_noise(clean, PAPER_MNIST_PAIRS, 0.5, 10, seed=0).labels)
    custom = apply_label_noise(clean, "structured", 1.0, 10, [(0, 1)], seed=0)
    assert torch.equal(custom.corrupted, clean == 0)
    with pytest.raises(ValueError, match="noise_type must be"):
        apply_label_noise(clean, "pairwise", 0.1, 10, None, seed=0)
