"""Online batch selection inside a Hugging Face ``Trainer``, and so TRL's ``SFTTrainer``.

:class:`RhoLossTrainer` is a ``transformers.Trainer`` whose training loss is computed on what the
selection method chooses from each batch; :func:`selection_trainer` puts the same on top of any
Trainer subclass (``selection_trainer(trl.SFTTrainer)``). Two granularities, by the method's name:

- **token level** (``token_reducible_loss``, RHO-1): the training forward pass gives every token's
  loss; the step trains on the ``token_fraction`` of the batch's counted tokens (target not
  ``-100``) with the highest loss minus IL. The fraction applies to the whole optimizer step: with
  gradient accumulation or several processes the tokens are chosen across every micro-batch of
  every process, as one process with the whole batch would choose them (that costs one inference
  pass over the step's micro-batches first; with neither, none).
- **sequence level** (``reducible_loss``, ``loss``, ``uniform``, RHO-LOSS): each micro-batch is a
  large batch of n_B sequences; they are scored without gradients a few rows at a time with a
  chunked loss (see :mod:`rholoss.integrations.causal_losses`), the top ``percent_train`` of them
  (n_b) are trained on.

The choice itself is rholoss's own registered selection function (``select_tokens`` of a token-level
method, ``select`` of a sequence-level one), so a batch gets exactly the selection the Lightning
module would give it. The IL comes from an :mod:`~rholoss.integrations.irreducible` source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

try:  # this module is the integration itself: it subclasses the Trainer, so it cannot import it lazily
    from transformers import Trainer
    from transformers.trainer_utils import TrainOutput
except ImportError as error:
    raise ImportError(
        "rholoss.integrations.transformers needs Hugging Face transformers: pip install 'rholoss[hf]'."
    ) from error

from rholoss.atomic import atomic_write_json
from rholoss.integrations.causal_losses import (
    model_inputs,
    next_token_targets,
    scoring_token_losses,
    select_rows,
    shifted_cross_entropy,
    valid_targets,
)
from rholoss.integrations.collate import EXTRA_KEY
from rholoss.integrations.irreducible import IrreducibleLossSource
from rholoss.selection import (
    TokenSelectionInput,
    check_applies,
    check_percent_train,
    get_selection,
    selected_loss,
    selection_size,
)
from rholoss.selection.registry import SelectionRule
from rholoss.selection.step import score_batch
from rholoss.tasks import LanguageModeling


@dataclass(frozen=True)
class SelectionSettings:
    """What the Trainer selects. ``method``: a registered selection function for sequences (token
    level: ``token_reducible_loss``, ``token_loss``; sequence level: ``reducible_loss``, ``loss``,
    ``uniform``, …). ``token_fraction``: share of a step's counted tokens trained on (token level);
    ``percent_train``: n_b / n_B of each micro-batch (sequence level). ``rows_per_pass`` and
    ``tokens_per_chunk`` bound the scoring passes' memory. ``options``: the method's own settings."""

    method: str = "token_reducible_loss"
    token_fraction: float = 0.5
    percent_train: float = 0.1
    rows_per_pass: int = 8
    tokens_per_chunk: int = 4096
    options: dict[str, Any] = field(default_factory=dict)

    def selection_method(self) -> SelectionRule:
        """The registered method, refused with the list of those that apply when it cannot serve sequences."""
        method = get_selection(self.method)
        check_applies(method, LanguageModeling())
        if method.token_level and not 0.0 < self.token_fraction <= 1.0:
            raise ValueError(f"token_fraction must be in (0, 1], got {self.token_fraction}.")
        if not method.token_level:
            check_percent_train(self.percent_train)
        return method


class RhoLossTrainer(Trainer):
    """A ``transformers.Trainer`` that trains on the tokens or sequences ``selection`` chooses.

    ``irreducible``: where the per-token IL comes from (needed by methods that use IL); columns it
    reads (``id``, ``irreducible_loss``) and an optional ``token_noise`` column (one bool per token:
    logged as the share of noise among the tokens trained on) travel through
    :class:`~rholoss.integrations.collate.SelectionCollator` with ``remove_unused_columns=False``.
    Evaluation is the model's usual loss on every counted token. After ``train()``,
    :meth:`selection_results` (also in ``output_dir/results.json``) says what was trained on.
    """

    def __init__(
        self,
        *args: Any,
        selection: SelectionSettings | None = None,
        irreducible: IrreducibleLossSource | None = None,
        **kwargs: Any,
    ) -> None:
        self.selection = selection or SelectionSettings()
        self.method = self.selection.selection_method()
        if self.method.needs_irreducible and irreducible is None:
            raise ValueError(
                f"Selection {self.method.name!r} needs per-token irreducible losses: pass irreducible=ReferenceModelIL(...), "
                "StoreIL(...) or ColumnIL(...)."
            )
        self.irreducible = irreducible
        super().__init__(*args, **kwargs)
        # Token level: each micro-batch's loss is its share of the whole step's selected tokens (no
        # further division by the accumulation steps); sequence level: a micro-batch mean as usual.
        self.loss_is_scaled_for_ga = self.method.token_level
        self._step_masks: list[tuple[Tensor, Tensor]] = []
        self._counts: dict[str, Tensor] = {}

    # --- the Trainer's extension points -----------------------------------------------------------

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: torch.device) -> tuple[list, Any]:
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        spread = len(batch_samples) > 1 or self.accelerator.num_processes > 1
        self._step_masks = self._step_token_masks(batch_samples) if self.method.token_level and spread else []
        return batch_samples, num_items_in_batch

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Any:
        extras = inputs.pop(EXTRA_KEY, {})
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.method.token_level:
            loss, outputs = self._token_level_loss(model, inputs, extras)
        else:
            loss, outputs = self._sequence_level_loss(model, inputs, extras)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._counts:
            logs = {**logs, **{f"selection/{key}": value for key, value in self._shares().items() if value is not None}}
        super().log(logs, start_time)

    def train(self, *args: Any, **kwargs: Any) -> TrainOutput:
        output = super().train(*args, **kwargs)
        metrics = {**output.metrics, **self.selection_results()}
        if self.is_world_process_zero():
            atomic_write_json(
                {**metrics, "global_step": output.global_step}, Path(str(self.args.output_dir)) / "results.json"
            )
        return TrainOutput(output.global_step, output.training_loss, metrics)

    # --- token level ------------------------------------------------------------------------------

    def _token_level_loss(
        self, model: nn.Module, inputs: dict[str, Any], extras: dict[str, Tensor]
    ) -> tuple[Tensor, Any]:
        outputs = model(**model_inputs(inputs))
        labels = inputs["labels"]
        token_loss = shifted_cross_entropy(outputs.logits, labels)
        if self._step_masks:
            mask, selected = self._step_masks.pop(0)
        else:
            (mask,), selected = self._choose_tokens([self._token_scores(token_loss.detach(), inputs, extras)])
        self._count(mask, valid_targets(labels), extras)
        # DDP averages gradients over processes: scale so that the step's loss is the mean over every selected token.
        loss = (token_loss * mask).sum() / selected.clamp_min(1) * self.accelerator.num_processes
        return loss, outputs

    def _token_scores(
        self, token_loss: Tensor, inputs: dict[str, Any], extras: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """``(loss, IL or None, counted)`` of one micro-batch's predictions, ``[B, L - 1]`` each."""
        il = self._irreducible(inputs, extras) if self.method.needs_irreducible else None
        return token_loss, il, valid_targets(inputs["labels"])

    def _step_token_masks(self, batch_samples: list[dict[str, Any]]) -> list[tuple[Tensor, Tensor]]:
        """Each micro-batch's token mask for the step, from one inference pass over all of them."""
        parts = []
        model = self.accelerator.unwrap_model(self.model_wrapped)
        model.train()
        for batch in batch_samples:
            inputs = self._prepare_inputs(batch)
            extras = cast(dict[str, Tensor], inputs.pop(EXTRA_KEY, {}))
            with self.compute_loss_context_manager():
                token_loss = scoring_token_losses(
                    model,
                    inputs,
                    rows_per_pass=inputs["labels"].shape[0],
                    tokens_per_chunk=self.selection.tokens_per_chunk,
                )
            parts.append(self._token_scores(token_loss, inputs, extras))
        masks, selected = self._choose_tokens(parts)
        return [(mask, selected) for mask in masks]

    def _choose_tokens(self, parts: list[tuple[Tensor, Tensor | None, Tensor]]) -> tuple[list[Tensor], Tensor]:
        """The selection method's choice among every counted token of ``parts`` (this process's
        micro-batches) and of the other processes' (gathered, in rank order): each part's ``[B, L - 1]``
        mask, and how many tokens the whole step selects."""
        counts = [int(valid.sum()) for _, _, valid in parts]
        losses, offset = self._gather_tokens(torch.cat([loss[valid] for loss, _, valid in parts]))
        il = None
        if self.method.needs_irreducible:
            il, _ = self._gather_tokens(
                torch.cat([part_il[valid] for _, part_il, valid in parts if part_il is not None])
            )
        if losses.numel() == 0:
            return [torch.zeros_like(valid) for _, _, valid in parts], losses.new_zeros((), dtype=torch.long)
        assert self.method.select_tokens is not None  # every token-level method has one
        chosen = self.method.select_tokens(
            TokenSelectionInput(losses[None], None if il is None else il[None]),
            token_fraction=self.selection.token_fraction,
            **self.selection.options,
        )[0]
        mine = chosen[offset : offset + sum(counts)].split(counts)
        masks = []
        for (_, _, valid), part in zip(parts, mine, strict=True):
            mask = torch.zeros_like(valid)
            mask[valid] = part
            masks.append(mask)
        return masks, chosen.sum()

    def _gather_tokens(self, values: Tensor) -> tuple[Tensor, int]:
        """Every process's ``values`` (1-D, lengths may differ) concatenated in rank order, and where
        this process's start."""
        if self.accelerator.num_processes == 1:
            return values, 0
        sizes = self.accelerator.gather(torch.tensor([len(values)], device=values.device)).tolist()
        padded = self.accelerator.pad_across_processes(values, dim=0)
        rows = self.accelerator.gather(padded).view(len(sizes), -1)
        offset = sum(sizes[: self.accelerator.process_index])
        return torch.cat([row[:size] for row, size in zip(rows, sizes, strict=True)]), offset

    # --- sequence level ---------------------------------------------------------------------------

    def _sequence_level_loss(
        self, model: nn.Module, inputs: dict[str, Any], extras: dict[str, Tensor]
    ) -> tuple[Tensor, Any]:
        labels = inputs["labels"]
        valid = valid_targets(labels)
        n_b = selection_size(labels.shape[0], self.selection.percent_train)
        point_loss = point_il = None
        if self.method.needs_forward:
            scoring_model = self.accelerator.unwrap_model(model)
            token_loss = scoring_token_losses(
                scoring_model,
                inputs,
                rows_per_pass=self.selection.rows_per_pass,
                tokens_per_chunk=self.selection.tokens_per_chunk,
            )
            point_loss = _row_means(token_loss, valid)
        if self.method.needs_irreducible:
            point_il = _row_means(self._irreducible(inputs, extras), valid)
        task = LanguageModeling()
        scored = score_batch(model, inputs, labels, self.method, task, point_il, point_loss=point_loss)
        selection = self.method.select(scored, n_b, **self.selection.options)
        chosen = select_rows(inputs, selection.positions)
        outputs = model(**model_inputs(chosen))
        chosen_valid = valid_targets(chosen["labels"])
        loss = selected_loss(
            _row_means(shifted_cross_entropy(outputs.logits, chosen["labels"]), chosen_valid), selection
        )
        rows = torch.zeros(labels.shape[0], dtype=torch.bool, device=labels.device)
        rows[selection.positions] = True
        self._count(valid & rows[:, None], valid, extras)
        return loss, outputs

    # --- IL and statistics ------------------------------------------------------------------------

    def _irreducible(self, inputs: dict[str, Any], extras: dict[str, Tensor]) -> Tensor:
        assert self.irreducible is not None  # checked in __init__ for methods that need it
        il = self.irreducible.token_losses(inputs, extras)
        expected = next_token_targets(inputs["labels"]).shape
        if il.shape != expected:
            raise ValueError(
                f"The IL source gave per-token IL of shape {tuple(il.shape)} for predictions {tuple(expected)}."
            )
        return il

    def _count(self, mask: Tensor, valid: Tensor, extras: dict[str, Tensor]) -> None:
        """Add a micro-batch's counted and trained tokens (and noise among them, where known)."""
        counts = {"tokens_seen": valid.sum(), "tokens_trained": mask.sum()}
        if "token_noise" in extras:
            noise = next_token_targets(extras["token_noise"]).to(valid.device, torch.bool) & valid
            counts |= {"noise_tokens_seen": noise.sum(), "noise_tokens_trained": (noise & mask).sum()}
        for key, value in counts.items():
            self._counts[key] = self._counts.get(key, torch.zeros((), dtype=torch.long, device=valid.device)) + value

    def _totals(self) -> dict[str, int]:
        """The counts summed over processes."""
        keys = sorted(self._counts)
        if not keys:
            return {}
        summed = self.accelerator.reduce(torch.stack([self._counts[key] for key in keys]), reduction="sum")
        return dict(zip(keys, summed.tolist(), strict=True))

    def _shares(self) -> dict[str, float | None]:
        totals = self._totals()
        noise = "noise_tokens_trained" in totals
        return {
            "token_share": totals["tokens_trained"] / max(totals["tokens_seen"], 1),
            "noisy_selected_fraction": totals["noise_tokens_trained"] / max(totals["tokens_trained"], 1)
            if noise
            else None,
            "noise_share_seen": totals["noise_tokens_seen"] / max(totals["tokens_seen"], 1) if noise else None,
        }

    def selection_results(self) -> dict[str, Any]:
        """What training selected, ``results.json``-style: the method and its share, tokens seen and
        trained on, and the share of noise among them where the data says which tokens are noise."""
        totals = self._totals()
        level = {"token_fraction": self.selection.token_fraction} if self.method.token_level else {}
        level = level or {"percent_train": self.selection.percent_train}
        return {
            "selection": self.method.name,
            **level,
            "tokens_seen": totals.get("tokens_seen", 0),
            "tokens_trained": totals.get("tokens_trained", 0),
            **{key: value for key, value in totals.items() if key.startswith("noise_")},
            **{key: value for key, value in (self._shares() if totals else {}).items() if value is not None},
        }


def _row_means(values: Tensor, valid: Tensor) -> Tensor:
    """``[B]``: each row's mean over its counted predictions (0 for a row with none)."""
    weights = valid.to(values.dtype)
    return (values * weights).sum(1) / weights.sum(1).clamp_min(1)


def selection_trainer(base: type[Trainer]) -> type[RhoLossTrainer]:
    """:class:`RhoLossTrainer` on top of a Trainer subclass, e.g. ``selection_trainer(trl.SFTTrainer)``:
    its dataset preparation and collator, this class's training loss."""
    return type(f"RhoLoss{base.__name__}", (RhoLossTrainer, base), {"__doc__": RhoLossTrainer.__doc__})
