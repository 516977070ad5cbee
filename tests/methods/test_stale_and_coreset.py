"""Score reuse (``stale_every``, ``loss_stale``) and the SVP core-set: known answers at module level,
then end to end on synthetic data."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rholoss.data import SyntheticDataModule
from rholoss.methods import max_entropy_coreset
from rholoss.modules import OnlineBatchSelection
from rholoss.pipelines import train
from tests.conftest import synthetic_config

CLASSES, POOL = 3, 10


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(CLASSES, CLASSES)


def pool_batches(x: Tensor, y: Tensor, size: int = 4) -> list[tuple[Tensor, Tensor, Tensor]]:
    index = torch.arange(len(y))
    return [(index[i : i + size], x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def stale_module(selection: str = "entropy", stale_every: int | None = 3, step: int = 0, **kwargs: Any):
    """A module at global step ``step`` whose datamodule serves a fixed pool of POOL points."""
    torch.manual_seed(1)
    x, y = torch.randn(POOL, CLASSES), torch.randint(0, CLASSES, (POOL,))
    kwargs.setdefault("precision", "32")  # the cache is compared with float32 forward passes
    module = OnlineBatchSelection(
        linear_model(), CLASSES, selection=selection, percent_train=0.5, stale_every=stale_every, **kwargs
    )
    module.prepare_pool(POOL)
    module.log = lambda *args, **kw: None
    module._trainer = SimpleNamespace(
        global_step=step,
        log_every_n_steps=1,
        optimizers=[],
        datamodule=SimpleNamespace(pool_dataloader=lambda: pool_batches(x, y)),
    )
    return module, x, y


def test_refresh_fills_the_cache_with_the_current_logits_of_every_pool_point() -> None:
    module, x, _ = stale_module()
    module.method.refresh_scores(module)
    with torch.no_grad():
        assert torch.allclose(module.method.stale.cache, module.model(x))


def test_scores_come_from_the_cache_not_from_a_forward_pass() -> None:
    module, x, y = stale_module()
    module.method.refresh_scores(module)
    cached = module.method.stale.cache.clone()
    with torch.no_grad():
        module.model.weight.mul_(-3.0)  # the model moves on; the cache does not
    index = torch.tensor([7, 2, 5, 0])
    scored = module.method.score(module, index, x[index], y[index])
    assert torch.equal(scored.logits, cached[index])
    assert not torch.allclose(scored.logits, module.model(x[index]))


def test_refresh_runs_on_schedule_and_trained_points_refresh_their_own_scores() -> None:
    module, x, y = stale_module(step=1)  # not a multiple of stale_every=3: no pool pass
    module.method.stale.cache.fill_(0.0)
    index = torch.tensor([4, 1, 8, 3])
    with torch.no_grad():
        fresh = module.model(x[index])
    module.training_step((index, x[index], y[index]), 0)
    trained = module.method.stale.cache[index].abs().sum(-1) > 0
    assert int(trained.sum()) == 2  # percent_train 0.5 of 4: exactly the two trained points
    assert torch.allclose(module.method.stale.cache[index][trained], fresh[trained])
    assert int((module.method.stale.cache.abs().sum(-1) > 0).sum()) == 2  # nothing else was scored

    module.trainer.global_step = 3  # a multiple of stale_every: the whole pool is re-scored first
    module.training_step((index, x[index], y[index]), 0)
    assert bool((module.method.stale.cache.abs().sum(-1) > 0).all())


def test_loss_methods_cache_one_loss_per_point_not_the_outputs() -> None:
    """loss and loss_stale need no class logits: the cache holds each point's loss (any task, a
    sequence's included), and scores read it without a forward pass."""
    module, x, y = stale_module("loss_stale")
    assert module.method.stale.cache.shape == (POOL,)
    module.method.refresh_scores(module)
    with torch.no_grad():
        losses = torch.nn.functional.cross_entropy(module.model(x), y, reduction="none")
        assert torch.allclose(module.method.stale.cache, losses)
        module.model.weight.mul_(-3.0)
    index = torch.tensor([7, 2, 5, 0])
    scored = module.method.score(module, index, x[index], y[index])
    assert scored.logits is None and torch.equal(scored.loss, losses[index])


def test_loss_stale_defaults_to_reusing_scores_and_loss_does_not() -> None:
    assert stale_module("loss_stale", stale_every=None)[0].method.stale_every == 200
    assert stale_module("loss", stale_every=None)[0].method.stale_every is None
    assert stale_module("entropy", stale_every=7)[0].method.stale_every == 7


@pytest.mark.parametrize(
    ("selection", "stale_every", "message"),
    [
        ("uniform", 5, "stale_every applies to methods scored"),
        ("irreducible_loss", 5, "stale_every applies to methods scored"),
        ("loss", 0, "positive number of steps"),
    ],
)
def test_stale_every_is_refused_where_it_means_nothing(selection: str, stale_every: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OnlineBatchSelection(linear_model(), CLASSES, selection=selection, stale_every=stale_every)


def test_max_entropy_coreset_keeps_the_most_uncertain_points_in_order() -> None:
    entropies = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.0, 0.7])
    assert max_entropy_coreset(entropies, 0.5).tolist() == [1, 3, 5]
    assert max_entropy_coreset(entropies, 1.0).tolist() == list(range(6))
    with pytest.raises(ValueError, match="coreset_fraction"):
        max_entropy_coreset(entropies, 0.0)


@pytest.mark.parametrize("on_device", [True, False])
def test_restricted_pool_serves_only_its_points_with_their_pool_indices(on_device: bool) -> None:
    datamodule = SyntheticDataModule(num_train=600, val_size=100, batch_size=20, on_device=on_device)
    datamodule.setup()
    positions = torch.arange(0, 250, 5)
    datamodule.restrict_training(positions)
    torch.manual_seed(0)
    batches = list(datamodule.train_dataloader())
    served = torch.cat([index for index, _, _ in batches])
    assert len(batches) == len(positions) // 20
    assert set(served.tolist()) <= set(positions.tolist()) and len(set(served.tolist())) == len(served)
    pool = datamodule.split("pool")
    for index, x, y in batches:
        assert torch.equal(y, pool.labels[index])
        assert torch.equal(x, torch.stack([pool[int(i)][1] for i in index]))


def test_restricted_pool_gives_the_same_batches_on_both_paths() -> None:
    orders = []
    for on_device in (True, False):
        torch.manual_seed(3)  # setup draws the shuffling seed
        datamodule = SyntheticDataModule(num_train=600, val_size=100, batch_size=20, on_device=on_device)
        datamodule.setup()
        datamodule.restrict_training(torch.arange(100, 200))
        orders.append(torch.cat([index for index, _, _ in datamodule.train_dataloader()]))
    assert torch.equal(*orders)


@pytest.mark.parametrize(
    ("positions", "message"),
    [
        (torch.tensor([], dtype=torch.long), "non-empty"),
        (torch.tensor([0, 10_000]), "must lie in"),
        (torch.arange(5), "fewer than one batch"),
    ],
)
def test_restrict_training_refuses_bad_positions(positions: Tensor, message: str) -> None:
    datamodule = SyntheticDataModule(num_train=600, val_size=100, batch_size=20)
    datamodule.setup()
    with pytest.raises(ValueError, match=message):
        datamodule.restrict_training(positions)


def test_svp_trains_only_on_its_core_set(tmp_path: Path) -> None:
    result = train(
        synthetic_config(
            tmp_path, "train", "selection=svp", "selection.proxy_steps=20", "trainer.max_steps=30", output="svp"
        )
    )
    pool = result["dataset"]["pool_size"]
    assert result["coreset"]["size"] == pool // 2
    assert result["coreset"]["proxy_steps"] == 20
    # 30 steps of 32 points from a core-set of 900 touch at most 900 points: the rest are never drawn.
    assert result["selection_counts"]["never_selected"] >= pool - result["coreset"]["size"]
    assert result["batch_size"] == 32 and result["steps"] == 30


def test_loss_stale_runs_end_to_end_and_records_its_staleness(tmp_path: Path) -> None:
    result = train(
        synthetic_config(
            tmp_path, "train", "selection=loss_stale", "selection.stale_every=7", "trainer.max_steps=15", output="stale"
        )
    )
    assert (result["selection"], result["stale_every"], result["steps"]) == ("loss_stale", 7, 15)
