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
    """A seeded permutation of ``range(n)`` per epoch. The DataLoader path uses it as its sampler and
    :class:`InMemoryBatches` draws the same permutations, so both paths give the same batches.

    Epoch ``e`` is ``randperm(n)`` from a generator seeded with ``seed + e`` (as DistributedSampler),
    not a generator carried from epoch to epoch: a resumed run reaches any epoch's order from the
    seed and the epoch number alone. Each iteration serves the next epoch.

    Under DDP, rank ``r`` of ``world_size`` takes every ``world_size``-th point of the epoch's
    permutation from position ``r`` (the tail that does not divide evenly is left out), so the ranks
    draw disjoint shares of the pool, as DistributedSampler does.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}.")
        self.pool_size = n
        self.n = n // world_size  # points this rank draws per epoch
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0  # the epoch the next iteration serves
        self.skip = 0  # points of that epoch already trained on before a resume

    def start_after(self, batches: int, batch_size: int, drop_last: bool) -> None:
        """Continue after ``batches`` batches of ``batch_size`` have been trained on (resume):
        the next iteration serves the rest of that epoch, then whole epochs again."""
        per_epoch = self.n // batch_size if drop_last else -(-self.n // batch_size)
        self.epoch, done = divmod(batches, per_epoch)
        self.skip = done * batch_size

    def permutation(self) -> Tensor:
        order = torch.randperm(self.pool_size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        order = order[self.rank : self.n * self.world_size : self.world_size][self.skip :]
        self.epoch, self.skip = self.epoch + 1, 0
        return order

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
        n = self._size() if self.shuffler is None else len(self.shuffler)  # a DDP rank's share
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        if self.shuffler is not None:
            order = self.shuffler.permutation().to(self.y.device, non_blocking=True)
        else:
            order = torch.arange(self._size(), device=self.y.device)
        if self.positions is not None:
            order = self.positions[order]
        # A resumed epoch's order is shorter: it holds only the points not yet trained on.
        end = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        for start in range(0, end, self.batch_size):
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
