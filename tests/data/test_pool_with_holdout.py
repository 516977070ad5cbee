"""datamodule.pool_includes_holdout: the uniform baseline trains on every labelled point, the noisy pool
followed by the clean holdout, and the fingerprint says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from rholoss.data import SyntheticDataModule
from rholoss.data.datamodule import PoolDataModule, Sources
from rholoss.irreducible import StoreError
from rholoss.pipelines import train, train_irreducible
from tests.conftest import synthetic_config

SIZES = {"num_train": 400, "num_test": 100, "num_features": 6, "batch_size": 32, "eval_batch_size": 64}


def synthetic(**kwargs: object) -> SyntheticDataModule:
    datamodule = SyntheticDataModule(**{**SIZES, "label_noise": 0.2, **kwargs})  # type: ignore[arg-type]
    datamodule.setup()
    return datamodule


def inputs(datamodule: PoolDataModule, split: str) -> torch.Tensor:
    return torch.stack([datamodule.split(split)[i][1] for i in range(len(datamodule.split(split)))])


def test_the_pool_is_the_noisy_pool_then_the_clean_holdout() -> None:
    alone, both = synthetic(), synthetic(pool_includes_holdout=True)
    pool, holdout, joined = alone.split("pool"), alone.split("holdout"), both.split("pool")
    assert len(joined) == len(pool) + len(holdout) == 360
    # The pool part is exactly the pool without the option (the same points, the same noise) ...
    assert torch.equal(joined.labels[: len(pool)], pool.labels)
    assert torch.equal(both.corrupted[: len(pool)], alone.corrupted) and int(alone.corrupted.sum()) == 36
    # ... and the holdout part the holdout as it is: clean labels, never corrupted.
    assert torch.equal(joined.labels[len(pool) :], holdout.labels)
    assert torch.equal(holdout.labels, holdout.source.tensors[1][holdout.source_indices])
    assert not both.corrupted[len(pool) :].any() and both.corrupted.shape == (360,)
    assert torch.equal(inputs(both, "pool"), torch.cat([inputs(alone, "pool"), inputs(alone, "holdout")]))
    # The other splits are unchanged.
    for name in ("holdout", "val", "test"):
        assert torch.equal(both.split(name).source_indices, alone.split(name).source_indices)


def test_the_fingerprint_says_the_holdout_is_in_the_pool() -> None:
    alone, both = synthetic(), synthetic(pool_includes_holdout=True)
    assert "pool_includes_holdout" not in alone.fingerprint  # stores made before the option stay valid
    assert both.fingerprint["pool_includes_holdout"] is True
    assert both.fingerprint["pool_size"] == 360 and both.fingerprint["digest"] != alone.fingerprint["digest"]


class HeldOutSources(PoolDataModule):
    """A dataset family with its own holdout source (as QMNIST's extra digits): as tensors, or
    behind a plain map-style dataset."""

    name = "own_holdout"
    num_classes = 3
    input_shape = (4,)

    def __init__(self, as_tensors: bool, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.as_tensors = as_tensors

    def load_sources(self) -> Sources:
        generator = torch.Generator().manual_seed(0)

        def part(n: int, offset: float) -> tuple[Dataset, torch.Tensor]:
            x, y = torch.randn(n, 4, generator=generator) + offset, torch.arange(n) % 3
            return (TensorDataset(x, y) if self.as_tensors else Plain(x, y)), y

        (train, y_train), (holdout, y_holdout), (test, y_test) = part(120, 0.0), part(40, 100.0), part(30, 0.0)
        return Sources(train, y_train, test, y_test, holdout=holdout, holdout_targets=y_holdout)


class Plain(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


@pytest.mark.parametrize("as_tensors", [True, False])
def test_a_holdout_of_its_own_source_joins_the_pool(as_tensors: bool) -> None:
    settings = {"batch_size": 16, "val_size": 20, "label_noise": 0.25, "on_device": as_tensors}
    alone = HeldOutSources(as_tensors, **settings)
    both = HeldOutSources(as_tensors, pool_includes_holdout=True, **settings)
    alone.setup(), both.setup()
    assert len(both.split("pool")) == 100 + 40
    assert torch.equal(inputs(both, "pool"), torch.cat([inputs(alone, "pool"), inputs(alone, "holdout")]))
    assert torch.equal(both.split("pool").labels[100:], alone.split("holdout").labels)
    assert not both.corrupted[100:].any() and int(both.corrupted[:100].sum()) == 25
    # Served as the training split, holdout points included (on the device for tensors).
    served = torch.cat([index for index, _, _ in both.train_dataloader()])
    assert len(served) == 128 and int(served.max()) >= 100  # full batches of 16 from 140 points


def test_an_il_model_trained_on_the_holdout_is_refused() -> None:
    with pytest.raises(ValueError, match=r"the holdout is part of the pool, so a model trained on it would score"):
        SyntheticDataModule(**SIZES, pool_includes_holdout=True, train_split="holdout")  # type: ignore[arg-type]


def test_a_uniform_run_trains_on_pool_and_holdout(tmp_path: Path) -> None:
    results = train(
        synthetic_config(
            tmp_path, "train", "selection=uniform", "datamodule.pool_includes_holdout=true", "trainer.max_steps=30"
        )
    )
    assert results["dataset"]["pool_includes_holdout"] is True and results["dataset"]["pool_size"] == 3600
    counts = dict(results["selection_counts"]["histogram"])
    assert sum(times * n for times, n in counts.items()) == 30 * 32  # every step's n_b points, counted once
    # Half of the points are the clean holdout: the noisy share of 20% falls to about 10%.
    assert 0.05 < results["noisy_selected_fraction"] < 0.15


def test_rho_loss_on_every_point_takes_a_two_halves_store_and_refuses_one_without_the_holdout(tmp_path: Path) -> None:
    both = "datamodule.pool_includes_holdout=true"
    with pytest.raises(ValueError, match=r"pool_includes_holdout=true .*two_halves"):
        train_irreducible(synthetic_config(tmp_path, "train_irreducible", both, output="il_holdout"))
    pool_only = train_irreducible(
        synthetic_config(tmp_path, "train_irreducible", "trainer.max_steps=20", output="il_pool")
    )
    with pytest.raises(StoreError, match=r"pool_includes_holdout: store has None, this run has True"):
        train(synthetic_config(tmp_path, "train", both, f"irreducible.path={pool_only['il_store']}", output="x"))
    halves = train_irreducible(
        synthetic_config(
            tmp_path, "train_irreducible", both, "irreducible.strategy=two_halves", "trainer.max_steps=20", output="il"
        )
    )
    assert halves["dataset"]["pool_size"] == 3600
    results = train(synthetic_config(tmp_path, "train", both, "trainer.max_steps=5"))  # found in the cache
    assert results["il_store"] == halves["il_store"] and results["selection"] == "reducible_loss"
