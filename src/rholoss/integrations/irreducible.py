"""Where a Hugging Face training batch's per-token irreducible loss comes from.

Each source gives ``[B, L - 1]`` float32 IL aligned with the batch's predictions (see
:mod:`rholoss.integrations.causal_losses`): from a small frozen reference model run on the same
batch (RHO-1's way, no store to build), from a per-token IL store by the rows' ``id`` (windows of
:class:`~rholoss.irreducible.TokenLossStore`), or from an IL column of the dataset. ``extras`` are
the batch's non-model columns, which :class:`~rholoss.integrations.collate.SelectionCollator`
carries through (``id``, ``irreducible_loss``, ``token_noise``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from rholoss.data.hf_text import missing_weights
from rholoss.integrations.causal_losses import next_token_targets, scoring_token_losses
from rholoss.irreducible import TokenLossStore


class IrreducibleLossSource(Protocol):
    """Per-token IL of a batch: ``[B, L - 1]`` float32 on the labels' device."""

    def token_losses(self, inputs: dict[str, Any], extras: dict[str, Tensor]) -> Tensor: ...


class ReferenceModelIL:
    """IL from a reference model: its loss on every token of the batch, computed on the fly.

    ``model``: a causal LM, or the name / ``save_pretrained`` folder of one (loaded with
    ``AutoModelForCausalLM.from_pretrained``). It is frozen and kept in eval mode, moved to the
    batch's device on first use; it must share the trained model's tokenizer. ``rows_per_pass`` and
    ``tokens_per_chunk`` bound its scoring memory as for sequence-level selection.
    """

    def __init__(
        self,
        model: nn.Module | str | Path,
        *,
        rows_per_pass: int = 8,
        tokens_per_chunk: int = 4096,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.model = _load(model, dtype) if isinstance(model, str | Path) else model
        self.model.eval().requires_grad_(False)
        self.rows_per_pass = rows_per_pass
        self.tokens_per_chunk = tokens_per_chunk

    @property
    def vocab_size(self) -> int | None:
        return getattr(getattr(self.model, "config", None), "vocab_size", None)

    def token_losses(self, inputs: dict[str, Any], extras: dict[str, Tensor]) -> Tensor:
        device = inputs["labels"].device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        return scoring_token_losses(
            self.model, inputs, rows_per_pass=self.rows_per_pass, tokens_per_chunk=self.tokens_per_chunk
        )


def _load(name: str | Path, dtype: torch.dtype | None) -> nn.Module:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(name), dtype=dtype)
    except OSError as error:
        raise missing_weights(str(name), None, error, "a folder written by save_pretrained()") from error


class ColumnIL:
    """IL from a dataset column (default ``irreducible_loss``): one float per token of ``input_ids``,
    value ``t`` the IL of predicting token ``t`` from those before it (the value at position 0 is
    never read), as a per-token IL store keeps it. Needs ``remove_unused_columns=False``."""

    def __init__(self, column: str = "irreducible_loss") -> None:
        self.column = column

    def token_losses(self, inputs: dict[str, Any], extras: dict[str, Tensor]) -> Tensor:
        values = _extra(extras, self.column, "ColumnIL")
        return next_token_targets(values).to(inputs["labels"].device, torch.float32)


class StoreIL:
    """IL from a per-token IL store, by the pool window each row is (column ``id``). A row must be
    the window's ``seq_len + 1`` tokens (its inputs and its last target), so that its ``seq_len``
    predictions are the store row's. Needs ``remove_unused_columns=False``."""

    def __init__(self, store: TokenLossStore | str | Path, column: str = "id") -> None:
        self.store = store if isinstance(store, TokenLossStore) else TokenLossStore.open(Path(store))
        self.column = column

    def token_losses(self, inputs: dict[str, Any], extras: dict[str, Tensor]) -> Tensor:
        index = _extra(extras, self.column, "StoreIL")
        predictions = inputs["labels"].shape[1] - 1
        if predictions != self.store.seq_len:
            raise ValueError(
                f"{self.store.path} holds IL for windows of {self.store.seq_len} predictions, but the batch's rows make "
                f"{predictions}: give rows of seq_len + 1 = {self.store.seq_len + 1} tokens, one pool window each."
            )
        return self.store.gather(index).to(inputs["labels"].device)


def _extra(extras: dict[str, Tensor], column: str, source: str) -> Tensor:
    if column not in extras:
        raise KeyError(
            f"{source} reads the dataset column {column!r}, which the batch does not have: keep it in the dataset, "
            "set TrainingArguments(remove_unused_columns=False) and collate with SelectionCollator."
        )
    return extras[column]
