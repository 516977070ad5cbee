"""Selection schedules: the rule's share of the selected points follows its schedule, each step selects
what that share says (the rule's top points, the rest uniform), a share of 0 runs no scoring pass, and
a scheduled run through the pipeline records it."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from rholoss.methods.points import scored_size, with_uniform_rest
from rholoss.methods.schedule import SelectionSchedule
from rholoss.modules import OnlineBatchSelection
from rholoss.pipelines import train, train_irreducible
from rholoss.schedules import WarmupCosine
from rholoss.selection.registry import Selection
from tests.conftest import synthetic_config


def test_each_schedule_gives_its_share_at_the_steps_it_says() -> None:
    assert SelectionSchedule().share(500, 1000) == 1.0
    cosine = SelectionSchedule("cosine", start=1.0, end=0.0)
    assert [cosine.share(s, 100) for s in (0, 50, 100, 150)] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert cosine.share(25, 100) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    linear = SelectionSchedule("linear", start=0.8, end=0.2)
    assert [linear.share(s, 10) for s in (0, 5, 10)] == pytest.approx([0.8, 0.5, 0.2])
    off = SelectionSchedule("off_after", start=1.0, end=0.0, off_after=30)
    assert (off.share(29, None), off.share(30, None)) == (1.0, 0.0)
    follows = SelectionSchedule("lr", start=0.8)
    assert [follows.share(7, None, lr_share=r) for r in (1.0, 0.5, 0.0, 1.5)] == pytest.approx([0.8, 0.4, 0.0, 0.8])


def test_the_learning_rates_share_of_its_peak_is_1_during_warmup_and_without_a_schedule() -> None:
    module, _ = scheduled(0, 100, {"kind": "lr"})
    assert module.lr_share == 1.0  # no scheduler
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    scheduler = WarmupCosine(optimizer, total_steps=100, warmup=10)
    module._trainer.lr_scheduler_configs = [SimpleNamespace(scheduler=scheduler)]
    shares = {}
    for step in range(100):
        module._trainer.global_step = step
        shares[step] = module.lr_share
        optimizer.step()
        scheduler.step()
    assert all(shares[step] == 1.0 for step in range(10))  # warm-up: the rule chooses all of them
    assert shares[10] == pytest.approx(1.0) and shares[55] == pytest.approx(0.5) and shares[99] < 0.001


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kind": "exponential"}, "kind must be one of"),
        ({"kind": "cosine", "end": 1.5}, r"in \[0, 1\]"),
        ({"kind": "off_after"}, "off_after is the step"),
        ({"kind": "constant", "off_after": 3}, "off_after is the step"),
    ],
)
def test_bad_schedules_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SelectionSchedule(**settings)


def test_an_annealing_schedule_needs_a_budget() -> None:
    with pytest.raises(ValueError, match=r"set trainer\.max_steps"):
        SelectionSchedule("cosine").share(3, None)


class Counting(nn.Module):
    """logits = x, counting forward passes (a scoring pass and a training pass each count one) and
    recording each one's batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = 0
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        self.sizes.append(len(x))
        return x * self.scale


def scheduled(step: int, total: int, schedule: dict) -> tuple[OnlineBatchSelection, Counting]:
    model = Counting()
    module = OnlineBatchSelection(model, 2, selection="loss", percent_train=0.5, schedule=schedule)
    module.prepare_pool(8)
    module.log = lambda *args, **kw: None
    module._trainer = SimpleNamespace(global_step=step, max_steps=total, log_every_n_steps=1, optimizers=[])
    return module, model


# Positions 1, 3, 5, 7 have the highest loss (class 0's logit lowest).
X = torch.tensor([[3.0, 0.0], [-2.0, 2.0], [2.0, 0.0], [-3.0, 3.0], [1.0, 0.0], [-4.0, 4.0], [4.0, 0.0], [-1.0, 1.0]])
Y = torch.zeros(8, dtype=torch.long)


def trained(module: OnlineBatchSelection) -> set[int]:
    return set(module.diagnostics.selection_counts.nonzero().flatten().tolist())


def test_a_step_selects_what_the_share_says() -> None:
    schedule = {"kind": "cosine", "start": 1.0, "end": 0.0}
    full, model = scheduled(0, 100, schedule)  # share 1: the rule's top 4
    full.training_step((torch.arange(8), X, Y), 0)
    assert trained(full) == {1, 3, 5, 7} and model.calls == 2

    # Share 0.5: the rule scores the batch's first half (a uniform draw) and keeps its top 2 of those 4,
    # positions 3 and 1 (class-1 logits 3.0 and 2.0); the other 2 are the next, unscored points.
    half, model = scheduled(50, 100, schedule)
    half.training_step((torch.arange(8), X, Y), 0)
    assert trained(half) == {1, 3, 4, 5} and model.sizes == [4, 4]

    none, model = scheduled(100, 100, schedule)  # share 0: uniform, and no scoring pass
    none.training_step((torch.arange(8), X, Y), 0)
    assert trained(none) == {0, 1, 2, 3} and model.calls == 1


@pytest.mark.parametrize(
    ("size", "keep", "by_rule", "scored"), [(640, 64, 64, 640), (640, 64, 32, 320), (640, 64, 1, 10), (10, 3, 2, 7)]
)
def test_the_rule_scores_the_share_of_the_batch_it_keeps_the_same_fraction_of(
    size: int, keep: int, by_rule: int, scored: int
) -> None:
    assert scored_size(size, keep, by_rule) == scored


def test_where_too_few_unscored_points_are_left_the_rest_is_drawn_from_every_point_not_chosen() -> None:
    chosen = Selection(torch.tensor([0, 4]), weights=torch.tensor([2.0, 3.0]))
    for seed in range(10):
        torch.manual_seed(seed)
        picked = with_uniform_rest(chosen, 6, 3, unscored_from=5)  # one unscored point for three
        assert picked.positions[:2].tolist() == [0, 4] and len(set(picked.positions.tolist())) == 5
        assert picked.weights is not None and picked.weights.tolist() == [2.0, 3.0, 1.0, 1.0, 1.0]


def test_the_uniform_rest_never_repeats_a_chosen_point() -> None:
    for seed in range(20):
        torch.manual_seed(seed)
        module, _ = scheduled(50, 100, {"kind": "cosine"})
        module.training_step((torch.arange(8), X, Y), 0)
        assert module.diagnostics.selection_counts.max() == 1 and int(module.diagnostics.selection_counts.sum()) == 4


@pytest.mark.slow
def test_selection_switched_off_after_a_step_trains_uniformly_from_then_on(tmp_path: Path) -> None:
    train_irreducible(synthetic_config(tmp_path, "train_irreducible", output="il"))
    off = train(
        synthetic_config(
            tmp_path,
            "train",
            "selection=reducible_loss_annealed",
            "selection.schedule.kind=off_after",
            "+selection.schedule.off_after=1000",
            "selection.schedule.end=0.0",
            output="off",
        )
    )
    annealed = train(synthetic_config(tmp_path, "train", "selection=reducible_loss_annealed", output="annealed"))
    plain = train(synthetic_config(tmp_path, "train", "selection=reducible_loss_paper", output="plain"))
    assert off["selection_schedule"]["kind"] == "off_after" and annealed["selection_schedule"]["kind"] == "cosine"
    # off_after beyond the budget: RHO-LOSS throughout; annealed toward uniform: between it and uniform's 20%.
    assert off["noisy_selected_fraction"] == plain["noisy_selected_fraction"]
    assert plain["noisy_selected_fraction"] < annealed["noisy_selected_fraction"] < 0.2


@pytest.mark.slow
def test_the_default_share_follows_the_learning_rate(tmp_path: Path, selected: list[Tensor]) -> None:
    """selection=reducible_loss selects as the paper at a constant rate and anneals with a cosine one:
    step for step the same points as the schedules that say so outright."""
    train_irreducible(synthetic_config(tmp_path, "train_irreducible", output="il"))
    runs = {}
    for name, overrides in {
        "default_constant": ["selection=reducible_loss", "scheduler=constant"],
        "paper_constant": ["selection=reducible_loss_paper", "scheduler=constant"],
        "default_cosine": ["selection=reducible_loss", "scheduler=cosine"],
        "annealed_cosine": ["selection=reducible_loss_annealed", "scheduler=cosine"],
    }.items():
        selected.clear()
        train(synthetic_config(tmp_path, "train", *overrides, "trainer.max_steps=40", output=name))
        runs[name] = list(selected)
    for follows, says in (("default_constant", "paper_constant"), ("default_cosine", "annealed_cosine")):
        assert all(torch.equal(a, b) for a, b in zip(runs[follows], runs[says], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(runs["default_constant"], runs["default_cosine"], strict=True))
