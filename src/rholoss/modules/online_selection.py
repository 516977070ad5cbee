"""OnlineBatchSelection: Algorithm 1 of the paper, for every registered selection function.

Each training batch is a large batch of n_B points. The module scores it with one inference
forward pass (skipped for functions that need none), keeps n_b = percent_train * n_B points and
takes one optimizer step on them. Uniform runs through the same code, so steps count the same.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd

from rholoss.modules.classifier import Batch, ClassifierModule, OptimizerFactory
from rholoss.selection import (
    Selection,
    SelectionInput,
    SelectionMethod,
    check_percent_train,
    get_selection,
    selection_size,
)

Precision = Literal["32", "bf16", "16"]
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "16": torch.float16}


class OnlineBatchSelection(ClassifierModule):
    """Target training with online batch selection.

    Args:
        selection: name of a registered selection function.
        percent_train: n_b / n_B.
        precision: precision of the selection forward pass ("32", "bf16" or "16" autocast); the
            training step keeps the trainer's precision.
        model_mode: mode of the model during the selection pass: "train" (as the paper's code; BatchNorm
            uses batch statistics) or "eval" (running statistics, no dropout).
        mc_samples: forward passes with dropout active, for methods that need MC samples (bald).
        stale_every: score from a per-point cache of logits instead of a forward pass per large batch
            (None: the method's default, which is per-batch scoring for all but loss_stale).
            The cache is refreshed by one pass over the whole pool every ``stale_every`` steps, and the
            points trained on update their entries from the training forward pass for free
            (Loshchilov & Hutter's loss reuse), so no score is older than ``stale_every`` steps.
            Cheaper than per-step scoring when ``stale_every`` exceeds an epoch (pool / n_B steps).
        augment: batched augmentation applied to each large batch before it is scored, as the paper's
            data loaders augment every point they serve (the IL store holds un-augmented losses).
        options: the selection function's own keyword arguments (e.g. ``temperature``).
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory | None = None,
        selection: str = "reducible_loss",
        percent_train: float = 0.1,
        precision: Precision = "32",
        model_mode: Literal["train", "eval"] = "train",
        mc_samples: int = 10,
        stale_every: int | None = None,
        augment: Callable[[Tensor], Tensor] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, num_classes, optimizer)
        self.method = get_selection(selection)
        check_percent_train(percent_train)
        if str(precision) not in ("32", "bf16", "16"):
            raise ValueError(f"selection.precision must be 32, bf16 or 16, got {precision!r}.")
        if model_mode not in ("train", "eval"):
            raise ValueError(f"selection.model_mode must be 'train' or 'eval', got {model_mode!r}.")
        if self.method.needs_mc_samples:
            if not any(isinstance(m, _DropoutNd) for m in model.modules()):
                raise ValueError(
                    f"Selection {selection!r} needs MC-dropout samples, but the model has no dropout layer: "
                    "use a model with dropout (e.g. model.dropout=0.1 for the MLP)."
                )
            if mc_samples < 2:
                raise ValueError(f"selection.mc_samples must be at least 2, got {mc_samples}.")
        stale_every = self.method.default_stale_every if stale_every is None else stale_every
        _check_stale_every(self.method, stale_every)
        self.percent_train = percent_train
        self.precision = str(precision)
        self.model_mode = model_mode
        self.mc_samples = mc_samples
        self.stale_every = stale_every
        self.augment = augment
        self.options = dict(options or {})
        # Not saved in checkpoints: they are reloaded from the IL store and the datamodule.
        self.register_buffer("irreducible_losses", torch.empty(0), persistent=False)
        self.register_buffer("corrupted", torch.empty(0, dtype=torch.bool), persistent=False)
        # Statistics stay on the device and are read only when logging or at the end: no sync per step.
        self.register_buffer("selection_counts", torch.empty(0, dtype=torch.long))
        self.register_buffer("num_selected_corrupted", torch.zeros((), dtype=torch.long))
        self.register_buffer("relevant", torch.empty(0, dtype=torch.bool), persistent=False)
        self.register_buffer("num_selected_relevant", torch.zeros((), dtype=torch.long))
        # Per pool point: the logits last computed for it (stale_every only); sized by prepare_pool.
        self.register_buffer("cached_logits", torch.empty(0))

    def set_irreducible_losses(self, losses: Tensor) -> None:
        self.irreducible_losses = losses.to(self.irreducible_losses.device, torch.float32)

    def prepare_pool(self, pool_size: int, corrupted: Tensor | None = None, relevant: Tensor | None = None) -> None:
        """Size the per-point statistics for the pool, and say which of its points have corrupted
        labels and which belong to relevant classes (None: not applicable to this data)."""
        device = self.selection_counts.device
        self.selection_counts = torch.zeros(pool_size, dtype=torch.long, device=device)
        empty = torch.empty(0, dtype=torch.bool, device=device)
        self.corrupted = empty if corrupted is None else corrupted.to(device, torch.bool)
        self.relevant = empty if relevant is None else relevant.to(device, torch.bool)
        if self.stale_every is not None:
            self.cached_logits = torch.zeros(pool_size, self.hparams.num_classes, device=device)

    @property
    def noisy_selected_fraction(self) -> float | None:
        """Exact share of all selected points whose label was corrupted; None without noise."""
        if self.corrupted.numel() == 0:
            return None
        return float(self.num_selected_corrupted) / max(int(self.selection_counts.sum()), 1)

    @property
    def relevant_selected_fraction(self) -> float | None:
        """Exact share of all selected points from relevant classes; None without relevance split."""
        if self.relevant.numel() == 0:
            return None
        return float(self.num_selected_relevant) / max(int(self.selection_counts.sum()), 1)

    def selection_count_summary(self) -> dict[str, Any]:
        """How often pool points were trained on: histogram as [[times selected, number of points], …]."""
        histogram = torch.bincount(self.selection_counts).cpu()
        return {
            "never_selected": int(histogram[0]) if len(histogram) else 0,
            "histogram": [[times, n] for times, n in enumerate(histogram.tolist()) if n],
        }

    def _autocast(self) -> Any:
        if self.precision in _AUTOCAST_DTYPES:
            return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])
        return nullcontext()

    def _selection_forward(self, x: Any) -> Tensor:
        was_training = self.model.training
        self.model.train(self.model_mode == "train")
        with torch.inference_mode(), self._autocast():
            logits = self.model(x)
        self.model.train(was_training)
        return logits

    def _mc_dropout_forward(self, x: Any) -> Tensor:
        """[mc_samples, n_B, classes] logits with only the dropout layers in train mode, computed as
        one forward pass over the batch repeated ``mc_samples`` times."""
        was_training = self.model.training
        self.model.eval()
        for layer in self.model.modules():
            if isinstance(layer, _DropoutNd):
                layer.train()
        repeated = _map_inputs(x, lambda t: t.repeat(self.mc_samples, *([1] * (t.ndim - 1))))
        with torch.inference_mode(), self._autocast():
            logits = self.model(repeated)
        self.model.train(was_training)
        return logits.view(self.mc_samples, -1, logits.shape[-1])

    def refresh_score_cache(self) -> None:
        """Logits of every pool point under the current model, from one pass over the pool."""
        for index, x, _ in self.trainer.datamodule.pool_dataloader():
            index = index.to(self.device)
            logits = self._selection_forward(_map_inputs(x, lambda t: t.to(self.device, non_blocking=True)))
            self.cached_logits[index] = logits.float()

    def score_batch(self, index: Tensor, x: Any, y: Tensor) -> SelectionInput:
        """What the selection function needs, and nothing more."""
        method = self.method
        if method.needs_irreducible and self.irreducible_losses.numel() == 0:
            raise RuntimeError(
                f"Selection {method.name!r} needs irreducible losses; call set_irreducible_losses first."
            )
        if not method.needs_logits:
            logits = None
        elif self.stale_every is not None:
            logits = self.cached_logits[index]
        else:
            logits = self._selection_forward(x)
        return SelectionInput(
            targets=y,
            logits=logits,
            irreducible_loss=self.irreducible_losses[index] if method.needs_irreducible else None,
            mc_logits=self._mc_dropout_forward(x) if method.needs_mc_samples else None,
        )

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        index, x, y = batch
        if self.augment is not None:
            x = self.augment(x)
        if self.stale_every is not None and self.global_step % self.stale_every == 0:
            self.refresh_score_cache()
        scored = self.score_batch(index, x, y)
        chosen = self.method.select(scored, selection_size(len(y), self.percent_train), **self.options)
        positions = chosen.positions
        logits = self(_map_inputs(x, lambda t: t[positions]))
        if self.stale_every is not None:  # the points trained on get fresh scores for free
            self.cached_logits[index[positions]] = logits.detach().float()
        losses = F.cross_entropy(logits, y[positions], reduction="none")
        # Importance weights (when a method returns them) keep the gradient estimate unbiased.
        loss = losses.mean() if chosen.weights is None else (losses * chosen.weights).mean()
        self._log_selection_statistics(index, chosen, scored, loss)
        return loss

    def _log_selection_statistics(
        self, index: Tensor, selection: Selection, scored: SelectionInput, loss: Tensor
    ) -> None:
        positions = selection.positions
        selected_index = index[positions]
        self.selection_counts.index_add_(0, selected_index, torch.ones_like(selected_index))
        if self.corrupted.numel():
            self.num_selected_corrupted += self.corrupted[selected_index].sum()
        if self.relevant.numel():
            self.num_selected_relevant += self.relevant[selected_index].sum()
        step_means = {"train/loss": loss}
        if selection.scores is not None:
            step_means["selection/top20_score_share"] = top_score_share(selection.scores, 0.2)
        quantities = {}
        if scored.logits is not None:
            quantities["loss"] = scored.loss
        if scored.irreducible_loss is not None:
            quantities["irreducible_loss"] = scored.irreducible_loss
        if len(quantities) == 2:
            quantities["reducible_loss"] = quantities["loss"] - quantities["irreducible_loss"]
        if quantities:
            chosen = torch.zeros(len(index), dtype=torch.bool, device=index.device)
            chosen[positions] = True
            for name, values in quantities.items():
                step_means[f"selection/{name}_selected"] = _masked_mean(values, chosen)
                step_means[f"selection/{name}_not_selected"] = _masked_mean(values, ~chosen)
        self.log_interval_means(step_means, self._running_fractions)

    def _running_fractions(self) -> dict[str, Tensor]:
        """Shares of all points selected so far that were noisy / relevant, as device tensors."""
        total = self.selection_counts.sum()
        running = {}
        if self.corrupted.numel():
            running["selection/noisy_fraction"] = self.num_selected_corrupted / total
        if self.relevant.numel():
            running["selection/relevant_fraction"] = self.num_selected_relevant / total
        return running


def _check_stale_every(method: SelectionMethod, stale_every: int | None) -> None:
    if stale_every is None:
        return
    if not method.needs_logits or method.needs_mc_samples:
        raise ValueError(
            f"selection.stale_every applies to methods scored from one forward pass per point, not to "
            f"{method.name!r}: remove it."
        )
    if stale_every < 1:
        raise ValueError(f"selection.stale_every must be a positive number of steps, got {stale_every}.")


def top_score_share(scores: Tensor, top_fraction: float) -> Tensor:
    """Share of a large batch's total score held by its ``top_fraction`` highest-scoring points
    (the paper's Fig. 1, left): 0.2 for the top 20% means no concentration, 1.0 all of it there.

    Non-negative scores (loss, gradient norm, entropy) are used as they are, as in the paper; scores
    that go negative (reducible loss) are shifted so that their minimum is 0, or the ratio of sums
    would be meaningless.
    """
    shifted = scores.float() - scores.min().clamp_max(0)
    k = max(1, int(round(top_fraction * len(scores))))
    top = torch.topk(shifted, k).values.sum()
    total = shifted.sum()
    # All-zero scores (total 0) are no concentration at all: the top points hold their share k / n.
    return torch.where(total > 0, top / total.clamp_min(1e-12), torch.full_like(total, k / len(scores)))


def _map_inputs(x: Any, fn: Any) -> Any:
    """Apply ``fn`` to a tensor input or to every tensor of a dict input (text: input_ids, …)."""
    return {key: fn(value) for key, value in x.items()} if isinstance(x, dict) else fn(x)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over ``mask`` without a host sync; 0 for an empty mask (percent_train = 1)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)
