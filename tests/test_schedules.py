"""Learning-rate schedules: the curve each one follows, the budget it decays over (steps or epochs),
a torch scheduler by ``_target_``, exact resuming, and refusals of what cannot work."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from rholoss.analysis import read_logged
from rholoss.callbacks import CheckpointError
from rholoss.config_check import UnknownConfigKeyError
from rholoss.pipelines import train, train_irreducible
from rholoss.schedules import Constant, WarmupCosine, build_scheduler
from tests.conftest import compose_config, synthetic_config
from tests.resuming import EVERY, STEPS, kill_and_resume, weights

LR = 1e-3  # configs/optimizer/adamw.yaml


def lr_curve(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The learning rate each of ``steps`` optimizer steps trains at, then the one after the last."""
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return [*rates, scheduler.get_last_lr()[0]]


def sgd() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)


def from_config(name: str, *overrides: str, budget: float = 100) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler ``scheduler=<name>`` makes, as the modules build it."""
    factory = instantiate(compose_config("train", [f"scheduler={name}", *overrides]).scheduler)
    return build_scheduler(factory, sgd(), lambda: budget)


def test_constant_keeps_the_optimizers_rate() -> None:
    scheduler = from_config("constant")
    assert isinstance(scheduler, Constant)
    assert lr_curve(scheduler, 100) == [LR] * 101


def test_cosine_starts_at_the_peak_and_ends_at_zero_at_the_budget() -> None:
    rates = lr_curve(from_config("cosine"), 100)
    assert rates[0] == LR
    assert rates[50] == pytest.approx(LR / 2)
    assert rates[100] == 0.0  # the rate after the last step of the budget
    assert rates[99] == pytest.approx(LR * 0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert all(a > b for a, b in itertools.pairwise(rates))


@pytest.mark.parametrize(("warmup", "steps"), [(10, 10), (0.2, 20)])
def test_warmup_cosine_rises_linearly_to_the_peak_then_decays_to_zero(warmup: float, steps: int) -> None:
    scheduler = from_config("warmup_cosine", f"scheduler.warmup={warmup}")
    assert isinstance(scheduler, WarmupCosine) and scheduler.warmup_steps == steps
    rates = lr_curve(scheduler, 100)
    assert rates[0] == pytest.approx(LR / (steps + 1))  # no step at zero
    assert rates[: steps + 1] == pytest.approx([LR * (s + 1) / (steps + 1) for s in range(steps + 1)])
    assert rates[steps] == pytest.approx(LR)  # the warm-up's end is the peak
    assert rates[(steps + 100) // 2] == pytest.approx(LR / 2)
    assert rates[100] == 0.0


def test_the_lm_experiments_warm_up_then_decay() -> None:
    for name in ("train", "train_irreducible"):
        for experiment in ("code_lm_irred", "code_lm_main"):
            cfg = compose_config(name, [f"experiment={experiment}"])
            assert cfg.scheduler._target_ == "rholoss.schedules.WarmupCosine" and cfg.scheduler.warmup > 0


def logged_lr(run: Path) -> dict[int, float]:
    return dict(read_logged(run, "train/lr"))


@pytest.mark.parametrize("scheduler", ["constant", "cosine", "warmup_cosine"])
def test_each_schedule_is_followed_logged_and_recorded(tmp_path: Path, scheduler: str) -> None:
    steps = 20
    extra = ["scheduler.warmup=4"] if scheduler == "warmup_cosine" else []
    results = train(
        synthetic_config(
            tmp_path,
            "train",
            "selection=uniform",
            f"scheduler={scheduler}",
            *extra,
            f"trainer.max_steps={steps}",
            "trainer.log_every_n_steps=1",
        )
    )
    expected = lr_curve(from_config(scheduler, *extra, budget=steps), steps)
    logged = logged_lr(tmp_path / "run")
    assert sorted(logged) == list(range(steps))  # one value a step at log_every_n_steps=1
    assert [logged[s] for s in range(steps)] == pytest.approx(expected[:steps])
    schedule = results["lr_schedule"]
    assert schedule["scheduler"].endswith({"constant": "Constant"}.get(scheduler, "WarmupCosine"))
    assert schedule["steps_taken"] == steps and schedule["base_lr"] == LR
    assert schedule["final_lr"] == (LR if scheduler == "constant" else 0.0)
    if scheduler != "constant":
        assert schedule["total_steps"] == steps
        assert schedule["warmup_steps"] == (4 if scheduler == "warmup_cosine" else 0)
    # The checkpoint holds the schedule's state.
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["lr_schedulers"]
    assert saved[0]["last_epoch"] == steps


def test_lr_is_logged_only_at_the_logging_interval(tmp_path: Path) -> None:
    train(
        synthetic_config(
            tmp_path,
            "train",
            "selection=uniform",
            "scheduler=cosine",
            "trainer.max_steps=20",
            "trainer.log_every_n_steps=5",
        )
    )
    logged = logged_lr(tmp_path / "run")
    assert sorted(logged) == [4, 9, 14, 19]
    assert logged[4] == pytest.approx(LR * 0.5 * (1 + math.cos(math.pi * 4 / 20)))


def test_a_torch_scheduler_by_target_trains_and_one_taking_total_steps_gets_the_budget(tmp_path: Path) -> None:
    step_lr = train(
        synthetic_config(
            tmp_path,
            "train",
            "selection=uniform",
            "scheduler._target_=torch.optim.lr_scheduler.StepLR",
            "+scheduler.step_size=5",
            "+scheduler.gamma=0.5",
            "trainer.max_steps=12",
            "trainer.log_every_n_steps=1",
            output="step_lr",
        )
    )
    logged = logged_lr(tmp_path / "step_lr")
    assert [logged[s] for s in (0, 4, 5, 9, 10, 11)] == pytest.approx([LR, LR, LR / 2, LR / 2, LR / 4, LR / 4])
    assert step_lr["lr_schedule"]["scheduler"] == "torch.optim.lr_scheduler.StepLR"
    assert step_lr["lr_schedule"]["step_size"] == 5
    one_cycle = train(
        synthetic_config(
            tmp_path,
            "train",
            "selection=uniform",
            "scheduler._target_=torch.optim.lr_scheduler.OneCycleLR",
            "+scheduler.max_lr=0.01",
            "trainer.max_steps=12",
            output="one_cycle",
        )
    )
    assert one_cycle["lr_schedule"]["total_steps"] == 12


def test_an_epoch_counted_il_stage_decays_over_its_estimated_steps(tmp_path: Path) -> None:
    results = train_irreducible(
        synthetic_config(
            tmp_path, "train_irreducible", "scheduler=cosine", "trainer.max_steps=-1", "trainer.max_epochs=2"
        )
    )
    # The holdout in batches of 64 (batch_size), the last partial batch trained on too.
    per_epoch = math.ceil(results["il_models"][0]["trained_on"] / 64)
    assert results["lr_schedule"]["total_steps"] == results["steps"] == 2 * per_epoch
    assert results["lr_schedule"]["final_lr"] == 0.0


def test_a_decaying_schedule_without_a_budget_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"WarmupCosine decays over the training budget, but this trainer has none"):
        train_irreducible(
            synthetic_config(
                tmp_path, "train_irreducible", "scheduler=cosine", "trainer.max_steps=-1", "trainer.max_epochs=-1"
            )
        )


@pytest.mark.parametrize(
    ("warmup", "message"),
    [
        (30, r"scheduler.warmup=30 is 30 warm-up steps, not fewer than the budget of 20 steps"),
        (20, r"not fewer than the budget of 20 steps"),
        (1.5, r"a share of the budget, which must be below 1"),
        (-1, r"must be a number of steps"),
    ],
)
def test_a_warmup_that_leaves_nothing_to_decay_is_refused(tmp_path: Path, warmup: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train(
            synthetic_config(
                tmp_path,
                "train",
                "selection=uniform",
                "scheduler=warmup_cosine",
                f"scheduler.warmup={warmup}",
                "trainer.max_steps=20",
            )
        )
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["scheduler=warmup_cosine", "+scheduler.warmup_step=5"],
            r"scheduler.warmup_step \(did you mean scheduler.warmup\?\)",
        ),
        (
            ["scheduler._target_=torch.optim.lr_scheduler.StepLR", "+scheduler.step_sise=5"],
            r"scheduler.step_sise \(did you mean scheduler.step_size\?\)",
        ),
    ],
)
def test_a_misspelt_scheduler_key_is_refused(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(UnknownConfigKeyError, match=message):
        train(synthetic_config(tmp_path, "train", "selection=uniform", *overrides))


def test_a_killed_cosine_run_resumes_to_the_same_weights_and_rate(tmp_path: Path) -> None:
    full, resumed = kill_and_resume(
        tmp_path,
        train,
        "train",
        "selection=loss",
        "scheduler=warmup_cosine",
        "scheduler.warmup=3",
        "trainer.log_every_n_steps=1",
    )
    reference, continued = weights(tmp_path / "full"), weights(tmp_path / "resumed")
    assert all(torch.equal(reference[name], continued[name]) for name in reference)
    assert resumed["lr_schedule"] == full["lr_schedule"]
    assert full["lr_schedule"]["final_lr"] == 0.0 and full["lr_schedule"]["steps_taken"] == STEPS
    assert resumed["test_acc"] == full["test_acc"]
    # The resumed run logged, step for step, the rates the uninterrupted run trained at.
    logged, expected = logged_lr(tmp_path / "resumed"), logged_lr(tmp_path / "full")
    assert sorted(logged) == list(range(EVERY, STEPS))  # from the checkpoint at step EVERY on
    assert all(logged[step] == expected[step] for step in logged)


def test_resuming_with_another_schedule_or_budget_is_refused(tmp_path: Path) -> None:
    common = ["selection=uniform", "trainer.max_steps=6", "checkpoint.every_n_steps=3"]
    train(synthetic_config(tmp_path, "train", *common, "scheduler=cosine", output="a"))
    with pytest.raises(
        CheckpointError, match=r"scheduler._target_: rholoss.schedules.WarmupCosine -> rholoss.schedules.Constant"
    ):
        train(
            synthetic_config(tmp_path, "train", *common, "scheduler=constant", f"resume={tmp_path / 'a'}", output="b")
        )
    with pytest.raises(
        ValueError, match=r"decays over 6 steps \(warm-up 0\), this run's over 10 .*trainer.max_steps=6"
    ):
        train(
            synthetic_config(
                tmp_path,
                "train",
                *common,
                "scheduler=cosine",
                "trainer.max_steps=10",
                f"resume={tmp_path / 'a'}",
                output="c",
            )
        )
