"""DataModules whose data are IDX files (the MNIST family): finding the files, the torchvision
download fallback, and turning images into normalised tensors. Each dataset only names its files."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from rholoss.data.datamodule import PoolDataModule
from rholoss.data.download import try_download
from rholoss.data.idx import read_idx

# The file names MNIST uses and Fashion-MNIST copies, grouped by the folder they must share.
MNIST_FILE_GROUPS = {
    "train": {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte"},
    "test": {"test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"},
}


def find_idx_files(directory: Path, files: dict[str, str]) -> dict[str, Path] | None:
    """The files ``{key: stem}`` in ``directory`` (``.gz`` or plain), or None if any is missing."""
    found: dict[str, Path] = {}
    for key, stem in files.items():
        candidates = [directory / f"{stem}.gz", directory / stem]
        match = next((path for path in candidates if path.is_file()), None)
        if match is None:
            return None
        found[key] = match
    return found


def images_to_inputs(images: np.ndarray, mean: float, std: float) -> Tensor:
    """uint8 images ``(N, H, W)`` as standardised float tensors ``(N, 1, H, W)``."""
    return ((torch.from_numpy(images.copy()).float() / 255.0 - mean) / std).unsqueeze(1)


class IdxDataModule(PoolDataModule):
    """A dataset stored as IDX files, grouped into ``file_groups`` (``{group: {key: stem}}``): the
    files of one group (images and their labels) must sit in one folder; groups may sit in different
    folders.

    Folders searched, in order: ``data_dir``, torchvision's ``data_dir/<name>/raw`` for each name in
    ``torchvision_dirs``, and ``system_dir``. If a group is found nowhere and ``download`` is true,
    :meth:`download_with_torchvision` fetches it into ``data_dir``.
    """

    file_groups: ClassVar[dict[str, dict[str, str]]]
    torchvision_dirs: ClassVar[tuple[str, ...]]
    mean: float
    std: float
    display_name: str  # in messages: "Fashion-MNIST"
    how_to_get: str  # the end of the missing-files error: every way to obtain the files

    def __init__(self, data_dir: str = "data", system_dir: str | None = None, download: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)
        self.system_dir = Path(system_dir) if system_dir else None
        self.download = download

    def search_dirs(self) -> list[Path]:
        dirs = [self.data_dir, *(self.data_dir / name / "raw" for name in self.torchvision_dirs)]
        return dirs + ([self.system_dir] if self.system_dir else [])

    def download_with_torchvision(self) -> None:
        """Download the files with torchvision into ``data_dir`` (raises on any failure)."""
        raise NotImplementedError

    def _find(self) -> dict[str, Path] | None:
        found: dict[str, Path] = {}
        for files in self.file_groups.values():
            group = next(filter(None, (find_idx_files(d, files) for d in self.search_dirs())), None)
            if group is None:
                return None
            found.update(group)
        return found

    def locate(self) -> dict[str, Path]:
        files = self._find()
        if files:
            return files
        reason = try_download(self.download, self.download_with_torchvision)
        files = self._find()
        if files:
            return files
        searched = ", ".join(str(d) for d in self.search_dirs())
        expected = ", ".join(f"{stem}.gz" for group in self.file_groups.values() for stem in group.values())
        raise FileNotFoundError(
            f"{self.display_name} IDX files not found in {searched}, and {reason}. Expected {expected} (or the same "
            f"names without .gz). {self.how_to_get}"
        )

    def read_images_and_labels(self, files: dict[str, Path], split: str) -> tuple[np.ndarray, np.ndarray]:
        """The images and labels of ``split`` (``{split}_images``/``{split}_labels``), checked to agree."""
        images, labels = read_idx(files[f"{split}_images"]), read_idx(files[f"{split}_labels"])
        if len(images) != len(labels):
            raise ValueError(
                f"{self.display_name} {split} files disagree: {len(images)} images but {len(labels)} labels "
                f"({files[f'{split}_images'].parent})."
            )
        return images, labels

    def to_tensors(self, images: np.ndarray, labels: np.ndarray) -> tuple[Tensor, Tensor]:
        """Standardised inputs ``(N, 1, H, W)`` and int64 labels."""
        return images_to_inputs(images, self.mean, self.std), torch.from_numpy(labels.astype(np.int64))
