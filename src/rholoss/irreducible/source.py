"""One interface over every way irreducible losses are held: per point or per token, in memory or
memory-mapped. A selection method asks an :class:`IrreducibleLosses` for the IL of the points (or
tokens) of a batch and never learns which store format, or which memory, they came from.

The source is an ``nn.Module`` whose tables are non-persistent buffers: it follows the training module
to its device (the per-step lookup is a gather there, not a copy) and is never written into checkpoints
(it is reopened from its store).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rholoss.irreducible.store import IrreducibleLossStore, PointLossWriter, StoreError
from rholoss.irreducible.token_store import TokenLossStore, TokenLossWriter


class IrreducibleLosses(nn.Module):
    """IL by pool index: :meth:`points` gives a point's IL (a sequence's: the mean over its tokens),
    :meth:`tokens` the per-token IL of sequences (only where :attr:`per_token`)."""

    point_table: Tensor

    def __init__(self, point_losses: Tensor) -> None:
        super().__init__()
        self.register_buffer("point_table", point_losses.detach().float(), persistent=False)

    @property
    def per_token(self) -> bool:
        return False

    def __len__(self) -> int:
        return len(self.point_table)

    def points(self, index: Tensor) -> Tensor:
        """``[B]`` float32 IL of pool points ``index``, on the device of the table."""
        return self.point_table[index.to(self.point_table.device)]

    def tokens(self, index: Tensor) -> Tensor:
        """``[B, T]`` float32 per-token IL of pool sequences ``index``."""
        raise StoreError(
            "This selection method needs per-token irreducible losses, but its IL source holds one loss per "
            "point: make a per-token store with run_irreducible.py on a token corpus (task=causal_lm)."
        )


class TokenTable(IrreducibleLosses):
    """Per-token IL held as one ``[N, T]`` table beside the data (float16 from a token store)."""

    token_table: Tensor

    def __init__(self, token_losses: Tensor) -> None:
        super().__init__(token_losses.float().mean(1))
        self.register_buffer("token_table", token_losses.detach(), persistent=False)

    @property
    def per_token(self) -> bool:
        return True

    def tokens(self, index: Tensor) -> Tensor:
        return self.token_table[index.to(self.token_table.device)].float()


class MappedTokens(IrreducibleLosses):
    """Per-token IL read from a memory-mapped store each step (corpora whose IL should not be held in
    memory); the per-sequence means are held, as they are small."""

    def __init__(self, store: TokenLossStore) -> None:
        super().__init__(store.sequence_losses())
        self.store = store

    @property
    def per_token(self) -> bool:
        return True

    def tokens(self, index: Tensor) -> Tensor:
        device = self.point_table.device
        return self.store.gather(index.cpu()).to(device, torch.float32, non_blocking=True)


def irreducible_losses(losses: Tensor, per_token: bool = True) -> IrreducibleLosses:
    """An IL source from a tensor: ``[N]`` per point, or ``[N, T]`` per token (a sequence's IL is then
    the mean over its tokens; ``per_token=False`` keeps only those means)."""
    if losses.ndim == 2:
        return TokenTable(losses) if per_token else IrreducibleLosses(losses.float().mean(1))
    if losses.ndim == 1:
        return IrreducibleLosses(losses)
    raise ValueError(f"Irreducible losses must be [N] or [N, T], got shape {tuple(losses.shape)}.")


def store_writer(
    path: Path, fingerprint: dict[str, Any], metadata: dict[str, Any], *, token_store: bool
) -> PointLossWriter | TokenLossWriter:
    """The writer of a store for this pool: per token (``token_store``, streamed window by window, so
    RAM stays bounded for any corpus) or per point. Both take ``write(index, losses)`` batches inside a
    ``with`` block and put the store in place only once every point has its IL."""
    if token_store:
        return TokenLossWriter(path, fingerprint["pool_tokens"], fingerprint["seq_len"], fingerprint, metadata)
    return PointLossWriter(path, fingerprint, metadata)


def open_irreducible(
    path: Path, fingerprint: dict[str, Any], task_name: str, *, token_store: bool, per_token: bool, in_memory: bool
) -> tuple[IrreducibleLosses, dict[str, Any]]:
    """The IL source in the store at ``path`` and the store's metadata, checked against the data's
    ``fingerprint`` and the run's task. ``token_store``: the data's points are sequences (a per-token
    store); ``per_token``: the method reads per-token IL; ``in_memory``: hold the per-token table
    (the data is held too) rather than reading the mapped store each step."""
    source: IrreducibleLosses
    if token_store:
        store = TokenLossStore.open(path)
        store.check_matches(fingerprint, path)
        metadata = store.metadata
        if per_token and in_memory:
            source = TokenTable(store.to_tensor())
        elif per_token:
            source = MappedTokens(store)
        else:
            source = IrreducibleLosses(store.sequence_losses())
    else:
        points = IrreducibleLossStore.load(path)
        points.check_matches(fingerprint, path)
        metadata, source = points.metadata, IrreducibleLosses(points.losses)
    made_for = metadata.get("task", "classification")  # stores made before tasks existed
    if made_for != task_name:
        raise StoreError(
            f"The IL store {path} holds {made_for} losses, but this run's task is {task_name}: make a store with "
            f"task={task_name}."
        )
    return source, metadata
