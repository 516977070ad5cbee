"""Large batches served straight from tensors on the training device.

For datasets that fit in (GPU) memory, per-sample ``__getitem__`` + collate costs more than the
selection forward pass it feeds. Here a batch is one gather by index: no workers, no collation,
no host-to-device copy per step.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler, TensorDataset

from rholoss.data.indexed import IndexedDataset


class EpochPermutation(Sampler[int]):
    """A new seeded permutation of ``range(n)`` each epoch. The DataLoader path uses it as its
    sampler and :class:`InMemoryBatches` draws the same permutations, so both paths give the same
    batches for the same seed."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)

    def permutation(self) -> Tensor:
        return torch.randperm(self.n, generator=self.generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.permutation().tolist())

    def __len__(self) -> int:
        return self.n


class InMemoryBatches:
    """Iterable of ``(index, x, y)`` batches over tensors on one device, in the order of ``shuffler``
    (None: index order). Only the permutation (n int64 values) is copied to the device each epoch.
    ``positions`` serves only those rows (a restricted pool), their indices unchanged."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        drop_last: bool,
        shuffler: EpochPermutation | None = None,
        positions: Tensor | None = None,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size, self.drop_last, self.shuffler = batch_size, drop_last, shuffler
        self.positions = None if positions is None else positions.to(y.device)

    def _size(self) -> int:
        return len(self.y) if self.positions is None else len(self.positions)

    def __len__(self) -> int:
        n = self._size()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        if self.shuffler is not None:
            order = self.shuffler.permutation().to(self.y.device, non_blocking=True)
        else:
            order = torch.arange(self._size(), device=self.y.device)
        if self.positions is not None:
            order = self.positions[order]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield index, self.x[index], self.y[index]


def in_memory_tensors(dataset: IndexedDataset, device: torch.device) -> tuple[Tensor, Tensor]:
    """``(x, y)`` of a tensor-backed split, gathered once and moved to ``device``."""
    if not isinstance(dataset.source, TensorDataset) or dataset.transform is not None:
        raise ValueError(
            "datamodule.on_device=true needs a dataset held in memory as tensors without a per-sample "
            "transform; use datamodule.on_device=false (the DataLoader path) for this dataset."
        )
    return dataset.source.tensors[0][dataset.source_indices].to(device), dataset.labels.to(device)
