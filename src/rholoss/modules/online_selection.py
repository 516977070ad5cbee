"""OnlineBatchSelection: Algorithm 1 of the paper, for every registered selection function.

Each training batch is a large batch of n_B points. The module scores it with one inference
forward pass (skipped for functions that need none), keeps n_b = percent_train * n_B points and
takes one optimizer step on them. Uniform runs through the same code, so steps count the same.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rholoss.modules.classifier import Batch, ClassifierModule, OptimizerFactory
from rholoss.selection import Selection, SelectionInput, check_percent_train, get_selection, selection_size

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
    ) -> None:
        super().__init__(model, num_classes, optimizer)
        self.method = get_selection(selection)
        check_percent_train(percent_train)
        if str(precision) not in ("32", "bf16", "16"):
            raise ValueError(f"selection.precision must be 32, bf16 or 16, got {precision!r}.")
        if model_mode not in ("train", "eval"):
            raise ValueError(f"selection.model_mode must be 'train' or 'eval', got {model_mode!r}.")
        self.percent_train = percent_train
        self.precision = str(precision)
        self.model_mode = model_mode
        # Not saved in checkpoints: they are reloaded from the IL store and the datamodule.
        self.register_buffer("irreducible_losses", torch.empty(0), persistent=False)
        self.register_buffer("corrupted", torch.empty(0, dtype=torch.bool), persistent=False)
        # Running totals on the device, read only when logging or at the end: no sync per step.
        self.register_buffer("num_selected", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_selected_corrupted", torch.zeros((), dtype=torch.long))

    def set_irreducible_losses(self, losses: Tensor) -> None:
        self.irreducible_losses = losses.to(self.irreducible_losses.device, torch.float32)

    def set_corrupted_mask(self, corrupted: Tensor) -> None:
        self.corrupted = corrupted.to(self.corrupted.device, torch.bool)

    @property
    def noisy_selected_fraction(self) -> float | None:
        """Exact share of all selected points whose label was corrupted; None without noise."""
        if self.corrupted.numel() == 0 or not bool(self.corrupted.any()):
            return None
        return float(self.num_selected_corrupted) / max(int(self.num_selected), 1)

    def _selection_forward(self, x: Any) -> Tensor:
        was_training = self.model.training
        self.model.train(self.model_mode == "train")
        autocast = (
            torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])
            if self.precision in _AUTOCAST_DTYPES
            else nullcontext()
        )
        with torch.inference_mode(), autocast:
            logits = self.model(x)
        self.model.train(was_training)
        return logits

    def select(self, index: Tensor, x: Any, y: Tensor) -> Selection:
        method = self.method
        if method.needs_irreducible and self.irreducible_losses.numel() == 0:
            raise RuntimeError(
                f"Selection {method.name!r} needs irreducible losses; call set_irreducible_losses first."
            )
        scored = SelectionInput(
            targets=y,
            logits=self._selection_forward(x) if method.needs_logits else None,
            irreducible_loss=self.irreducible_losses[index] if method.needs_irreducible else None,
        )
        return method.select(scored, selection_size(len(y), self.percent_train))

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        index, x, y = batch
        chosen = self.select(index, x, y)
        positions = chosen.positions
        x_sel = {k: v[positions] for k, v in x.items()} if isinstance(x, dict) else x[positions]
        losses = F.cross_entropy(self(x_sel), y[positions], reduction="none")
        # Importance weights (when a method returns them) keep the gradient estimate unbiased.
        loss = losses.mean() if chosen.weights is None else (losses * chosen.weights).mean()
        self._track_selected(index[positions])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _track_selected(self, selected_index: Tensor) -> None:
        self.num_selected += selected_index.numel()
        if self.corrupted.numel():
            self.num_selected_corrupted += self.corrupted[selected_index].sum()
            self.log("train/noisy_selected_fraction", self.num_selected_corrupted / self.num_selected)
