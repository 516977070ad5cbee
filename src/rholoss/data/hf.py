"""Any Hugging Face ``datasets`` dataset as a :class:`PoolDataModule` (``datamodule=hf``).

The dataset is opened as it is (:func:`~rholoss.data.hf_files.open_dataset`: a ``save_to_disk``
folder, data files, or a cached hub dataset) and its named splits play the datamodule's roles:
``train`` is split into pool / holdout / val as for every dataset, ``test`` is the test set, and a
dataset's own ``validation`` (or a split named for ``holdout``) is used whole. Labels (and the sample
ids) are read once as columns; inputs stay in the Arrow files and are read per point:

- images (an ``Image`` feature or encoded bytes) are decoded in the DataLoader's workers, resized and
  standardised there (:class:`~rholoss.data.lazy_images.ImageTransform`);
- text (one column, or two for sentence pairs) is tokenized once with ``datasets.map(batched=True,
  num_proc=...)`` into a cached Arrow file and served padded per batch;
- numbers (one or more numeric columns, or a column of numeric lists) are read into memory as one
  float tensor: the on-device fast path applies.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rholoss.data.datamodule import PoolDataModule, Sources
from rholoss.data.hf_files import open_dataset, require_datasets
from rholoss.data.hf_text import PadToLongest, load_tokenizer
from rholoss.data.lazy_images import (
    MODE_CHANNELS,
    STATISTICS_SAMPLE,
    ImageTransform,
    colour_mode,
    image_statistics,
    open_image,
    sample_positions,
)
from rholoss.data.splits import split_indices

# The datamodule's roles and the dataset splits that fill them unless datamodule.splits says otherwise.
ROLES = ("train", "test", "holdout", "val")
DEFAULT_SPLITS = {"train": "train", "test": "test", "val": "validation"}
# Images whose headers are read at setup to find the colour mode and size.
PROBE_IMAGES = 64


@dataclass(frozen=True)
class Part:
    """One role's points: rows ``rows`` of the dataset split ``data`` (a ``datasets.Dataset``)."""

    data: Any
    rows: np.ndarray
    split: str


class DatasetRows(Dataset):
    """``(x, label)`` for rows of a ``datasets.Dataset``, read when asked for: ``x`` is the image cell
    (decoded later by the transform) or ``{"input_ids": ...}`` of tokenized text."""

    def __init__(self, data: Any, rows: np.ndarray, column: str, labels: Tensor, text: bool) -> None:
        self.data, self.rows, self.column, self.labels, self.text = data, rows, column, labels, text

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[Any, Tensor]:
        value = self.data[int(self.rows[index])][self.column]
        if self.text:
            value = {"input_ids": torch.as_tensor(value, dtype=torch.long)}
        return value, self.labels[index]


class HuggingFaceDataModule(PoolDataModule):
    """A Hugging Face dataset at ``path`` (see :mod:`rholoss.data.hf_files`) with its inputs in
    ``input_column`` (a name, or a list: numeric columns become one vector, two text columns a sentence
    pair) and labels in ``label_column`` (a ``ClassLabel``, integers, strings (sorted into classes), or
    floats: real-valued targets). ``id_column`` names a stable id per point (unique in the training
    split), which :meth:`sample_ids` gives for any split.

    ``splits`` maps roles (``train``, ``test``, ``holdout``, ``val``) to the dataset's split names;
    by default ``train``, ``test`` and ``validation`` where present. Without a test split, a seeded
    ``test_size`` (a fraction, or a count when >= 1) of the training split is the test set; without a
    holdout or val split they are split off as for every dataset (``holdout_fraction``, ``val_size``,
    ``val_from``).

    Images: converted to ``image_mode`` (``L`` or ``RGB``; null: grey-scale stays grey-scale),
    resized to ``image_size`` (``[H, W]`` or one number; null: the images' own size, which must then be
    one) and standardised with ``mean``/``std`` (null: estimated from a seeded sample of training
    images). Text: ``tokenizer`` (a hub name in the cache or a ``save_pretrained`` folder), truncated
    to ``max_length``; tokenization runs once in ``num_proc`` processes and is cached in ``cache_dir``
    (null: Hugging Face's datasets cache), where data files are also converted to Arrow.
    """

    def __init__(
        self,
        path: str | os.PathLike | Mapping[str, Any],
        input_column: str | Sequence[str],
        label_column: str,
        id_column: str | None = None,
        splits: Mapping[str, str] | None = None,
        test_size: float = 0.1,
        name: str = "hf",
        config_name: str | None = None,
        cache_dir: str | None = None,
        num_classes: int | None = None,
        image_size: int | Sequence[int] | None = None,
        image_mode: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        tokenizer: str | None = None,
        max_length: int = 128,
        num_proc: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        unknown = sorted(set(splits or {}) - set(ROLES))
        if unknown:
            raise ValueError(f"datamodule.splits names {unknown}; its keys are the roles {', '.join(ROLES)}.")
        if image_mode is not None and image_mode not in MODE_CHANNELS:
            raise ValueError(
                f"datamodule.image_mode must be one of {sorted(MODE_CHANNELS)} or null, got {image_mode!r}."
            )
        if test_size <= 0:
            raise ValueError(f"datamodule.test_size must be a fraction in (0, 1) or a count >= 1, got {test_size}.")
        self.path = str(path) if isinstance(path, (str, os.PathLike)) else {str(k): v for k, v in path.items()}
        self.input_columns = [input_column] if isinstance(input_column, str) else list(input_column)
        if not self.input_columns:
            raise ValueError("datamodule.input_column is empty: name the column(s) holding the inputs.")
        self.label_column, self.id_column = label_column, id_column
        self.splits = dict(splits) if splits is not None else None
        self.test_size = test_size
        self.name = name
        self.config_name, self.cache_dir = config_name, cache_dir
        self.given_num_classes = num_classes
        size = [image_size, image_size] if isinstance(image_size, int) else image_size
        self.image_size = (int(size[0]), int(size[1])) if size is not None else None
        self.image_mode = image_mode
        self.mean, self.std = mean, std
        self.tokenizer_name, self.max_length, self.num_proc = tokenizer, max_length, num_proc
        self.input_kind = ""  # image, text or numbers: known at setup
        self._model_kwargs: dict[str, Any] = {}
        self._parts: dict[str, Part] = {}
        self._sources: dict[str, Dataset] = {}
        self._ids: dict[str, np.ndarray] = {}
        self._source_fingerprints: dict[str, str] = {}

    # --- reading the dataset ---------------------------------------------------------------------------

    def load_sources(self) -> Sources:
        dataset = open_dataset(self.path, self.config_name, self.cache_dir)
        self._parts = self._roles(dataset)
        train = self._parts["train"].data
        self._check_columns(train)
        self.input_kind = self._input_kind(train)
        if self.on_device and self.input_kind != "numbers":
            raise ValueError(
                f"datamodule.on_device=true serves tensors held in memory, but {self.input_kind} inputs are read "
                "per point by DataLoader workers: set datamodule.on_device=false."
            )
        labels = self._labels()
        if self.id_column is not None:
            self._ids = {role: self._column(part, self.id_column) for role, part in self._parts.items()}
            self._check_ids(self._ids["train"])
        self._source_fingerprints = {role: part.data._fingerprint for role, part in self._parts.items()}
        build = {"image": self._image_sources, "text": self._text_sources, "numbers": self._number_sources}
        self._sources = build[self.input_kind](labels)
        fields: dict[str, Any] = {}
        for role, source in self._sources.items():
            fields |= {role: source, f"{role}_targets": labels[role]}
        return Sources(**fields)

    def _roles(self, dataset: Any) -> dict[str, Part]:
        """Which rows of which dataset split fill each role."""
        available = list(dataset)
        chosen = dict(self.splits) if self.splits is not None else {}
        for role, split in DEFAULT_SPLITS.items():
            if role not in chosen and split in available:
                chosen[role] = split
        if "train" not in chosen and len(available) == 1:
            chosen["train"] = available[0]
        missing = {role: split for role, split in chosen.items() if split is not None and split not in available}
        if "train" not in chosen or missing:
            wanted = missing or {"train": "train"}
            raise ValueError(
                f"datamodule.path={self.path} has the splits {available}, not "
                f"{', '.join(f'{split!r} (for {role})' for role, split in wanted.items())}: set datamodule.splits."
                f"{{train: ..., test: ...}} to the dataset's split names."
            )
        parts = {
            role: Part(dataset[split], np.arange(len(dataset[split])), split)
            for role, split in chosen.items()
            if split is not None
        }
        if "test" not in parts:  # a seeded share of the training split is the test set
            train = parts["train"]
            count = int(self.test_size if self.test_size >= 1 else round(self.test_size * len(train.rows)))
            if not 0 < count < len(train.rows):
                raise ValueError(
                    f"datamodule.test_size={self.test_size} takes {count} of the {len(train.rows)} points of the "
                    f"{train.split!r} split as the test set (there is no test split): it must leave some and take some."
                )
            carved = split_indices(len(train.rows), count, 0.0, self.split_seed)
            parts["train"] = Part(train.data, carved.pool.numpy(), train.split)
            parts["test"] = Part(train.data, carved.val.numpy(), train.split)
        return parts

    def _check_columns(self, train: Any) -> None:
        wanted = [*self.input_columns, self.label_column, *([self.id_column] if self.id_column else [])]
        for role, part in self._parts.items():
            missing = [column for column in wanted if column not in part.data.column_names]
            if missing:
                raise ValueError(
                    f"The {part.split!r} split ({role}) of datamodule.path={self.path} has no column "
                    f"{', '.join(map(repr, missing))}; its columns are {part.data.column_names}. Set "
                    "datamodule.input_column / label_column / id_column to them."
                )

    def _input_kind(self, train: Any) -> str:
        """``image``, ``text`` or ``numbers``, from the input columns' features."""
        datasets = require_datasets()
        import pyarrow as pa

        kinds = []
        for column in self.input_columns:
            feature, arrow = train.features[column], train.data.schema.field(column).type
            if isinstance(feature, datasets.Image) or pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
                kinds.append("image")
            elif pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
                kinds.append("text")
            elif _is_numeric(arrow):
                kinds.append("numbers")
            else:
                raise ValueError(
                    f"datamodule.input_column {column!r} holds {arrow}: inputs must be images, text, numbers or "
                    "lists of numbers."
                )
        kind = kinds[0]
        if set(kinds) != {kind} or (kind == "image" and len(kinds) > 1) or (kind == "text" and len(kinds) > 2):
            raise ValueError(
                f"datamodule.input_column={self.input_columns} mixes {kinds}: give one image column, one or two "
                "text columns (a sentence pair), or numeric columns (one vector)."
            )
        return kind

    def _column(self, part: Part, column: str) -> np.ndarray:
        values = part.data.select_columns([column]).with_format("numpy")[:][column]
        if isinstance(values, np.ndarray) and values.dtype != object:
            return values[part.rows]
        rows = [values[int(row)] for row in part.rows]  # lists of numbers arrive as one array per row
        return np.stack(rows) if rows and isinstance(rows[0], np.ndarray) else np.asarray(rows)

    def _labels(self) -> dict[str, Tensor]:
        """Each role's labels as a tensor; sets ``num_classes`` (or ``target_kind`` ``real``)."""
        datasets = require_datasets()
        feature = self._parts["train"].data.features[self.label_column]
        raw = {role: self._column(part, self.label_column) for role, part in self._parts.items()}
        if raw["train"].dtype.kind == "f":
            self.target_kind, self.num_classes = "real", None
            return {role: torch.from_numpy(values.astype(np.float32)) for role, values in raw.items()}
        if raw["train"].dtype.kind in "US":
            classes = sorted({str(value) for values in raw.values() for value in values})
            lookup = {name: number for number, name in enumerate(classes)}
            labels = {role: torch.tensor([lookup[str(v)] for v in values]) for role, values in raw.items()}
            self.num_classes = len(classes)
        elif raw["train"].dtype.kind in "iub":
            labels = {role: torch.from_numpy(values.astype(np.int64)) for role, values in raw.items()}
            found = 1 + max(int(values.max()) for values in labels.values() if len(values))
            named = len(feature.names) if isinstance(feature, datasets.ClassLabel) else None
            self.num_classes = self.given_num_classes or named or found
        else:
            raise ValueError(
                f"datamodule.label_column {self.label_column!r} holds {raw['train'].dtype} values: labels must be "
                "class ids, class names or real numbers."
            )
        for role, values in labels.items():
            bad = values[(values < 0) | (values >= self.num_classes)]
            if len(bad):
                raise ValueError(
                    f"The {self._parts[role].split!r} split ({role}) has label {int(bad[0])}, outside the "
                    f"{self.num_classes} classes 0..{self.num_classes - 1} (hidden labels are often -1: map that role to "
                    "another split with datamodule.splits, or set datamodule.num_classes)."
                )
        return labels

    def _check_ids(self, ids: np.ndarray) -> None:
        unique, counts = np.unique(ids, return_counts=True)
        if len(unique) != len(ids):
            raise ValueError(
                f"datamodule.id_column {self.id_column!r} is not unique in the training split: {unique[counts > 1][0]!r} "
                f"appears {int(counts.max())} times. Name a column with one id per point, or set id_column=null."
            )

    # --- the three kinds of inputs ---------------------------------------------------------------------

    def _image_sources(self, labels: dict[str, Tensor]) -> dict[str, Dataset]:
        datasets = require_datasets()
        column = self.input_columns[0]
        undecoded = {}
        for role, part in self._parts.items():
            data = part.data.select_columns([column])
            if isinstance(data.features[column], datasets.Image):
                data = data.cast_column(column, datasets.Image(decode=False))
            undecoded[role] = DatasetRows(data, part.rows, column, labels[role], text=False)
        train = undecoded["train"]
        modes, sizes = set(), set()
        for position in sample_positions(len(train), PROBE_IMAGES, self.split_seed):
            with open_image(train[position][0]) as image:  # the header only: nothing is decoded
                modes.add(colour_mode(image))
                sizes.add(image.size)
        mode = self.image_mode or ("RGB" if "RGB" in modes else "L")
        if self.image_size is None and len(sizes) > 1:
            raise ValueError(
                f"The training images have several sizes ({', '.join(f'{w}x{h}' for w, h in sorted(sizes)[:4])}, ...): "
                "set datamodule.image_size to the [height, width] every image is resized to."
            )
        size = self.image_size or next((h, w) for w, h in sizes)
        if self.mean is not None and self.std is not None:
            mean, std = tuple(self.mean), tuple(self.std)
            if not len(mean) == len(std) == MODE_CHANNELS[mode]:
                raise ValueError(
                    f"datamodule.mean and datamodule.std need one value per channel: the images are {mode} "
                    f"({MODE_CHANNELS[mode]} channels), given {list(mean)} and {list(std)}."
                )
        else:
            sample = sample_positions(len(train), STATISTICS_SAMPLE, self.split_seed)
            mean, std = image_statistics((train[i][0] for i in sample), mode, size)
        self.input_shape = (MODE_CHANNELS[mode], *size)
        self.eval_transform = ImageTransform(mode, mean, std, size)
        if self.augment:
            self.train_transform = ImageTransform(mode, mean, std, size, augment=True, crop_padding=self.crop_padding)
        return dict(undecoded)

    def _text_sources(self, labels: dict[str, Tensor]) -> dict[str, Dataset]:
        if not self.tokenizer_name:
            raise ValueError(
                f"datamodule.input_column={self.input_columns} holds text: set datamodule.tokenizer to a tokenizer's "
                "hub name (in the Hugging Face cache) or a folder written by tokenizer.save_pretrained()."
            )
        tokenizer = load_tokenizer(self.tokenizer_name)
        if tokenizer.pad_token_id is None:
            raise ValueError(f"Tokenizer {self.tokenizer_name!r} has no padding token, which batching needs.")
        identity = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]
        columns, max_length = list(self.input_columns), self.max_length

        def encode(batch: dict[str, list]) -> dict[str, list]:
            return tokenizer(*(batch[column] for column in columns), truncation=True, max_length=max_length)

        tokenized: dict[str, Any] = {}
        sources: dict[str, Dataset] = {}
        for role, part in self._parts.items():
            if part.split not in tokenized:
                key = json.dumps([part.data._fingerprint, identity, columns, max_length])
                cache = self._tokens_cache() / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.arrow"
                cache.parent.mkdir(parents=True, exist_ok=True)
                tokenized[part.split] = part.data.map(
                    encode,
                    batched=True,
                    num_proc=self.num_proc,
                    remove_columns=part.data.column_names,
                    cache_file_name=str(cache),
                    desc=f"Tokenizing {part.split}",
                ).select_columns(["input_ids"])
            sources[role] = DatasetRows(tokenized[part.split], part.rows, "input_ids", labels[role], text=True)
        self.input_shape = (self.max_length,)
        self.collate_fn = PadToLongest(tokenizer.pad_token_id)
        self._model_kwargs = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
        return sources

    def _tokens_cache(self) -> Path:
        datasets = require_datasets()
        return Path(self.cache_dir or datasets.config.HF_DATASETS_CACHE) / "rholoss-tokenized"

    def _number_sources(self, labels: dict[str, Tensor]) -> dict[str, Dataset]:
        from torch.utils.data import TensorDataset

        sources: dict[str, Dataset] = {}
        for role, part in self._parts.items():
            columns = [np.asarray(self._column(part, column), dtype=np.float32) for column in self.input_columns]
            if len(columns) > 1 or columns[0].ndim == 1:  # several columns, or scalars: one flat vector per point
                columns = [np.concatenate([c.reshape(len(c), -1) for c in columns], axis=1)]
            x = torch.from_numpy(columns[0])
            sources[role] = TensorDataset(x, labels[role])
        self.input_shape = tuple(sources["train"].tensors[0].shape[1:])  # type: ignore[attr-defined]
        return sources

    # --- what the pipelines read -----------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        super().setup(stage)
        self.fingerprint = {
            **self.fingerprint,
            "source": self._source_fingerprints,
            "input_column": self.input_columns,
            "label_column": self.label_column,
        }

    def model_kwargs(self) -> dict[str, Any]:
        return dict(self._model_kwargs)

    def sample_ids(self, split: str = "pool") -> np.ndarray | None:
        """The ``id_column`` values of the points of ``split`` in its order (entry ``i`` is the point
        with index ``i``), or None without an id column: what an IL store can be keyed by."""
        if self.id_column is None:
            return None
        points = self.split(split)
        role = next(role for role, source in self._sources.items() if source is points.source)  # type: ignore[attr-defined]
        return self._ids[role][points.source_indices.numpy()]  # type: ignore[attr-defined]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "inputs": self.input_kind, "input_shape": list(self.input_shape)}


def _is_numeric(arrow: Any) -> bool:
    """Numbers, or (nested) lists of them."""
    import pyarrow as pa

    while pa.types.is_list(arrow) or pa.types.is_large_list(arrow) or pa.types.is_fixed_size_list(arrow):
        arrow = arrow.value_type
    return pa.types.is_integer(arrow) or pa.types.is_floating(arrow) or pa.types.is_boolean(arrow)
