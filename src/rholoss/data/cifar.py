"""CIFAR-10 and CIFAR-100 from the python pickle batches, held in memory as normalised tensors.

The pickles are read here rather than through torchvision's classes, which insist on the official
md5 sums (so no test fixture could stand in for the data); torchvision only downloads, when a
network is there. The paper splits the 50k training images in half: pool and holdout (seeded).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from rholoss.data.datamodule import PoolDataModule, Sources
from rholoss.data.download import try_download

# Inputs scaled to [-1, 1] per channel, as in the paper's release.
CIFAR_MEAN, CIFAR_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels of one pickled batch (rows of 3072 bytes: the red,
    green and blue 32x32 planes)."""
    try:
        with open(path, "rb") as handle:
            entry: dict[Any, Any] = pickle.load(handle, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise ValueError(f"{path} is truncated or not a CIFAR pickle ({error}).") from None
    entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if "data" not in entry or label_key not in entry:
        raise ValueError(f"{path} has no 'data' and '{label_key}' entries: not a CIFAR batch of this dataset.")
    data = np.asarray(entry["data"], dtype=np.uint8)
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(f"{path}: expected data of shape (N, 3072) and N labels, got {data.shape} and {len(labels)}.")
    return data.reshape(-1, 3, 32, 32), labels


def normalise_images(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 images ``(N, C, H, W)`` as float tensors standardised per channel."""
    x = torch.from_numpy(images).float().div_(255.0)
    return x.sub_(torch.tensor(mean).view(1, -1, 1, 1)).div_(torch.tensor(std).view(1, -1, 1, 1))


class CIFAR10DataModule(PoolDataModule):
    """CIFAR-10: the 50k training images are split into pool and holdout (``holdout_fraction``), val
    comes off the holdout by default (so the pool keeps the paper's 25k), the 10k test images are
    the test set. Reads ``data_dir/cifar-10-batches-py/{data_batch_1..5,test_batch}``."""

    name = "cifar10"
    num_classes = 10
    input_shape = (3, 32, 32)
    folder = "cifar-10-batches-py"
    train_files: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files: tuple[str, ...] = ("test_batch",)
    label_key = "labels"
    archive_url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

    def __init__(
        self, data_dir: str = "data", download: bool = True, val_from: Literal["train", "holdout"] = "holdout", **kwargs
    ) -> None:
        super().__init__(val_from=val_from, **kwargs)
        self.data_dir = Path(data_dir)
        self.download = download

    def _torchvision_download(self) -> None:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(self.data_dir), train=True, download=True)

    def _missing(self) -> list[Path]:
        paths = [self.data_dir / self.folder / name for name in (*self.train_files, *self.test_files)]
        return [path for path in paths if not path.is_file()]

    def locate(self) -> Path:
        if not self._missing():
            return self.data_dir / self.folder
        reason = try_download(self.download, self._torchvision_download)
        missing = self._missing()
        if missing:
            raise FileNotFoundError(
                f"{self.name}: missing {', '.join(str(m) for m in missing)}, and {reason}. Download "
                f"{self.archive_url} and extract it into datamodule.data_dir={self.data_dir} (it holds the folder "
                f"{self.folder}/), or run once with network access and datamodule.download=true."
            )
        return self.data_dir / self.folder

    def load_sources(self) -> Sources:
        folder = self.locate()

        def read(names: tuple[str, ...]) -> tuple[Tensor, Tensor]:
            batches = [read_cifar_batch(folder / name, self.label_key) for name in names]
            images = np.concatenate([images for images, _ in batches])
            labels = torch.from_numpy(np.concatenate([labels for _, labels in batches]))
            return normalise_images(images, CIFAR_MEAN, CIFAR_STD), labels

        return Sources.from_tensors(train=read(self.train_files), test=read(self.test_files))


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 (the 100 fine labels), split as CIFAR-10. Reads ``data_dir/cifar-100-python/{train,test}``."""

    name = "cifar100"
    num_classes = 100
    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    label_key = "fine_labels"
    archive_url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"

    def _torchvision_download(self) -> None:
        from torchvision.datasets import CIFAR100

        CIFAR100(str(self.data_dir), train=True, download=True)
