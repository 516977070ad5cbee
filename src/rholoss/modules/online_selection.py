"""OnlineBatchSelection: target training with a selection method (:mod:`rholoss.methods`).

The module knows nothing of what a method does: each training step it augments the drawn batch, asks
the method for the step (:meth:`~rholoss.methods.Method.step`: what to train on, its loss), hands what
was trained on to the diagnostics and logs. Every method, uniform included, runs through this one step,
so steps count the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor, nn

from rholoss.methods.base import Method, Run, StepOutcome
from rholoss.methods.diagnostics import SelectionDiagnostics
from rholoss.modules.supervised import Batch, OptimizerFactory, SupervisedModule
from rholoss.schedules import SchedulerFactory, WarmupCosine
from rholoss.tasks import Task


class OnlineBatchSelection(SupervisedModule):
    """Target training with online batch selection.

    Args:
        task: a :class:`~rholoss.tasks.Task` sized for the data, or a class count (classification).
        selection: a :class:`~rholoss.methods.Method` (prepared for the run), or the name of a registered
            rule, built with ``settings`` (its ``selection.*`` keys: ``percent_train``, ``temperature``, …);
            a method the task or the model cannot serve is refused.
        augment: batched augmentation applied to each large batch before it is scored, as the paper's
            data loaders augment every point they serve (the IL store holds un-augmented losses).
        diagnostics: the counts of what training was spent on, sized for the pool (none: an empty pool).
        scheduler: the learning-rate schedule (:class:`~rholoss.modules.supervised.SupervisedModule`).
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task | int,
        optimizer: OptimizerFactory | None = None,
        selection: Method | str = "reducible_loss",
        augment: Callable[[Tensor], Tensor] | None = None,
        diagnostics: SelectionDiagnostics | None = None,
        scheduler: SchedulerFactory | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(model, task, optimizer, scheduler)
        if isinstance(selection, Method):
            if settings:
                raise TypeError(f"Settings {sorted(settings)} go to the method's own constructor, not here.")
            method = selection
        else:
            # Imported here: the methods' SVP proxy is itself a SupervisedModule of this package.
            from rholoss.methods.factory import build_method

            method = build_method({"name": selection, **settings})
        method.check_task(self.task)
        method.check_model(model)
        self.method = method
        self.augment = augment
        self.diagnostics = diagnostics or SelectionDiagnostics(0)
        self.hparams.update(selection=method.describe())

    def prepare_pool(
        self,
        pool_size: int,
        irreducible: Tensor | None = None,
        noise: Tensor | None = None,
        relevant: Tensor | None = None,
        seq_len: int | None = None,
    ) -> None:
        """What the pipeline does before training, for a pool held in memory (a test, a notebook, a
        benchmark): the method prepared for ``pool_size`` points with IL from a tensor (``[N]``, or
        ``[N, T]`` per token), and the diagnostics sized for the pool with its noise (``[N]`` or
        ``[N, T]``) and relevance masks."""
        self.method.prepare(Run.in_memory(self.task, pool_size, irreducible))
        self.diagnostics = SelectionDiagnostics(pool_size, noise=noise, relevant=relevant, seq_len=seq_len)

    @property
    def total_steps(self) -> int | None:
        """The run's step budget (``trainer.max_steps``), for schedules; None without one."""
        steps = getattr(self._trainer, "max_steps", None)
        return steps if steps is not None and steps > 0 else None

    @property
    def lr_share(self) -> float:
        """The learning rate's share of its peak at this step, for selection schedules that follow it:
        1 without a schedule, at a constant rate and during a warm-up (:class:`~rholoss.schedules.WarmupCosine`'s)."""
        configs = getattr(self._trainer, "lr_scheduler_configs", None)
        if not configs:
            return 1.0
        scheduler = configs[0].scheduler
        if isinstance(scheduler, WarmupCosine) and self.global_step < scheduler.warmup_steps:
            return 1.0
        peak = max(scheduler.base_lrs)
        return min(scheduler.get_last_lr()[0] / peak, 1.0) if peak > 0 else 1.0

    def pool_dataloader(self) -> Iterable[Any]:
        """The pool's batches in order (for methods that re-score the whole pool)."""
        return self.trainer.datamodule.pool_dataloader()  # type: ignore[attr-defined]  # set on the Trainer by a Lightning connector: mypy cannot see it

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        index, x, y = batch
        if self.augment is not None:
            x = self.augment(x)
        outcome = self.method.step(self, index, x, y)
        self.record(outcome)
        return outcome.loss

    def record(self, outcome: StepOutcome) -> None:
        """Count what the step trained on and log the step's means at the logging interval."""
        self.diagnostics.record(outcome.trained, outcome.token_mask)
        self.log_interval_means({"train/loss": outcome.loss, **outcome.statistics}, self.diagnostics.running)
