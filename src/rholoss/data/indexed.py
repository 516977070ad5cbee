"""The index contract: every training point travels with its position in the pool.

The IL store is keyed by pool position, so the target model can look up a point's irreducible loss
with a gather. One wrapper serves every map-style dataset; labels come from the wrapper (not the
source) because label noise is applied to the pool after splitting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset


class SizedDataset(Dataset[Any], ABC):
    """A map-style dataset that knows how many points it has (torch's ``Dataset`` does not declare
    ``__len__``): what every split of a datamodule is."""

    @abstractmethod
    def __len__(self) -> int: ...


class IndexedDataset(SizedDataset):
    """A view of ``source`` restricted to ``source_indices`` that yields ``(index, x, y)``.

    ``index`` is the position inside this view (0..len-1), ``x`` the source's input (optionally
    transformed) and ``y`` the label from ``labels``, which may differ from the source's label.
    """

    def __init__(
        self, source: Dataset, source_indices: Tensor, labels: Tensor, transform: Callable[[Any], Any] | None = None
    ) -> None:
        if len(source_indices) != len(labels):
            raise ValueError(
                f"IndexedDataset needs one label per point: got {len(source_indices)} indices and {len(labels)} labels."
            )
        self.source = source
        self.source_indices = source_indices.long()
        self.labels = as_targets(labels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source_indices)

    def __getitem__(self, index: int) -> tuple[int, Any, Tensor]:
        x = self.source[int(self.source_indices[index])][0]
        if self.transform is not None:
            x = self.transform(x)
        return index, x, self.labels[index]

    def with_transform(self, transform: Callable[[Any], Any] | None) -> IndexedDataset:
        """The same points and labels with another input transform (e.g. augmentation for training)."""
        return IndexedDataset(self.source, self.source_indices, self.labels, transform)


def as_targets(targets: Tensor) -> Tensor:
    """Class labels as int64; real-valued targets (regression) keep their floating dtype."""
    targets = torch.as_tensor(targets)
    return targets if targets.is_floating_point() else targets.long()


def subset_labels(targets: Tensor, indices: Tensor) -> Tensor:
    """Labels (or real-valued targets) of the points ``indices`` of a source whose labels are ``targets``."""
    return as_targets(torch.as_tensor(targets)[indices])
