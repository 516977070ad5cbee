"""Token-level selection (RHO-1's selective language modelling): a step trains on every sequence it
draws (n_b of them, as uniform draws them), and its loss averages only the share of their tokens the
rule keeps, chosen from the per-token losses of the training forward pass itself. No extra forward
pass, so such a step costs what a uniform step costs."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from torch import Tensor

from rholoss.methods.base import Method, StepOutcome, TrainingContext
from rholoss.selection.registry import TokenSelectionInput, check_percent_train, selection_size
from rholoss.selection.step import masked_mean


class TokenSelection(Method):
    """Train on the rule's ``token_fraction`` of each batch's tokens (an option of the rule)."""

    token_level: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_percent_train(self.percent_train)

    def points_per_step(self, large_batch_size: int) -> int:
        return selection_size(large_batch_size, self.percent_train)

    def step(self, context: TrainingContext, index: Tensor, x: Any, y: Tensor) -> StepOutcome:
        token_losses = context.task.token_loss(context(x), y)
        il = self.il_tokens(index) if self.rule.needs_irreducible else None
        mask = self.select_tokens(TokenSelectionInput(token_losses.detach(), il))
        share = mask.float().mean()
        return StepOutcome(masked_mean(token_losses, mask), index, mask, {"selection/token_share": share})

    def select_tokens(self, batch: TokenSelectionInput) -> Tensor:
        """The ``[B, T]`` mask of the tokens to train on."""
        assert self.rule.select_tokens is not None  # every token-level rule has one
        return self.rule.select_tokens(batch, **self.options)

    @property
    def token_fraction(self) -> float:
        """The share of tokens kept: the option given, else the rule's default."""
        assert self.rule.select_tokens is not None
        default = inspect.signature(self.rule.select_tokens).parameters["token_fraction"].default
        return float(self.options.get("token_fraction", default))

    def results(self) -> dict[str, Any]:
        return {**super().results(), "token_fraction": self.token_fraction}
