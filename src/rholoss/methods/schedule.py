"""Selection schedules: the share of each step's n_b points that the rule chooses changes over the run,
as the learning rate does; the rest of the n_b are drawn uniformly from the large batch.

Annealing the rule's share toward uniform as the learning rate decays recovers what a decayed schedule
costs RHO-LOSS (measured on Fashion-MNIST, see docs/selection.md); switching selection off after a step
keeps its early gains at the cost of a uniform step. The rule scores only the share of the large batch it
chooses from (:func:`~rholoss.methods.points.scored_size`), and a share of 0 skips scoring, so an annealed
run gets cheaper as it goes. Following the learning rate (``kind: lr``, ``selection=reducible_loss``'s
default) does both at once: a constant rate selects as the paper does, a cosine one anneals. The share
is a pure function of the step (and of the learning rate, itself one): a resumed run selects as an
uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ScheduleKind = Literal["constant", "linear", "cosine", "off_after", "lr"]
_KINDS = ("constant", "linear", "cosine", "off_after", "lr")


@dataclass(frozen=True)
class SelectionSchedule:
    """``kind``: ``constant`` (``start`` throughout), ``linear`` or ``cosine`` (from ``start`` at step 0
    to ``end`` at the last step), ``off_after`` (``start`` until step ``off_after``, then ``end``),
    ``lr`` (``start`` times the learning rate's share of its peak: all the way at a constant rate, as
    the paper selects; annealed to uniform as a decayed rate goes to zero; ``end`` unused)."""

    kind: ScheduleKind = "constant"
    start: float = 1.0
    end: float = 0.0
    off_after: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"selection.schedule.kind must be one of {', '.join(_KINDS)}, got {self.kind!r}.")
        for name in ("start", "end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"selection.schedule.{name} is a share of the selected points: in [0, 1].")
        if (self.kind == "off_after") != (self.off_after is not None):
            raise ValueError("selection.schedule.off_after is the step of kind=off_after, and only of it.")

    @property
    def needs_budget(self) -> bool:
        return self.kind in ("linear", "cosine")

    def share(self, step: int, total_steps: int | None, lr_share: float = 1.0) -> float:
        """The share of the selected points the rule chooses at ``step`` of ``total_steps``, where the
        learning rate is at ``lr_share`` of its peak."""
        if self.kind == "constant":
            return self.start
        if self.kind == "lr":
            return self.start * min(max(lr_share, 0.0), 1.0)
        if self.kind == "off_after":
            assert self.off_after is not None
            return self.start if step < self.off_after else self.end
        if not total_steps or total_steps < 1:
            raise ValueError(
                f"selection.schedule.kind={self.kind} anneals over the run's steps: set trainer.max_steps."
            )
        progress = min(step / total_steps, 1.0)
        weight = progress if self.kind == "linear" else (1 - math.cos(math.pi * progress)) / 2
        return self.start + (self.end - self.start) * weight
