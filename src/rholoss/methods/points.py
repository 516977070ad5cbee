"""Online batch selection of points: Algorithm 1 of the paper, for every point-level rule.

Each step draws a large batch of n_B points, scores it with one inference forward pass (none for rules
that need none; a cache of stale scores instead, with ``stale_every``), keeps n_b = percent_train · n_B
points by the rule and trains on them. Uniform runs through the same code, so steps count the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from rholoss.methods.base import Method, Run, StepOutcome, TrainingContext
from rholoss.methods.schedule import SelectionSchedule
from rholoss.methods.stale import StaleScores, check_stale_every
from rholoss.selection.registry import Selection, SelectionInput, SelectionRule, check_percent_train, selection_size
from rholoss.selection.step import (
    MC_SAMPLES,
    ModelMode,
    check_precision,
    input_device,
    map_inputs,
    mc_dropout_forward,
    resolved_precision,
    score_batch,
    selected_loss,
    selection_forward,
    selection_statistics,
)


class PointSelection(Method):
    """Score n_B points, train on the n_b the rule keeps.

    Args:
        precision: of the scoring forward pass ("32", "bf16" or "16" autocast; "auto": bf16 where the
            device multiplies it natively, float32 elsewhere); the training step keeps the trainer's
            precision.
        model_mode: the model's mode while scoring: "train" (as the paper's code; BatchNorm uses batch
            statistics) or "eval" (running statistics, no dropout).
        mc_samples: forward passes with dropout active, for rules that need MC samples (bald).
        stale_every: score from a cache of the pool's scores re-filled every this many steps
            (:mod:`rholoss.methods.stale`); None: the rule's default (per-batch scoring for all but loss_stale).
        draw_only_selected: a rule that ignores the points' content (uniform) may draw just the n_b points it
            trains on: the same distribution of steps as drawing n_B and keeping n_b, without loading the
            points it would throw away.
        schedule: the share of the n_b points the rule chooses over the run, the rest drawn uniformly
            (:class:`~rholoss.methods.schedule.SelectionSchedule`, or its settings); None: all of them.
    """

    def __init__(
        self,
        rule: SelectionRule,
        percent_train: float = 0.1,
        precision: str = "auto",
        model_mode: ModelMode = "train",
        mc_samples: int = MC_SAMPLES,
        stale_every: int | None = None,
        draw_only_selected: bool = False,
        schedule: SelectionSchedule | Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(rule, percent_train, options)
        self.schedule = _schedule(schedule)
        check_percent_train(percent_train)
        if model_mode not in ("train", "eval"):
            raise ValueError(f"selection.model_mode must be 'train' or 'eval', got {model_mode!r}.")
        if draw_only_selected and (rule.needs_forward or rule.needs_irreducible or rule.needs_mc_samples):
            raise ValueError(
                f"selection.draw_only_selected applies only to methods that ignore the points' content "
                f"(uniform), not to {rule.name!r}: remove it."
            )
        if rule.needs_mc_samples and mc_samples < 2:
            raise ValueError(f"selection.mc_samples must be at least 2, got {mc_samples}.")
        stale_every = rule.default_stale_every if stale_every is None else stale_every
        check_stale_every(rule, stale_every)
        self.precision = check_precision(str(precision))
        self.scored_in: str | None = None
        self.model_mode: ModelMode = model_mode
        self.mc_samples = mc_samples
        self.stale_every = stale_every
        self.draw_only_selected = bool(draw_only_selected)
        self.stale = None if stale_every is None else StaleScores(stale_every, keeps_outputs=rule.needs_class_logits)

    def check_model(self, model: nn.Module) -> None:
        if self.rule.needs_mc_samples and not any(
            isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()
        ):
            raise ValueError(
                f"Selection {self.name!r} needs MC-dropout samples, but the model has no dropout layer: "
                "use a model with dropout (e.g. model.dropout=0.1 for the MLP)."
            )

    def points_per_step(self, large_batch_size: int) -> int:
        return selection_size(large_batch_size, self.percent_train) if self.draw_only_selected else large_batch_size

    def prepare(self, run: Run) -> None:
        super().prepare(run)
        if self.stale is not None:
            self.stale.allocate(run.pool_size, run.task.num_outputs or 1)

    def selection_forward(self, model: nn.Module, x: Any) -> Tensor:
        return selection_forward(model, x, self.precision, self.model_mode)

    def mc_dropout_forward(self, model: nn.Module, x: Any) -> Tensor:
        return mc_dropout_forward(model, x, self.mc_samples, self.precision)

    def refresh_scores(self, context: TrainingContext) -> None:
        """Re-score the whole pool into the stale-score cache under the current model."""
        assert self.stale is not None, "refresh_scores needs stale_every"
        self.stale.refresh(context.pool_dataloader(), lambda x: self.selection_forward(context.model, x), context.task)

    def scoring_model(self, context: TrainingContext) -> nn.Module:
        """The model whose forward pass scores the large batch: the target itself (a proxy, in
        :class:`~rholoss.methods.proxy.ProxySelection`)."""
        return context.model

    def learn(self, x: Any, y: Tensor, chosen: Selection, context: TrainingContext) -> None:
        """After a step the rule scored, with what the target trains on: nothing here (a proxy trains on it)."""

    def score(self, context: TrainingContext, index: Tensor, x: Any, y: Tensor) -> SelectionInput:
        """What the rule needs of the large batch, and nothing more."""
        rule, stale = self.rule, self.stale
        cached = stale.cache[index] if rule.needs_forward and stale is not None else None
        keeps_outputs = stale is not None and stale.keeps_outputs
        precision: str = self.precision
        if rule.needs_forward or rule.needs_mc_samples:  # resolved once, and kept for results.json
            precision = self.scored_in = resolved_precision(input_device(x), self.precision)
        return score_batch(
            self.scoring_model(context),
            x,
            y,
            rule,
            context.task,
            self.il(index) if rule.needs_irreducible else None,
            precision=precision,
            model_mode=self.model_mode,
            mc_samples=self.mc_samples,
            outputs=cached if keeps_outputs else None,
            point_loss=None if keeps_outputs else cached,
        )

    def step(self, context: TrainingContext, index: Tensor, x: Any, y: Tensor) -> StepOutcome:
        keep = len(y) if self.draw_only_selected else selection_size(len(y), self.percent_train)
        schedule = self.schedule
        share = 1.0 if schedule is None else schedule.share(context.global_step, context.total_steps, context.lr_share)
        by_rule = round(share * keep)
        if by_rule == 0:  # uniform this step: the large batch is a uniform draw, so its first points are too
            scored = SelectionInput(targets=y)
            chosen = Selection(torch.arange(keep, device=y.device), prefix=True)
            statistics = selection_statistics(scored, chosen)
        else:
            if self.stale is not None and self.stale.due(context.global_step):
                self.refresh_scores(context)
            size = scored_size(len(y), keep, by_rule)
            scored = self.score(context, index[:size], map_inputs(x, lambda t: t[:size]), y[:size])
            chosen = self.rule.select(scored, by_rule, **self.options)
            statistics = selection_statistics(scored, chosen)  # of the rule's choice among what it scored
            if by_rule < keep:
                chosen = with_uniform_rest(chosen, len(y), keep - by_rule, unscored_from=size)
        positions = chosen.positions
        if not (chosen.prefix and len(positions) == len(y)):  # else: the whole batch, in order (uniform at n_b)
            x, y = map_inputs(x, lambda t: t[positions]), y[positions]
        outputs = context(x)
        trained = index[positions]
        if self.stale is not None:  # the points trained on get fresh scores for free
            self.stale.put(trained, outputs, y, context.task)
        loss = selected_loss(context.task.point_loss(outputs, y), chosen)
        if by_rule:
            self.learn(x, y, chosen, context)
        return StepOutcome(loss, trained, statistics=statistics)

    def results(self) -> dict[str, Any]:
        return {
            **super().results(),
            "draw_only_selected": self.draw_only_selected,
            "stale_every": self.stale_every,
            "selection_precision": self.scored_in,
            "selection_schedule": None if self.schedule is None else vars(self.schedule),
        }

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "precision": self.precision,
            "model_mode": self.model_mode,
            "stale_every": self.stale_every,
            "draw_only_selected": self.draw_only_selected,
            "schedule": None if self.schedule is None else vars(self.schedule),
            **({"mc_samples": self.mc_samples} if self.rule.needs_mc_samples else {}),
        }


def _schedule(schedule: SelectionSchedule | Mapping[str, Any] | None) -> SelectionSchedule | None:
    if schedule is None or isinstance(schedule, SelectionSchedule):
        return schedule
    try:
        return SelectionSchedule(**schedule)
    except TypeError:
        raise ValueError(
            f"selection.schedule takes kind, start, end and off_after, got {', '.join(map(str, schedule))}."
        ) from None


def scored_size(size: int, keep: int, by_rule: int) -> int:
    """How many of a large batch of ``size`` points to score when the rule chooses ``by_rule`` of the
    ``keep`` points trained on: its first ``by_rule / keep`` share (a uniform draw's first points are a
    uniform draw too), so the rule keeps the same fraction of what it scores at every share, and an
    annealed run's scoring pass shrinks with its share."""
    return size if by_rule >= keep else min(size, math.ceil(by_rule * size / keep))


def with_uniform_rest(chosen: Selection, size: int, count: int, unscored_from: int) -> Selection:
    """``chosen`` plus ``count`` points drawn uniformly from the rest of a batch of ``size``: the points
    after the scored ones, ``unscored_from`` on (a uniform draw), where enough of them are left; else
    random keys over every point not chosen, the chosen ones pushed last (no host sync). The uniform
    points weigh 1 where the rule gives weights."""
    device = chosen.positions.device
    if size - unscored_from >= count:
        rest = torch.arange(unscored_from, unscored_from + count, device=device)
    else:
        keys = torch.rand(size, device=device)
        keys[chosen.positions] = -1.0
        rest = torch.topk(keys, count, sorted=False).indices
    weights = None if chosen.weights is None else torch.cat([chosen.weights, torch.ones(count, device=device)])
    return Selection(torch.cat([chosen.positions, rest]), weights=weights, scores=chosen.scores)
