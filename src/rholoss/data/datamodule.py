"""The DataModule every dataset family builds on: splits, label noise, fingerprint and loaders.

A subclass only says how to load its source data (:meth:`PoolDataModule.load_sources`); everything
that the IL store and the selection statistics depend on is done here, once, the same way for all.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from rholoss.data.augment import BatchAugment
from rholoss.data.fingerprint import pool_fingerprint
from rholoss.data.in_memory import EpochPermutation, InMemoryBatches, in_memory_tensors
from rholoss.data.indexed import IndexedDataset, subset_labels
from rholoss.data.noise import uniform_label_noise
from rholoss.data.splits import split_indices


@dataclass(frozen=True)
class Sources:
    """What a dataset family provides: a labelled training source and a labelled test source.

    Both are map-style datasets returning ``(x, y)``; ``train_targets``/``test_targets`` hold the
    same labels as a tensor so splitting and noise need no pass over the inputs.
    """

    train: Dataset
    train_targets: Tensor
    test: Dataset
    test_targets: Tensor


class PoolDataModule(pl.LightningDataModule):
    """Four seeded splits of one dataset: ``pool`` (the target model selects from it), ``holdout``
    (trains the IL model), ``val`` (model choice) and ``test``.

    ``train_split`` says which split :meth:`train_dataloader` serves: the pool for target training
    (large batches of ``batch_size``), the holdout for IL training. ``train_subset`` keeps only the
    first that many points of the training source before splitting, for quick runs.
    ``relevant_classes`` keeps only those classes in holdout, val and test while the pool keeps all
    (the paper's relevance experiment): the IL model then learns which points matter.
    ``on_device`` serves in-memory datasets as tensors on the training device (:class:`InMemoryBatches`)
    instead of through a DataLoader; both give the same batches for the same seed.
    ``augment`` asks the target model to crop (``crop_padding``) and flip each large batch on the
    device (:meth:`train_augmentation`); the IL stage and all evaluation see un-augmented inputs.
    """

    name: str = "dataset"
    num_classes: int
    input_shape: tuple[int, ...]
    # Batches of the DataLoader path; None: torch's default (stacks fixed-shape tensors). Text sets one
    # that pads each batch to its longest sequence.
    collate_fn: Callable[[list[Any]], Any] | None = None

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int = 1024,
        val_size: int = 5000,
        holdout_fraction: float = 0.5,
        label_noise: float = 0.0,
        split_seed: int = 0,
        train_split: Literal["pool", "holdout"] = "pool",
        num_workers: int = 0,
        train_subset: int | None = None,
        relevant_classes: list[int] | None = None,
        on_device: bool = False,
        augment: bool = False,
        crop_padding: int = 4,
    ) -> None:
        super().__init__()
        if train_split not in ("pool", "holdout"):
            raise ValueError(f"train_split must be 'pool' or 'holdout', got {train_split!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.holdout_fraction = holdout_fraction
        self.label_noise = label_noise
        self.split_seed = split_seed
        self.train_split = train_split
        self.num_workers = num_workers
        self.train_subset = train_subset
        self.relevant_classes = sorted(relevant_classes) if relevant_classes is not None else None
        self.relevant: Tensor | None = None  # per pool point: is its (given) class relevant
        self.on_device = on_device
        self.augment = augment
        self.crop_padding = crop_padding
        self.pool_positions: Tensor | None = None  # restrict_pool: the pool points target training draws
        self._on_device: dict[str, tuple[Tensor, Tensor]] = {}
        self._datasets: dict[str, IndexedDataset] = {}

    @abstractmethod
    def load_sources(self) -> Sources:
        """Load (or download) the data; raise a clear error naming every way to provide it."""

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:  # idempotent: the pipelines call it before Lightning does
            return
        sources = self.load_sources()
        num_train = len(sources.train_targets)
        if self.train_subset is not None:
            num_train = min(num_train, self.train_subset)
        splits = split_indices(num_train, self.val_size, self.holdout_fraction, self.split_seed)
        clean = subset_labels(sources.train_targets, splits.pool)
        noisy = uniform_label_noise(clean, self.label_noise, self.num_classes, seed=self.split_seed + 1)
        self.corrupted = noisy.corrupted
        self.fingerprint = pool_fingerprint(
            self.name,
            splits.pool,
            noisy.labels,
            split_seed=self.split_seed,
            val_size=self.val_size,
            holdout_fraction=self.holdout_fraction,
            label_noise=self.label_noise,
            train_subset=self.train_subset,
            relevant_classes=self.relevant_classes,
        )
        self._datasets = {
            "pool": IndexedDataset(sources.train, splits.pool, noisy.labels),
            "holdout": self._evaluation_split(sources.train, sources.train_targets, splits.holdout),
            "val": self._evaluation_split(sources.train, sources.train_targets, splits.val),
            "test": self._evaluation_split(sources.test, sources.test_targets, torch.arange(len(sources.test_targets))),
        }
        if self.relevant_classes is not None:
            self.relevant = torch.isin(noisy.labels, torch.tensor(self.relevant_classes))
        if len(self._datasets[self.train_split]) < self.batch_size:
            raise ValueError(
                f"The {self.train_split} split has {len(self._datasets[self.train_split])} points, fewer "
                f"than one batch of {self.batch_size}: lower the batch size or use more data."
            )

    def _evaluation_split(self, source: Dataset, targets: Tensor, indices: Tensor) -> IndexedDataset:
        labels = subset_labels(targets, indices)
        if self.relevant_classes is not None:
            keep = torch.isin(labels, torch.tensor(self.relevant_classes))
            indices, labels = indices[keep], labels[keep]
        return IndexedDataset(source, indices, labels)

    def model_kwargs(self) -> dict[str, Any]:
        """What a model needs to know about the inputs beyond ``input_shape`` and ``num_classes``
        (text: the tokenizer's vocabulary size and padding id); valid after :meth:`setup`."""
        return {}

    def split(self, name: str) -> IndexedDataset:
        if not self._datasets:
            raise RuntimeError("Call setup() before asking for a split.")
        return self._datasets[name]

    @property
    def has_label_noise(self) -> bool:
        return self.label_noise > 0

    def train_augmentation(self) -> BatchAugment | None:
        """The batched augmentation for target training, or None when ``augment`` is off."""
        if not self.augment:
            return None
        if len(self.input_shape) != 3:
            raise ValueError(
                f"datamodule.augment=true crops and flips images, but {self.name} inputs have shape "
                f"{tuple(self.input_shape)}: set datamodule.augment=false."
            )
        return BatchAugment(self.crop_padding)

    def restrict_pool(self, positions: Tensor) -> None:
        """Serve only these pool points for target training (a core-set chosen before training).

        Indices stay pool positions, so the IL store, the noise mask and the selection statistics
        keep applying; the pool loader for scoring still covers the whole pool.
        """
        pool_size = len(self.split("pool"))
        positions = torch.as_tensor(positions, dtype=torch.long)
        if positions.ndim != 1 or len(positions) == 0:
            raise ValueError("restrict_pool needs a non-empty 1-d tensor of pool positions.")
        if int(positions.min()) < 0 or int(positions.max()) >= pool_size:
            raise ValueError(f"restrict_pool: positions must lie in [0, {pool_size}), the pool's size.")
        if len(positions) < self.batch_size:
            raise ValueError(
                f"The restricted pool has {len(positions)} points, fewer than one batch of {self.batch_size}: "
                "keep more points or lower the batch size."
            )
        self.pool_positions = positions

    def _loader(
        self, name: str, batch_size: int, shuffle: bool, drop_last: bool = False, positions: Tensor | None = None
    ) -> Iterable:
        """Batches of split ``name``, or only of its points ``positions`` (their indices unchanged)."""
        dataset = self.split(name)
        size = len(dataset) if positions is None else len(positions)
        # Seeded from the global RNG, so a seeded run shuffles the same way on either path.
        shuffler = EpochPermutation(size, int(torch.randint(0, 2**62, (1,)))) if shuffle else None
        if self.on_device:
            x, y = self._device_tensors(name)
            return InMemoryBatches(x, y, batch_size, drop_last, shuffler, positions)
        return DataLoader(
            dataset if positions is None else Subset(dataset, positions.tolist()),
            batch_size=batch_size,
            sampler=shuffler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn,
        )

    def _device_tensors(self, name: str) -> tuple[Tensor, Tensor]:
        """The split's inputs and labels on the training device, copied there once."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        cached = self._on_device.get(name)
        if cached is None or cached[1].device != device:
            cached = self._on_device[name] = in_memory_tensors(self.split(name), device)
        return cached

    def train_dataloader(self) -> Iterable:
        # Large batches for the target keep a constant size n_B, so every step selects the same n_b.
        pool = self.train_split == "pool"
        positions = self.pool_positions if pool else None
        return self._loader(self.train_split, self.batch_size, shuffle=True, drop_last=pool, positions=positions)

    def val_dataloader(self) -> Iterable:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> Iterable:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def pool_dataloader(self) -> Iterable:
        """The pool in index order and without augmentation, for computing irreducible losses."""
        return self._loader("pool", self.eval_batch_size, shuffle=False)

    def describe(self) -> dict[str, Any]:
        return {name: len(ds) for name, ds in self._datasets.items()}
