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
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset

from rholoss.data.augment import BatchAugment
from rholoss.data.fingerprint import pool_fingerprint
from rholoss.data.in_memory import EpochPermutation, InMemoryBatches, in_memory_tensors
from rholoss.data.indexed import IndexedDataset, SizedDataset, subset_labels
from rholoss.data.noise import apply_label_noise
from rholoss.data.splits import split_indices


@dataclass(frozen=True)
class Sources:
    """What a dataset family provides: a labelled training source and a labelled test source, and
    optionally its own holdout and validation sources (QMNIST's extra digits, CINIC-10's valid folder,
    Clothing-1M's clean sets).

    All are map-style datasets returning ``(x, y)``; each ``*_targets`` holds the same labels as a
    tensor so splitting and noise need no pass over the inputs. Without a holdout source the holdout
    is split off the training source; without a val source, val is split off the training source or
    the holdout (``val_from``).
    """

    train: Dataset
    train_targets: Tensor
    test: Dataset
    test_targets: Tensor
    holdout: Dataset | None = None
    holdout_targets: Tensor | None = None
    val: Dataset | None = None
    val_targets: Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("holdout", "val"):
            if (getattr(self, name) is None) != (getattr(self, f"{name}_targets") is None):
                raise ValueError(f"Sources needs both {name} and {name}_targets, or neither.")

    @classmethod
    def from_tensors(cls, **splits: tuple[Tensor, Tensor]) -> Sources:
        """Sources of in-memory ``(inputs, labels)`` pairs: ``train`` and ``test``, optionally
        ``holdout`` and ``val``."""
        fields: dict[str, Any] = {}
        for name, (x, y) in splits.items():
            fields |= {name: TensorDataset(x, y), f"{name}_targets": y}
        return cls(**fields)


class SplitDataModule(pl.LightningDataModule):
    """What every training source shares with the pipelines: named splits (``pool``, ``holdout``,
    ``val``, ``test``) of points that travel with their index, and their loaders.

    ``train_split`` says which split :meth:`train_dataloader` serves: the pool for target training
    (large batches of ``batch_size``), the holdout for IL training. ``on_device`` serves in-memory
    splits as tensors on the training device (:class:`InMemoryBatches`) instead of through a
    DataLoader; both give the same batches for the same seed. ``pool_includes_holdout`` (a subclass
    joins the holdout to the pool in ``setup``) rules out training on the holdout. A subclass fills
    ``_datasets`` in ``setup`` (after :meth:`draw_shuffle_seed`) and says how a split is held in memory
    (:meth:`split_tensors`).
    """

    name: str = "dataset"
    num_classes: int | None
    input_shape: tuple[int, ...]
    # What ``y`` is: class labels (``num_classes``), real values (``target_dim`` per point) or a window's
    # next-token ids (``tokens``: a language-model corpus, ``num_classes`` ids); the task (``task=``)
    # must fit it.
    target_kind: Literal["class", "real", "tokens"] = "class"
    target_dim: int = 1
    # Batches of the DataLoader path; None: torch's default (stacks fixed-shape tensors). Text sets one
    # that pads each batch to its longest sequence.
    collate_fn: Callable[[Any], Any] | None = None
    # Per-sample augmentation of target training through ``train_transform`` (PoolDataModule's setting).
    augment: bool = False
    # Set by a subclass's setup: the pool's identity, which an IL store must match, and which pool
    # points were corrupted by the noise put in (all False without noise).
    fingerprint: dict[str, Any]
    corrupted: Tensor

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int = 1024,
        split_seed: int = 0,
        train_split: Literal["pool", "holdout"] = "pool",
        num_workers: int = 0,
        on_device: bool = False,
        pool_includes_holdout: bool = False,
    ) -> None:
        super().__init__()
        if train_split not in ("pool", "holdout"):
            raise ValueError(f"train_split must be 'pool' or 'holdout', got {train_split!r}.")
        if pool_includes_holdout and train_split == "holdout":
            raise ValueError(
                "train_split='holdout' with pool_includes_holdout=true: the holdout is part of the pool, so a model "
                "trained on it would score pool points it has seen. Train IL models on halves of the pool instead."
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.split_seed = split_seed
        self.train_split = train_split
        self.num_workers = num_workers
        self.on_device = on_device
        self.pool_includes_holdout = pool_includes_holdout
        self.relevant: Tensor | None = None  # per pool point: is its (given) class relevant
        self.train_positions: Tensor | None = None  # restrict_training: the points train_dataloader serves
        # Per-sample input transforms of the DataLoader path (None for in-memory tensors): ``train_transform``
        # augments target training when ``augment`` is on, ``eval_transform`` serves everything else (IL
        # training and scoring included).
        self.train_transform: Callable | None = None
        self.eval_transform: Callable | None = None
        self._on_device: dict[str, tuple[Tensor, Tensor]] = {}
        self._datasets: dict[str, SizedDataset] = {}

    def draw_shuffle_seed(self) -> None:
        """The seed of every training epoch's order, drawn at setup from the seeded global RNG and not
        when a loader is made: a resumed run restores the RNG state of its checkpoint before Lightning
        asks for the loader."""
        self.shuffle_seed = int(torch.randint(0, 2**62, (1,)))

    @property
    def has_noise(self) -> bool:
        """Whether noise was put into the pool (``corrupted`` then says where); a subclass that adds
        noise says so."""
        return False

    def sample_ids(self, split: str = "pool") -> Any:
        """Stable ids of the points of ``split`` in index order (an IL store is then keyed by them too,
        and can be joined with the data in any tool), or None where the data has none."""
        return None

    def pool_noise(self) -> Tensor | None:
        """Where the pool's noise is, for counting what training spent on it: ``[N]`` per point
        (corrupted labels), or ``[N, T]`` per target token for sequences; None for a clean pool."""
        return self.corrupted if self.has_noise else None

    @property
    def sequence_length(self) -> int | None:
        """Tokens per point when points are sequences (a language-model corpus); None otherwise."""
        return None

    def noise_settings(self) -> str:
        """The settings that put noise into the pool, as a user would write them."""
        return f"label_noise={getattr(self, 'label_noise', None)}"

    def model_kwargs(self) -> dict[str, Any]:
        """What a model needs to know about the inputs beyond ``input_shape`` and ``num_classes``
        (text: the tokenizer's vocabulary size and padding id); valid after :meth:`setup`."""
        return {}

    def split(self, name: str) -> SizedDataset:
        if not self._datasets:
            raise RuntimeError("Call setup() before asking for a split.")
        return self._datasets[name]

    def train_augmentation(self) -> BatchAugment | None:
        """The batched augmentation for target training; None here."""
        return None

    def restrict_training(self, positions: Tensor | None) -> None:
        """Let :meth:`train_dataloader` serve only these positions of the training split (None: all
        of it): an SVP core-set of the pool, one half of the pool or a share of the holdout for an IL
        model. Batches keep the points' indices in the split, so the IL store, the noise mask and the
        selection statistics still apply; :meth:`pool_dataloader` still covers the whole pool."""
        if positions is None:
            self.train_positions = None
            return
        split_size = len(self.split(self.train_split))
        positions = torch.as_tensor(positions, dtype=torch.long)
        if positions.ndim != 1 or len(positions) == 0:
            raise ValueError("restrict_training needs a non-empty 1-d tensor of positions.")
        if int(positions.min()) < 0 or int(positions.max()) >= split_size:
            raise ValueError(
                f"restrict_training: positions must lie in [0, {split_size}), the {self.train_split} split's size."
            )
        if len(positions) < self.batch_size:
            raise ValueError(
                f"Training on {len(positions)} points of the {self.train_split} split, fewer than one batch "
                f"of {self.batch_size}: lower the batch size or train on more points."
            )
        self.train_positions = positions

    def _loader(
        self,
        name: str,
        batch_size: int,
        shuffle: bool,
        drop_last: bool = False,
        positions: Tensor | None = None,
        augment: bool = False,
    ) -> Iterable:
        """Batches of split ``name``, or only of its points ``positions`` (their indices unchanged);
        ``augment``: through ``train_transform`` (DataLoader path)."""
        dataset = self.split(name)
        if augment and self.train_transform is not None and isinstance(dataset, IndexedDataset):
            dataset = dataset.with_transform(self.train_transform)
        size = len(dataset) if positions is None else len(positions)
        shuffler = None
        if shuffle:
            # Under DDP each rank draws its own share of the split (see EpochPermutation).
            rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
            shuffler = EpochPermutation(size, self.shuffle_seed, rank, world_size)
            shuffler.start_after(self._batches_trained(), batch_size, drop_last)
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
            # Its own generator (worker seeds), so that loading never draws from the global RNG.
            generator=torch.Generator().manual_seed(self.shuffle_seed),
            collate_fn=self.collate_fn,
        )

    def _batches_trained(self) -> int:
        """Training batches already done: 0, or the restored step count of a resumed run (Lightning
        restores its loops before it asks for the training loader)."""
        if self.trainer is None:
            return 0
        return self.trainer.global_step * self.trainer.accumulate_grad_batches

    def _device_tensors(self, name: str) -> tuple[Tensor, Tensor]:
        """The split's inputs and labels on the training device, copied there once."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        cached = self._on_device.get(name)
        if cached is None or cached[1].device != device:
            cached = self._on_device[name] = self.split_tensors(name, device)
        return cached

    def split_tensors(self, name: str, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of split ``name`` as tensors on ``device``, whose rows are its points (on_device)."""
        split = self.split(name)
        if not isinstance(split, IndexedDataset):
            raise TypeError(
                f"{type(self).__name__} serves {name} as {type(split).__name__}: give it a split_tensors()."
            )
        return in_memory_tensors(split, device)

    def train_dataloader(self) -> Iterable:
        # Large batches for the target keep a constant size n_B, so every step selects the same n_b.
        pool = self.train_split == "pool"
        augment = pool and self.augment  # the IL model trains on un-augmented inputs
        return self._loader(
            self.train_split,
            self.batch_size,
            shuffle=True,
            drop_last=pool,
            positions=self.train_positions,
            augment=augment,
        )

    def val_dataloader(self) -> Iterable:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> Iterable:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def pool_dataloader(self, positions: Tensor | None = None) -> Iterable:
        """The pool (or its points at ``positions``) in order, indexed by pool position and without
        augmentation, for computing irreducible losses."""
        return self._loader("pool", self.eval_batch_size, shuffle=False, positions=positions)

    def describe(self) -> dict[str, Any]:
        return {name: len(ds) for name, ds in self._datasets.items()}


class PoolDataModule(SplitDataModule):
    """Four seeded splits of one dataset: ``pool`` (the target model selects from it), ``holdout``
    (trains the IL model), ``val`` (model choice) and ``test``.

    ``train_subset`` keeps only the first that many points of the training source before splitting, for quick runs.
    ``relevant_classes`` keeps only those classes in holdout, val and test while the pool keeps all
    (the paper's relevance experiment): the IL model then learns which points matter.
    ``val_from`` says where val is split off when the dataset has no val source of its own: the
    training source before the pool/holdout split (``train``), or the holdout (``holdout``: the pool
    keeps the paper's size, e.g. half of CIFAR's training set).
    ``noise_type`` ``uniform`` corrupts a ``label_noise`` fraction of the pool with random other
    classes; ``structured`` flips each class ``source`` of ``noise_pairs`` (default: the paper's MNIST
    pairs) to ``target`` with probability ``label_noise``.
    ``augment`` asks the target model to crop (``crop_padding``) and flip each large batch on the
    device (:meth:`train_augmentation`), or, for datasets decoded per sample, the DataLoader to apply
    ``train_transform``; the IL stage and all evaluation see un-augmented inputs.
    ``pool_includes_holdout`` makes the pool every labelled training point: the noisy pool followed
    by the holdout points, clean (never corrupted), as they are. A baseline that needs no IL model
    (uniform) should see all the data the user has, so a method that spends the holdout on an IL
    model is compared fairly; an IL model may then only come from ``irreducible.strategy=two_halves``.
    """

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
        val_from: Literal["train", "holdout"] = "train",
        noise_type: Literal["uniform", "structured"] = "uniform",
        noise_pairs: list[list[int]] | None = None,
        augment: bool = False,
        crop_padding: int = 4,
        pool_includes_holdout: bool = False,
    ) -> None:
        super().__init__(
            batch_size, eval_batch_size, split_seed, train_split, num_workers, on_device, pool_includes_holdout
        )
        if val_from not in ("train", "holdout"):
            raise ValueError(f"val_from must be 'train' or 'holdout', got {val_from!r}.")
        if noise_type not in ("uniform", "structured"):
            raise ValueError(f"noise_type must be 'uniform' or 'structured', got {noise_type!r}.")
        self.val_size = val_size
        self.holdout_fraction = holdout_fraction
        self.label_noise = label_noise
        self.train_subset = train_subset
        self.relevant_classes = sorted(relevant_classes) if relevant_classes is not None else None
        self.val_from = val_from
        self.noise_type = noise_type
        self.noise_pairs = [(int(pair[0]), int(pair[1])) for pair in noise_pairs] if noise_pairs is not None else None
        self.augment = augment
        self.crop_padding = crop_padding

    @abstractmethod
    def load_sources(self) -> Sources:
        """Load (or download) the data; raise a clear error naming every way to provide it."""

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:  # idempotent: the pipelines call it before Lightning does
            return
        self.draw_shuffle_seed()
        sources = self.load_sources()
        classes = self.relevant_classes
        if classes is not None and self.target_kind != "class":
            raise ValueError(f"datamodule.relevant_classes needs class labels; {self.name} has real-valued targets.")
        if classes is not None and (not classes or not set(classes) <= set(range(self.num_classes or 0))):
            raise ValueError(
                f"datamodule.relevant_classes={classes} must be a non-empty list of this dataset's "
                f"classes, 0 to {(self.num_classes or 0) - 1}; null keeps all classes."
            )
        num_train = len(sources.train_targets)
        if self.train_subset is not None:
            num_train = min(num_train, self.train_subset)
        parts = self._split_sources(sources, num_train)
        pool_source, pool_targets, pool_indices = parts["pool"]
        clean = subset_labels(pool_targets, pool_indices)
        noisy = apply_label_noise(
            clean, self.noise_type, self.label_noise, self.num_classes or 0, self.noise_pairs, seed=self.split_seed + 1
        )
        holdout = self._evaluation_split(*parts["holdout"])
        pool = IndexedDataset(pool_source, pool_indices, noisy.labels, self.eval_transform)
        self.corrupted, identity = noisy.corrupted, pool_indices
        if self.pool_includes_holdout:
            pool, identity = _joined(pool, holdout)
            self.corrupted = torch.cat([noisy.corrupted, torch.zeros(len(holdout), dtype=torch.bool)])
        self.fingerprint = pool_fingerprint(
            self.name,
            identity,
            pool.labels,
            split_seed=self.split_seed,
            val_size=self.val_size,
            holdout_fraction=self.holdout_fraction,
            label_noise=self.label_noise,
            train_subset=self.train_subset,
            relevant_classes=self.relevant_classes,
            val_from=self.val_from,
            noise_type=self.noise_type,
            noise_pairs=[list(pair) for pair in self.noise_pairs] if self.noise_pairs is not None else None,
            # Only when set, so that the fingerprints of stores made before the option stay valid.
            **({"pool_includes_holdout": True} if self.pool_includes_holdout else {}),
        )
        self._datasets = {
            "pool": pool,
            "holdout": holdout,
            **{name: self._evaluation_split(*parts[name]) for name in ("val", "test")},
        }
        if self.relevant_classes is not None:
            self.relevant = torch.isin(pool.labels, torch.tensor(self.relevant_classes))
        if len(self._datasets[self.train_split]) < self.batch_size:
            raise ValueError(
                f"The {self.train_split} split has {len(self._datasets[self.train_split])} points, fewer "
                f"than one batch of {self.batch_size}: lower the batch size or use more data."
            )

    def _split_sources(self, sources: Sources, num_train: int) -> dict[str, tuple[Dataset, Tensor, Tensor]]:
        """``(source, targets, indices)`` of each split. One seeded permutation per source that gets
        split: val (unless the dataset has its own) comes off ``val_from``, the holdout off the
        training source unless the dataset has its own."""
        train = (sources.train, sources.train_targets)
        val_size = 0 if sources.val is not None else self.val_size
        if sources.holdout is None:
            holdout = train
            if self.val_from == "train":
                splits = split_indices(num_train, val_size, self.holdout_fraction, self.split_seed)
                pool_indices, holdout_indices, val = splits.pool, splits.holdout, (*train, splits.val)
            else:
                splits = split_indices(num_train, 0, self.holdout_fraction, self.split_seed)
                pool_indices, holdout_indices = splits.pool, splits.holdout
                carved = split_indices(len(holdout_indices), val_size, 0.0, self.split_seed)
                holdout_indices, val = holdout_indices[carved.pool], (*train, holdout_indices[carved.val])
        else:
            holdout_targets = sources.holdout_targets
            assert holdout_targets is not None  # Sources has both or neither
            holdout = (sources.holdout, holdout_targets)
            if self.val_from == "train":
                carved = split_indices(num_train, val_size, 0.0, self.split_seed)
                pool_indices, val = carved.pool, (*train, carved.val)
                holdout_indices = torch.arange(len(holdout_targets))
            else:
                pool_indices = torch.arange(num_train)
                carved = split_indices(len(holdout_targets), val_size, 0.0, self.split_seed)
                holdout_indices, val = carved.pool, (*holdout, carved.val)
        if sources.val is not None:
            assert sources.val_targets is not None  # Sources has both or neither
            val = (sources.val, sources.val_targets, torch.arange(len(sources.val_targets)))
        return {
            "pool": (*train, pool_indices),
            "holdout": (*holdout, holdout_indices),
            "val": val,
            "test": (sources.test, sources.test_targets, torch.arange(len(sources.test_targets))),
        }

    def _evaluation_split(self, source: Dataset, targets: Tensor, indices: Tensor) -> IndexedDataset:
        labels = subset_labels(targets, indices)
        if self.relevant_classes is not None:
            keep = torch.isin(labels, torch.tensor(self.relevant_classes))
            indices, labels = indices[keep], labels[keep]
        return IndexedDataset(source, indices, labels, self.eval_transform)

    @property
    def has_noise(self) -> bool:
        return self.label_noise > 0

    def train_augmentation(self) -> BatchAugment | None:
        """The batched augmentation for target training, or None when ``augment`` is off or the
        dataset augments per sample in its DataLoader (``train_transform``)."""
        if not self.augment or self.train_transform is not None:
            return None
        if len(self.input_shape) != 3:
            raise ValueError(
                f"datamodule.augment=true crops and flips images, but {self.name} inputs have shape "
                f"{tuple(self.input_shape)}: set datamodule.augment=false."
            )
        return BatchAugment(self.crop_padding)


def _joined(pool: IndexedDataset, holdout: IndexedDataset) -> tuple[IndexedDataset, Tensor]:
    """The pool's points followed by the holdout's, each with its own label, and their identity for
    the fingerprint (positions in the source, the holdout's after the pool source's when the two
    differ). Splits of one source share it; tensors of two sources become one tensor source of just
    these rows (so ``on_device`` still serves them); any other two sources are concatenated."""
    labels = torch.cat([pool.labels, holdout.labels])
    shared = holdout.source is pool.source
    offset = 0 if shared else len(pool.source)  # type: ignore[arg-type]  # a datamodule's sources are sized
    identity = torch.cat([pool.source_indices, holdout.source_indices + offset])
    if shared:
        return IndexedDataset(pool.source, identity, labels, pool.transform), identity
    if isinstance(pool.source, TensorDataset) and isinstance(holdout.source, TensorDataset):
        rows = [pool.source.tensors[0][pool.source_indices], holdout.source.tensors[0][holdout.source_indices]]
        rows_only = TensorDataset(torch.cat(rows), labels)
        return IndexedDataset(rows_only, torch.arange(len(labels)), labels, pool.transform), identity
    both: ConcatDataset[Any] = ConcatDataset([pool.source, holdout.source])
    return IndexedDataset(both, identity, labels, pool.transform), identity
