"""Per-token losses of a Hugging Face causal LM, aligned as its own loss aligns them.

A causal LM in ``transformers`` shifts labels inside its loss: the logits at position ``t`` predict
``labels[t + 1]``, so a batch with labels ``[B, L]`` has ``L - 1`` predictions per row and position 0
is never a target. Everything here works on those ``[B, L - 1]`` predictions; ``-100`` targets
(prompt tokens in SFT, padding) have loss 0 and count nowhere.

:func:`scoring_token_losses` is the scoring pass of sequence-level selection and of a reference
model: a few rows at a time, the vocabulary projection a chunk of tokens at a time, so fp32 logits
exist for at most ``tokens_per_chunk`` tokens, never for the whole large batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IGNORE_INDEX = -100
# Config keys of models whose logits are not a plain linear head over the last hidden state: their
# scoring pass runs the whole model (logits of one pass of rows at a time) instead.
_HEAD_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def next_token_targets(labels: Tensor) -> Tensor:
    """``[B, L - 1]``: the target of each prediction of a batch with ``labels [B, L]``."""
    if labels.ndim != 2:
        raise ValueError(f"labels must be [batch, length] token ids, got shape {tuple(labels.shape)}.")
    return labels[:, 1:]


def valid_targets(labels: Tensor) -> Tensor:
    """``[B, L - 1]`` bool: the predictions that count (target not ``-100``)."""
    return next_token_targets(labels) != IGNORE_INDEX


def shifted_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """``[B, L - 1]`` float32 per-token loss of ``logits [B, L, V]`` on ``labels [B, L]``, 0 at ``-100``."""
    targets = next_token_targets(labels)
    losses = F.cross_entropy(
        logits[:, :-1].float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    )
    return losses.view(targets.shape)


def model_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The batch as the model's forward takes it, without labels: the losses are computed here."""
    if "shift_labels" in inputs:
        raise ValueError(
            "The batch carries shift_labels (a padding-free collator that shifts labels itself); RHO-LOSS selection "
            "aligns targets from `labels`: use a collator that gives labels (TRL: padding_free=False)."
        )
    return {key: value for key, value in inputs.items() if key != "labels"}


def _rows(inputs: dict[str, Any], rows: slice | Tensor, batch: int) -> dict[str, Any]:
    """``inputs`` with every per-row tensor cut to ``rows``; anything else as it is."""
    return {
        key: value[rows] if isinstance(value, Tensor) and value.ndim and value.shape[0] == batch else value
        for key, value in inputs.items()
    }


def select_rows(inputs: dict[str, Any], positions: Tensor) -> dict[str, Any]:
    """The batch's rows ``positions`` (the selected sequences), every per-row tensor alike."""
    return _rows(inputs, positions, inputs["labels"].shape[0])


def _plain_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """``(backbone, head)`` when the logits are ``head(last hidden state)``, else None."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if get_head is not None else None
    backbone = getattr(model, "base_model", model)
    config = getattr(model, "config", None)
    if head is None or backbone is model or any(getattr(config, key, None) for key in _HEAD_TRANSFORMS):
        return None
    return backbone, head


def _chunked_cross_entropy(hidden: Tensor, targets: Tensor, head: nn.Module, tokens_per_chunk: int) -> Tensor:
    flat_hidden, flat_targets = hidden.flatten(0, 1), targets.flatten()
    losses = torch.zeros(flat_targets.shape, dtype=torch.float32, device=hidden.device)
    for start in range(0, len(flat_targets), tokens_per_chunk):
        chunk = slice(start, start + tokens_per_chunk)
        logits = head(flat_hidden[chunk]).float()
        losses[chunk] = F.cross_entropy(logits, flat_targets[chunk], ignore_index=IGNORE_INDEX, reduction="none")
    return losses.view(targets.shape)


@torch.no_grad()
def scoring_token_losses(
    model: nn.Module, inputs: dict[str, Any], *, rows_per_pass: int = 8, tokens_per_chunk: int = 4096
) -> Tensor:
    """``[B, L - 1]`` float32 per-token losses of ``model`` on the batch ``inputs`` (with ``labels``),
    without gradients: ``rows_per_pass`` sequences per forward pass, the head applied to
    ``tokens_per_chunk`` hidden states at a time. The model's mode (train / eval) is left as it is."""
    if rows_per_pass < 1 or tokens_per_chunk < 1:
        raise ValueError(
            f"rows_per_pass and tokens_per_chunk must be at least 1, got {rows_per_pass}, {tokens_per_chunk}."
        )
    labels = inputs["labels"]
    batch = labels.shape[0]
    forward = {"use_cache": False, **model_inputs(inputs)}  # no key-value cache kept for scoring
    plain = _plain_head(model)
    parts = []
    for start in range(0, batch, rows_per_pass):
        rows = slice(start, start + rows_per_pass)
        targets = next_token_targets(labels[rows])
        if plain is None:
            logits = model(**_rows(forward, rows, batch)).logits
            parts.append(_chunked_cross_entropy(logits[:, :-1], targets, nn.Identity(), tokens_per_chunk))
        else:
            backbone, head = plain
            hidden = backbone(**_rows(forward, rows, batch)).last_hidden_state
            parts.append(_chunked_cross_entropy(hidden[:, :-1], targets, head, tokens_per_chunk))
    return torch.cat(parts)
