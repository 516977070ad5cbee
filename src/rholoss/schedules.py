"""Learning-rate schedules, stepped once per optimizer step, and how a module builds one from its config.

A speed claim is only as good as its baseline, and the strongest cheap baseline is uniform training
with its learning rate decayed to zero at the run's budget (Kaddour et al., "No Train No Gain", 2023).
So a schedule is part of the training recipe of both stages (``scheduler=`` in the configs):

- :class:`Constant`: the optimizer's learning rate throughout (the default);
- :class:`WarmupCosine`: a linear warm-up, then a cosine decay to zero at the step budget
  (``scheduler=cosine`` has no warm-up, ``scheduler=warmup_cosine`` has one);
- any ``torch.optim.lr_scheduler`` class by ``_target_``, as a partial taking the optimizer.

A schedule whose signature takes ``total_steps`` (WarmupCosine, torch's OneCycleLR) is given the
trainer's step budget: ``trainer.max_steps``, or the steps that ``trainer.max_epochs`` make.
Lightning saves every scheduler's state in its checkpoints and restores it, so a resumed run
continues on the same curve; a budget-bound schedule refuses a checkpoint made for another budget.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

SchedulerFactory = Callable[..., LRScheduler]


class Constant(LRScheduler):
    """The optimizer's own learning rate at every step: training exactly as without a scheduler,
    with the schedule recorded and resumed like any other."""

    def get_lr(self) -> list[float | Tensor]:
        return list(self.base_lrs)


class WarmupCosine(LRScheduler):
    """Linear warm-up to the optimizer's learning rate, then a half cosine down to zero at step
    ``total_steps``, where the budget ends (zero from there on).

    ``warmup``: a number of steps (an integer), or a share of ``total_steps`` (a float in [0, 1)).
    During warm-up step ``s`` trains at ``(s + 1) / (w + 1)`` of the peak, so no step is wasted at
    zero and step ``w`` is the peak; step ``s >= w`` at ``(1 + cos(pi (s - w) / (T - w))) / 2``.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup: int | float = 0, last_epoch: int = -1) -> None:
        self.total_steps = int(total_steps)
        self.warmup_steps = warmup_steps(warmup, self.total_steps)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The share of the peak learning rate that step ``step`` (counted from 0) trains at."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = min((step - self.warmup_steps) / (self.total_steps - self.warmup_steps), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float | Tensor]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = (state_dict.get("total_steps"), state_dict.get("warmup_steps"))
        if saved != (self.total_steps, self.warmup_steps):
            raise ValueError(
                f"The checkpoint's learning-rate schedule decays over {saved[0]} steps (warm-up {saved[1]}), this "
                f"run's over {self.total_steps} (warm-up {self.warmup_steps}): a cosine schedule cannot be stretched "
                f"mid-run. Resume with trainer.max_steps={saved[0]}, or start afresh with the new budget."
            )
        super().load_state_dict(state_dict)


def warmup_steps(warmup: int | float, total_steps: int) -> int:
    """Warm-up steps from a count (an integer) or a share of the budget (a float in [0, 1)),
    refused when it leaves no step to decay over."""
    if isinstance(warmup, bool) or not isinstance(warmup, int | float) or warmup < 0:
        raise ValueError(
            f"scheduler.warmup must be a number of steps (an integer) or a share of the budget (a float in [0, 1)), "
            f"got {warmup!r}."
        )
    if isinstance(warmup, float):
        if warmup >= 1:
            raise ValueError(
                f"scheduler.warmup={warmup} is a float, so a share of the budget, which must be below 1: give a "
                f"share (e.g. 0.05) or a whole number of steps (e.g. {round(warmup)})."
            )
        steps = round(warmup * total_steps)
    else:
        steps = warmup
    if steps >= total_steps:
        raise ValueError(
            f"scheduler.warmup={warmup} is {steps} warm-up steps, not fewer than the budget of {total_steps} steps "
            "(trainer.max_steps): shorten the warm-up or raise the budget."
        )
    return steps


def build_scheduler(factory: SchedulerFactory, optimizer: Optimizer, budget: Callable[[], float]) -> LRScheduler:
    """The scheduler ``factory`` makes for ``optimizer``. A factory taking ``total_steps`` that its
    config leaves unset gets ``budget()``, the trainer's step budget (read only then: for an
    epoch-counted run Lightning estimates it from the training loader)."""
    if _needs_budget(factory):
        total = budget()
        if not math.isfinite(total) or total < 1:
            raise ValueError(
                f"The learning-rate schedule {_name(factory)} decays over the training budget, but this trainer has "
                f"none (trainer.max_steps=-1 and trainer.max_epochs=-1, or an empty training set): set "
                "trainer.max_steps (or trainer.max_epochs), or use scheduler=constant."
            )
        scheduler = factory(optimizer, total_steps=int(total))
    else:
        scheduler = factory(optimizer)
    if not isinstance(scheduler, LRScheduler):
        raise TypeError(
            f"scheduler._target_={_name(factory)} made a {type(scheduler).__name__}, not a "
            "torch.optim.lr_scheduler.LRScheduler: name a scheduler class, with _partial_: true."
        )
    return scheduler


def _needs_budget(factory: SchedulerFactory) -> bool:
    if isinstance(factory, functools.partial) and "total_steps" in factory.keywords:
        return False  # the config sets it
    try:
        return "total_steps" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): it takes what it is given
        return False


def _name(factory: SchedulerFactory) -> str:
    target = factory.func if isinstance(factory, functools.partial) else factory
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', repr(target))}".lstrip(".")


def describe_schedule(scheduler: LRScheduler) -> dict[str, Any]:
    """What results.json records of a run's schedule: its class, its settings (the plain values of
    its state) and the learning rate it ended at."""
    settings = {
        key: value
        for key, value in scheduler.state_dict().items()
        if not key.startswith("_") and key not in ("last_epoch", "base_lrs") and isinstance(value, int | float | str)
    }
    return {
        "scheduler": f"{type(scheduler).__module__}.{type(scheduler).__qualname__}",
        "interval": "step",
        **settings,
        "base_lr": scheduler.base_lrs[0],
        "final_lr": scheduler.get_last_lr()[0],
        "steps_taken": scheduler.last_epoch,
    }
