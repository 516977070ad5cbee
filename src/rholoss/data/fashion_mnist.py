"""Fashion-MNIST from IDX files on disk (Debian's ``dataset-fashion-mnist`` or any folder), with
torchvision's download as the fallback when a network is there."""

from __future__ import annotations

from rholoss.data.datamodule import Sources
from rholoss.data.idx_files import MNIST_FILE_GROUPS, IdxDataModule

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
# Per-pixel statistics of the Fashion-MNIST training set, so inputs are roughly standardised.
MEAN, STD = 0.2860, 0.3530


class FashionMNISTDataModule(IdxDataModule):
    """Fashion-MNIST: the 60k training images are split into pool / holdout / val, the 10k test
    images are the test set.

    Files are looked for in ``data_dir``, ``data_dir/FashionMNIST/raw`` (torchvision's layout) and
    ``system_dir`` (Debian's package), in that order; if none has them and ``download`` is true,
    torchvision downloads them into ``data_dir``.
    """

    name = "fashion_mnist"
    display_name = "Fashion-MNIST"
    num_classes = 10
    input_shape = (1, 28, 28)
    file_groups = MNIST_FILE_GROUPS  # the same file names as MNIST
    torchvision_dirs = ("FashionMNIST",)
    mean, std = MEAN, STD
    how_to_get = (
        "Either install Debian's package (`apt-get install dataset-fashion-mnist`, puts them in "
        f"{DEBIAN_DIR}), or put the files into datamodule.data_dir, or run once with network access "
        "and datamodule.download=true."
    )

    def __init__(
        self, data_dir: str = "data", system_dir: str | None = DEBIAN_DIR, download: bool = True, **kwargs
    ) -> None:
        super().__init__(data_dir=data_dir, system_dir=system_dir, download=download, **kwargs)

    def download_with_torchvision(self) -> None:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(self.data_dir), train=True, download=True)
        FashionMNIST(str(self.data_dir), train=False, download=True)

    def load_sources(self) -> Sources:
        files = self.locate()
        return Sources.from_tensors(
            **{split: self.to_tensors(*self.read_images_and_labels(files, split)) for split in ("train", "test")}
        )
