"""A collator that carries the columns selection reads (``id``, a per-token IL column, a token-noise
mask) past the model's own collator, which would try to pad or feed them to the model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

EXTRA_KEY = "rho_extras"
DEFAULT_COLUMNS = ("id", "irreducible_loss", "token_noise")


class SelectionCollator:
    """Wraps the model's collator: takes ``columns`` out of each example, collates the rest with
    ``base``, and puts them back under ``rho_extras``: a scalar column as a ``[B]`` tensor, a
    per-token column (one value per token of ``input_ids``) padded to the batch's length on
    ``padding_side`` (the side ``base`` pads), with 0.

    Use it with ``TrainingArguments(remove_unused_columns=False)``, which keeps the columns in the
    examples the Trainer collates.
    """

    def __init__(
        self,
        base: Callable[[list[dict[str, Any]]], dict[str, Any]],
        columns: Sequence[str] = DEFAULT_COLUMNS,
        padding_side: Literal["right", "left"] = "right",
    ) -> None:
        self.base = base
        self.columns = tuple(columns)
        self.padding_side = padding_side

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        present = [column for column in self.columns if column in examples[0]]
        values = {column: [example[column] for example in examples] for column in present}
        batch = self.base([{key: v for key, v in example.items() if key not in present} for example in examples])
        length = batch["input_ids"].shape[1]
        batch[EXTRA_KEY] = {column: self._stack(column, rows, length) for column, rows in values.items()}
        return batch

    def _stack(self, column: str, rows: list[Any], length: int) -> Tensor:
        tensors = [torch.as_tensor(row) for row in rows]
        if all(row.ndim == 0 for row in tensors):
            return torch.stack(tensors)
        out = torch.zeros(len(tensors), length, dtype=tensors[0].dtype)
        for i, row in enumerate(tensors):
            if row.ndim != 1 or len(row) > length:
                raise ValueError(
                    f"Column {column!r} must hold one value per example or one per token of input_ids; an example "
                    f"has shape {tuple(row.shape)} for a batch of {length} tokens."
                )
            if self.padding_side == "right":
                out[i, : len(row)] = row
            else:
                out[i, length - len(row) :] = row
        return out
