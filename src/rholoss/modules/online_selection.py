"""OnlineBatchSelection: Algorithm 1 of the paper, for every registered selection function.

Each training batch is a large batch of n_B points. The module scores it with one inference
forward pass (skipped for functions that need none), keeps n_b = percent_train * n_B points and
takes one optimizer step on them. Uniform runs through the same code, so steps count the same.

Token-level methods (RHO-1's selective language modelling) select inside the training forward
pass instead: every sequence of the batch is fed forward once, and the loss averages only the
chosen share of its tokens, so such a step costs what a uniform step costs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from rholoss.modules.supervised import Batch, OptimizerFactory, SupervisedModule
from rholoss.schedules import SchedulerFactory
from rholoss.selection import (
    Selection,
    SelectionInput,
    SelectionMethod,
    TokenSelectionInput,
    check_percent_train,
    get_selection,
    selection_size,
)
from rholoss.selection.registry import check_applies
from rholoss.selection.step import (
    ModelMode,
    Precision,
    check_precision,
    map_inputs,
    masked_mean,
    mc_dropout_forward,
    score_batch,
    selected_loss,
    selection_forward,
    selection_statistics,
)
from rholoss.tasks import Task


class OnlineBatchSelection(SupervisedModule):
    """Target training with online batch selection.

    Args:
        task: a :class:`~rholoss.tasks.Task` sized for the data, or a class count (classification).
        selection: name of a registered selection function; one that needs class logits is refused
            for a task without them.
        percent_train: n_b / n_B.
        precision: precision of the selection forward pass ("32", "bf16" or "16" autocast); the
            training step keeps the trainer's precision.
        model_mode: mode of the model during the selection pass: "train" (as the paper's code; BatchNorm
            uses batch statistics) or "eval" (running statistics, no dropout).
        mc_samples: forward passes with dropout active, for methods that need MC samples (bald).
        stale_every: score from a per-point cache instead of a forward pass per large batch: of the
            outputs for methods that need class logits, of the losses alone for the others (small
            for any task: one number per point, a sequence's included)
            (None: the method's default, which is per-batch scoring for all but loss_stale).
            The cache is refreshed by one pass over the whole pool every ``stale_every`` steps, and the
            points trained on update their entries from the training forward pass for free
            (Loshchilov & Hutter's loss reuse), so no score is older than ``stale_every`` steps.
            Cheaper than per-step scoring when ``stale_every`` exceeds an epoch (pool / n_B steps).
        augment: batched augmentation applied to each large batch before it is scored, as the paper's
            data loaders augment every point they serve (the IL store holds un-augmented losses).
        options: the selection function's own keyword arguments (e.g. ``temperature``).
        scheduler: the learning-rate schedule (:class:`~rholoss.modules.supervised.SupervisedModule`).
    """

    # Buffers (registered in __init__), declared for type checkers.
    irreducible_losses: Tensor
    corrupted: Tensor
    selection_counts: Tensor
    num_selected_corrupted: Tensor
    relevant: Tensor
    num_selected_relevant: Tensor
    cached_outputs: Tensor
    irreducible_token_losses: Tensor
    token_noise: Tensor
    num_tokens_trained: Tensor
    num_noise_tokens_trained: Tensor

    def __init__(
        self,
        model: nn.Module,
        task: Task | int,
        optimizer: OptimizerFactory | None = None,
        selection: str = "reducible_loss",
        percent_train: float = 0.1,
        precision: str = "32",
        model_mode: ModelMode = "train",
        mc_samples: int = 10,
        stale_every: int | None = None,
        augment: Callable[[Tensor], Tensor] | None = None,
        options: dict[str, Any] | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(model, task, optimizer, scheduler)
        self.method = get_selection(selection)
        check_applies(self.method, self.task)
        check_percent_train(percent_train)
        if model_mode not in ("train", "eval"):
            raise ValueError(f"selection.model_mode must be 'train' or 'eval', got {model_mode!r}.")
        if self.method.needs_mc_samples:
            if not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()):
                raise ValueError(
                    f"Selection {selection!r} needs MC-dropout samples, but the model has no dropout layer: "
                    "use a model with dropout (e.g. model.dropout=0.1 for the MLP)."
                )
            if mc_samples < 2:
                raise ValueError(f"selection.mc_samples must be at least 2, got {mc_samples}.")
        stale_every = self.method.default_stale_every if stale_every is None else stale_every
        _check_stale_every(self.method, stale_every)
        self.percent_train = percent_train
        self.precision: Precision = check_precision(str(precision))
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
        # Per pool point: the outputs (or loss) last computed for it (stale_every only); sized by prepare_pool.
        self.register_buffer("cached_outputs", torch.empty(0))
        self.caches_outputs = self.method.needs_class_logits
        # Sequences of tokens: per-token IL (token-level methods), which targets are noise, and the
        # tokens trained on (all of a selected sequence's, or the chosen ones of a token-level step).
        self.register_buffer("irreducible_token_losses", torch.empty(0), persistent=False)
        self.register_buffer("token_noise", torch.empty(0, dtype=torch.bool), persistent=False)
        self.register_buffer("num_tokens_trained", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_noise_tokens_trained", torch.zeros((), dtype=torch.long))
        self.token_source: Callable[[Tensor], Tensor] | None = None

    def set_irreducible_losses(self, losses: Tensor, token_source: Callable[[Tensor], Tensor] | None = None) -> None:
        """IL by pool point ``[N]``, or by token ``[N, T]`` for sequences: a point's IL is then the mean
        over its tokens, and token-level methods keep the per-token values too (in their own dtype,
        float16 from a token store). ``token_source`` instead of a per-token table: gives the
        ``[B, T]`` IL of pool windows ``index`` (read from a memory-mapped store each step), with
        ``losses`` the per-window means, for corpora whose IL should not be held in memory."""
        device = self.irreducible_losses.device
        self.token_source = token_source
        if losses.ndim == 2:
            if self.method.token_level:
                self.irreducible_token_losses = losses.to(device)
            losses = losses.float().mean(1)
        self.irreducible_losses = losses.to(device, torch.float32)

    def _irreducible_tokens(self, index: Tensor) -> Tensor:
        if self.token_source is not None:
            return self.token_source(index.cpu()).to(self.device, torch.float32, non_blocking=True)
        return self.irreducible_token_losses[index].float()

    def prepare_pool(
        self,
        pool_size: int,
        corrupted: Tensor | None = None,
        relevant: Tensor | None = None,
        token_noise: Tensor | None = None,
    ) -> None:
        """Size the per-point statistics for the pool, and say which of its points have corrupted
        labels, which belong to relevant classes and, for sequences, which of their target tokens
        are noise (``[N, T]``; None: not applicable to this data)."""
        device = self.selection_counts.device
        self.token_noise = (
            torch.empty(0, dtype=torch.bool, device=device)
            if token_noise is None
            else token_noise.to(device, torch.bool)
        )
        self.selection_counts = torch.zeros(pool_size, dtype=torch.long, device=device)
        empty = torch.empty(0, dtype=torch.bool, device=device)
        self.corrupted = empty if corrupted is None else corrupted.to(device, torch.bool)
        self.relevant = empty if relevant is None else relevant.to(device, torch.bool)
        if self.stale_every is not None:
            width = (self.task.num_outputs,) if self.caches_outputs else ()
            self.cached_outputs = torch.zeros(pool_size, *width, device=device)

    @property
    def noisy_selected_fraction(self) -> float | None:
        """Exact share of all selected points whose label was corrupted, or for sequences of all
        tokens trained on that were noise; None without noise."""
        if self.token_noise.numel():
            return float(self.num_noise_tokens_trained) / max(int(self.num_tokens_trained), 1)
        if self.corrupted.numel() == 0:
            return None
        return float(self.num_selected_corrupted) / max(int(self.selection_counts.sum()), 1)

    @property
    def tokens_trained(self) -> int | None:
        """Tokens whose loss entered a training step (sequences only; None otherwise)."""
        return int(self.num_tokens_trained) if self.task.token_level else None

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

    def _selection_forward(self, x: Any) -> Tensor:
        return selection_forward(self.model, x, self.precision, self.model_mode)

    def _mc_dropout_forward(self, x: Any) -> Tensor:
        return mc_dropout_forward(self.model, x, self.mc_samples, self.precision)

    def refresh_score_cache(self) -> None:
        """Outputs (or losses) of every pool point under the current model, from one pass over the pool."""
        for index, x, y in self.trainer.datamodule.pool_dataloader():  # type: ignore[attr-defined]  # set on the Trainer by a Lightning connector: mypy cannot see it
            index, y = index.to(self.device), y.to(self.device)
            outputs = self._selection_forward(map_inputs(x, lambda t: t.to(self.device, non_blocking=True)))
            self._cache(index, outputs, y)

    def _cache(self, index: Tensor, outputs: Tensor, y: Tensor) -> None:
        if self.caches_outputs:
            self.cached_outputs[index] = outputs.detach().float().reshape(len(index), -1)
        else:
            self.cached_outputs[index] = self.task.point_loss(outputs.detach(), y)

    def score_batch(self, index: Tensor, x: Any, y: Tensor) -> SelectionInput:
        """What the selection function needs, and nothing more."""
        method = self.method
        if method.needs_irreducible and self.irreducible_losses.numel() == 0:
            raise RuntimeError(
                f"Selection {method.name!r} needs irreducible losses; call set_irreducible_losses first."
            )
        cached = self.cached_outputs[index] if method.needs_forward and self.stale_every is not None else None
        return score_batch(
            self.model,
            x,
            y,
            method,
            self.task,
            self.irreducible_losses[index] if method.needs_irreducible else None,
            precision=self.precision,
            model_mode=self.model_mode,
            mc_samples=self.mc_samples,
            outputs=cached if self.caches_outputs else None,
            point_loss=None if self.caches_outputs else cached,
        )

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        index, x, y = batch
        if self.method.token_level:
            return self._token_level_step(index, x, y)
        if self.augment is not None:
            x = self.augment(x)
        if self.stale_every is not None and self.global_step % self.stale_every == 0:
            self.refresh_score_cache()
        scored = self.score_batch(index, x, y)
        chosen = self.method.select(scored, selection_size(len(y), self.percent_train), **self.options)
        positions = chosen.positions
        if not (chosen.prefix and len(positions) == len(y)):  # else: the whole batch, in order (uniform at n_b)
            x, y = map_inputs(x, lambda t: t[positions]), y[positions]
        outputs = self(x)
        if self.stale_every is not None:  # the points trained on get fresh scores for free
            self._cache(index[positions], outputs, y)
        loss = selected_loss(self.task.point_loss(outputs, y), chosen)
        self._log_selection_statistics(index, chosen, scored, loss)
        return loss

    def _token_level_step(self, index: Tensor, x: Any, y: Tensor) -> Tensor:
        """One forward pass over every sequence of the batch; the loss is the mean over the tokens
        the method chooses from the per-token losses of that same pass (no extra forward pass)."""
        token_losses = self.task.token_loss(self(x), y)
        il = self._irreducible_tokens(index) if self.method.needs_irreducible else None
        assert self.method.select_tokens is not None  # every token-level method has one
        mask = self.method.select_tokens(TokenSelectionInput(token_losses.detach(), il), **self.options)
        loss = masked_mean(token_losses, mask)
        self.selection_counts.index_add_(0, index, torch.ones_like(index))
        self._count_tokens(index, mask)
        self.log_interval_means(
            {"train/loss": loss, "selection/token_share": mask.float().mean()}, self._running_fractions
        )
        return loss

    def _count_tokens(self, index: Tensor, mask: Tensor) -> None:
        """Add the tokens trained on (``mask``: ``[B, T]`` of the sequences ``index``) and the noise among them."""
        self.num_tokens_trained += mask.sum()
        if self.token_noise.numel():
            self.num_noise_tokens_trained += (self.token_noise[index] & mask).sum()

    def _log_selection_statistics(
        self, index: Tensor, selection: Selection, scored: SelectionInput, loss: Tensor
    ) -> None:
        positions = selection.positions
        selected_index = index[positions]
        self.selection_counts.index_add_(0, selected_index, torch.ones_like(selected_index))
        if self.task.token_level:  # every token of a selected sequence is trained on
            self._count_tokens(selected_index, torch.ones_like(scored.targets[positions], dtype=torch.bool))
        if self.corrupted.numel():
            self.num_selected_corrupted += self.corrupted[selected_index].sum()
        if self.relevant.numel():
            self.num_selected_relevant += self.relevant[selected_index].sum()
        step_means = {"train/loss": loss, **selection_statistics(scored, selection)}
        self.log_interval_means(step_means, self._running_fractions)

    def _running_fractions(self) -> dict[str, Tensor]:
        """Shares of all points selected so far that were noisy / relevant, as device tensors."""
        total = self.selection_counts.sum()
        running = {}
        if self.token_noise.numel():
            running["selection/noisy_fraction"] = self.num_noise_tokens_trained / self.num_tokens_trained.clamp_min(1)
        elif self.corrupted.numel():
            running["selection/noisy_fraction"] = self.num_selected_corrupted / total
        if self.relevant.numel():
            running["selection/relevant_fraction"] = self.num_selected_relevant / total
        return running


def _check_stale_every(method: SelectionMethod, stale_every: int | None) -> None:
    if stale_every is None:
        return
    if not method.needs_forward or method.needs_mc_samples:
        raise ValueError(
            f"selection.stale_every applies to methods scored from one forward pass per point, not to "
            f"{method.name!r}: remove it."
        )
    if stale_every < 1:
        raise ValueError(f"selection.stale_every must be a positive number of steps, got {stale_every}.")
