"""A split's token array as training points: windows of ``seq_len`` next-token predictions.

Window ``i`` reads the ``seq_len + 1`` tokens at positions ``i * seq_len`` to ``(i + 1) * seq_len``
(inclusive): the input is the first ``seq_len`` of them, the targets the last ``seq_len``, so

    x[i, t] = tokens[i * seq_len + t]        y[i, t] = tokens[i * seq_len + t + 1]

Consecutive windows share one token (the last target of one is the first input of the next), and
every position from 1 to ``num_windows * seq_len`` is a target exactly once. A per-token array
aligned with the tokens (the IL store, the noise mask) therefore reads window ``i``'s targets at
positions ``i * seq_len + 1`` ... ``(i + 1) * seq_len``: rows of ``array[1 : num_windows * seq_len + 1]``
reshaped to ``[num_windows, seq_len]``. Position 0 and the tail after the last window are never
targets. Windows run across document ends (the end-of-document id separates documents), as in
nanoGPT; splits are by file, so no window mixes splits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from rholoss.data.indexed import SizedDataset


def num_windows(num_tokens: int, seq_len: int) -> int:
    """Windows of ``seq_len`` predictions in ``num_tokens`` tokens."""
    return max(num_tokens - 1, 0) // seq_len


def target_rows(array: np.ndarray, seq_len: int) -> np.ndarray:
    """``array`` (aligned with the tokens) as ``[num_windows, seq_len]`` rows of each window's target
    positions: a view, nothing is read."""
    count = num_windows(len(array), seq_len)
    return array[1 : count * seq_len + 1].reshape(count, seq_len)


def input_rows(array: np.ndarray, seq_len: int) -> np.ndarray:
    """``array`` as ``[num_windows, seq_len]`` rows of each window's input positions (a view)."""
    count = num_windows(len(array), seq_len)
    return array[: count * seq_len].reshape(count, seq_len)


class TokenWindows(SizedDataset):
    """The windows of a (memory-mapped) token array; item ``i`` is ``(i, x_i, y_i)``, int64 ids.

    ``__getitems__`` reads a whole batch with one gather per array, which the DataLoader uses when
    batching: a large batch of windows costs two reads, not ``2 * batch`` small ones.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int) -> None:
        self.tokens = tokens
        self.seq_len = seq_len
        self.inputs = input_rows(tokens, seq_len)
        self.targets = target_rows(tokens, seq_len)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[int, Tensor, Tensor]:
        return (
            index,
            torch.from_numpy(self.inputs[index].astype(np.int64)),
            torch.from_numpy(self.targets[index].astype(np.int64)),
        )

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        rows = np.asarray(indices, dtype=np.int64)
        return (
            torch.from_numpy(rows),
            torch.from_numpy(self.inputs[rows].astype(np.int64)),
            torch.from_numpy(self.targets[rows].astype(np.int64)),
        )

    def tensors(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of every window on ``device``: two ``[num_windows, seq_len]`` views of one int64
        copy of the tokens (a window's targets are the next window's inputs shifted by one)."""
        count, seq_len = len(self), self.seq_len
        tokens = torch.from_numpy(np.asarray(self.tokens[: count * seq_len + 1], dtype=np.int64)).to(device)
        return tokens[:-1].view(count, seq_len), tokens[1:].view(count, seq_len)


def batched(batch: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """The DataLoader's collate function for :class:`TokenWindows`: its ``__getitems__`` already
    returns the batch."""
    return batch
