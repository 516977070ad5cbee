"""Fashion-MNIST from IDX files on disk (Debian's ``dataset-fashion-mnist`` or any folder), with
torchvision's download as the fallback when a network is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rholoss.data.datamodule import PoolDataModule, Sources
from rholoss.data.idx import read_idx

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Per-pixel statistics of the Fashion-MNIST training set, so inputs are roughly standardised.
MEAN, STD = 0.2860, 0.3530


def find_idx_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory`` (``.gz`` or plain), or None if any is missing."""
    found: dict[str, Path] = {}
    for key, stem in FILES.items():
        candidates = [directory / f"{stem}.gz", directory / stem]
        match = next((path for path in candidates if path.is_file()), None)
        if match is None:
            return None
        found[key] = match
    return found


def _to_inputs(images: np.ndarray) -> torch.Tensor:
    return ((torch.from_numpy(images.copy()).float() / 255.0 - MEAN) / STD).unsqueeze(1)


class FashionMNISTDataModule(PoolDataModule):
    """Fashion-MNIST: the 60k training images are split into pool / holdout / val, the 10k test
    images are the test set.

    Files are looked for in ``data_dir``, ``data_dir/FashionMNIST/raw`` (torchvision's layout) and
    ``system_dir`` (Debian's package), in that order; if none has them and ``download`` is true,
    torchvision downloads them into ``data_dir``.
    """

    name = "fashion_mnist"
    num_classes = 10
    input_shape = (1, 28, 28)

    def __init__(
        self,
        data_dir: str = "data",
        system_dir: str | None = DEBIAN_DIR,
        download: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)
        self.system_dir = Path(system_dir) if system_dir else None
        self.download = download

    def search_dirs(self) -> list[Path]:
        dirs = [self.data_dir, self.data_dir / "FashionMNIST" / "raw"]
        return dirs + ([self.system_dir] if self.system_dir else [])

    def locate(self) -> dict[str, Path]:
        for directory in self.search_dirs():
            files = find_idx_files(directory)
            if files:
                return files
        download_error = None
        if self.download:
            try:
                from torchvision.datasets import FashionMNIST

                FashionMNIST(str(self.data_dir), train=True, download=True)
                FashionMNIST(str(self.data_dir), train=False, download=True)
            except Exception as error:  # any network or checksum failure: report both options below
                download_error = error
            files = find_idx_files(self.data_dir / "FashionMNIST" / "raw")
            if files:
                return files
        searched = ", ".join(str(d) for d in self.search_dirs())
        reason = f"the download failed ({download_error})" if download_error else "download is disabled"
        raise FileNotFoundError(
            f"Fashion-MNIST IDX files not found in {searched}, and {reason}. Either install Debian's "
            "package (`apt-get install dataset-fashion-mnist`, puts them in "
            f"{DEBIAN_DIR}), or put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz into datamodule.data_dir, or run "
            "once with network access and datamodule.download=true."
        )

    def load_sources(self) -> Sources:
        files = self.locate()
        arrays = {key: read_idx(path) for key, path in files.items()}
        for split in ("train", "test"):
            if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
                raise ValueError(
                    f"Fashion-MNIST {split} files disagree: {len(arrays[f'{split}_images'])} images but "
                    f"{len(arrays[f'{split}_labels'])} labels ({files[f'{split}_images'].parent})."
                )
        x_train, x_test = _to_inputs(arrays["train_images"]), _to_inputs(arrays["test_images"])
        y_train = torch.from_numpy(arrays["train_labels"].astype(np.int64))
        y_test = torch.from_numpy(arrays["test_labels"].astype(np.int64))
        return Sources(TensorDataset(x_train, y_train), y_train, TensorDataset(x_test, y_test), y_test)
