"""MNIST and the paper's QMNIST setup, from IDX files (torchvision's download as the fallback).

QMNIST (Yadav & Bottou, 2019) reconstructed MNIST's test set from NIST and found 50k more digits of
the same distribution. The paper trains on MNIST's training set, uses those 50k extra digits as the
holdout for the IL model, and tests on MNIST's test set.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from rholoss.data.datamodule import Sources
from rholoss.data.idx_files import MNIST_FILE_GROUPS, IdxDataModule

# Pixel statistics of the MNIST training set.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# QMNIST's test file holds 60k digits: the first 10k are MNIST's test set, the rest the 50k extra.
QMNIST_MNIST_TEST_ROWS = 10_000
QMNIST_FILE_GROUPS = {
    "qmnist_test": {"extra_images": "qmnist-test-images-idx3-ubyte", "extra_labels": "qmnist-test-labels-idx2-int"}
}


class MNISTDataModule(IdxDataModule):
    """MNIST: the 60k training digits are split into pool / holdout / val, the 10k test digits are
    the test set. Files are looked for in ``data_dir``, ``data_dir/MNIST/raw`` (torchvision's layout)
    and ``system_dir``."""

    name = "mnist"
    display_name = "MNIST"
    num_classes = 10
    input_shape = (1, 28, 28)
    file_groups = MNIST_FILE_GROUPS
    torchvision_dirs: ClassVar[tuple[str, ...]] = ("MNIST",)
    mean, std = MNIST_MEAN, MNIST_STD
    how_to_get = (
        "Put the files into datamodule.data_dir (from https://yann.lecun.com/exdb/mnist/ or any mirror), "
        "or run once with network access and datamodule.download=true."
    )

    def download_with_torchvision(self) -> None:
        from torchvision.datasets import MNIST

        MNIST(str(self.data_dir), train=True, download=True)
        MNIST(str(self.data_dir), train=False, download=True)

    def load_sources(self) -> Sources:
        return self._mnist_sources(self.locate())

    def _mnist_tensors(self, files: dict[str, Path]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {split: self.to_tensors(*self.read_images_and_labels(files, split)) for split in ("train", "test")}

    def _mnist_sources(self, files: dict[str, Path]) -> Sources:
        return Sources.from_tensors(**self._mnist_tensors(files))


class QMNISTDataModule(MNISTDataModule):
    """The paper's QMNIST setup: MNIST's 60k training digits are the pool, QMNIST's 50k extra test
    digits the holdout, MNIST's 10k test digits the test set; val is split off the holdout
    (``val_from: holdout``, the default here) or the pool.

    Needs MNIST's four IDX files and QMNIST's ``qmnist-test-images-idx3-ubyte`` and
    ``qmnist-test-labels-idx2-int`` (labels: int32 rows of 8 columns, the first is the class), found in
    ``data_dir``, ``data_dir/MNIST/raw``, ``data_dir/QMNIST/raw`` or ``system_dir``.
    """

    name = "qmnist"
    display_name = "QMNIST"
    file_groups: ClassVar[dict[str, dict[str, str]]] = {**MNIST_FILE_GROUPS, **QMNIST_FILE_GROUPS}
    torchvision_dirs = ("MNIST", "QMNIST")
    how_to_get = (
        "Put MNIST's files (https://yann.lecun.com/exdb/mnist/) and QMNIST's test files "
        "(https://github.com/facebookresearch/qmnist) into datamodule.data_dir, or run once with network "
        "access and datamodule.download=true."
    )

    def __init__(self, val_from: str = "holdout", **kwargs) -> None:
        super().__init__(val_from=val_from, **kwargs)

    def download_with_torchvision(self) -> None:
        from torchvision.datasets import QMNIST

        super().download_with_torchvision()
        QMNIST(str(self.data_dir), what="test", download=True)

    def load_sources(self) -> Sources:
        files = self.locate()
        images, labels = self.read_images_and_labels(files, "extra")
        if labels.ndim != 2 or len(images) <= QMNIST_MNIST_TEST_ROWS:
            raise ValueError(
                f"{files['extra_labels']} is not QMNIST's test label file: expected more than "
                f"{QMNIST_MNIST_TEST_ROWS} rows of 8 int32 columns, got shape {labels.shape}."
            )
        extra = slice(QMNIST_MNIST_TEST_ROWS, None)  # skip the digits that are MNIST's test set
        return Sources.from_tensors(
            **self._mnist_tensors(files), holdout=self.to_tensors(images[extra], labels[extra, 0])
        )
