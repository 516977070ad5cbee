"""Clothing-1M (Xiao et al., 2015): 1M web-scraped clothing images with noisy labels, plus small
clean-labelled train / val / test sets. Far too big for memory: images are decoded per sample
through a DataLoader (``on_device: false``).

The official annotation files: ``noisy_label_kv.txt`` and ``clean_label_kv.txt`` (``<image path>
<label>`` per line) and ``noisy_train_key_list.txt``, ``clean_train_key_list.txt``,
``clean_val_key_list.txt``, ``clean_test_key_list.txt`` (one image path per line, relative to the
dataset folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from rholoss.data.datamodule import PoolDataModule, Sources

# ImageNet statistics and 256 -> 224 crops, as in the paper's release (the IL and target models
# may start from ImageNet weights).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RESIZE, CROP = 256, 224
ANNOTATIONS = {
    "noisy_labels": "noisy_label_kv.txt",
    "clean_labels": "clean_label_kv.txt",
    "train": "noisy_train_key_list.txt",
    "holdout": "clean_train_key_list.txt",
    "val": "clean_val_key_list.txt",
    "test": "clean_test_key_list.txt",
}


def read_key_values(path: Path) -> dict[str, int]:
    labels: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit():
                raise ValueError(f"{path}:{number}: expected '<image path> <label>', got {line!r}.")
            labels[fields[0]] = int(fields[1])
    return labels


class ImageList(Dataset):
    """``(image, label)`` for a list of image files, decoded (RGB PIL image) only when asked for."""

    def __init__(self, root: Path, keys: list[str], labels: Tensor) -> None:
        self.root, self.keys, self.labels = root, keys, labels

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[Any, Tensor]:
        from PIL import Image

        with Image.open(self.root / self.keys[index]) as image:
            return image.convert("RGB"), self.labels[index]


def clothing_transforms(train: bool) -> Any:
    """Resize to 256x256, then a 224 crop: random (with a horizontal flip) for training, central otherwise."""
    from torchvision import transforms

    crop = [transforms.RandomCrop(CROP), transforms.RandomHorizontalFlip()] if train else [transforms.CenterCrop(CROP)]
    normalise = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    return transforms.Compose([transforms.Resize((RESIZE, RESIZE)), *crop, transforms.ToTensor(), normalise])


class Clothing1MDataModule(PoolDataModule):
    """The paper's Clothing-1M setup: the ~1M noisy-label training images are the pool, the ~50k
    clean training images the holdout, the clean val and test images val and test.

    ``data_dir`` holds the images (at the paths the key lists name) and the annotation files, at its
    top level or in ``annotations/``. With ``augment``, target training batches get a random crop and
    flip per image in the DataLoader; every other loader (IL training, IL scoring of the pool,
    evaluation) uses the central crop.
    """

    name = "clothing1m"
    num_classes = 14
    input_shape = (3, CROP, CROP)

    def __init__(self, data_dir: str = "data/clothing1m", augment: bool = True, **kwargs) -> None:
        super().__init__(augment=augment, **kwargs)
        self.data_dir = Path(data_dir)
        self.eval_transform = clothing_transforms(train=False)
        self.train_transform = clothing_transforms(train=True)

    def locate(self) -> dict[str, Path]:
        for folder in (self.data_dir, self.data_dir / "annotations"):
            files = {key: folder / name for key, name in ANNOTATIONS.items()}
            if all(path.is_file() for path in files.values()):
                return files
        raise FileNotFoundError(
            f"clothing1m: the annotation files {', '.join(ANNOTATIONS.values())} were not found in "
            f"datamodule.data_dir={self.data_dir} or its annotations/ folder. Clothing-1M is given out by its "
            "authors on request (https://github.com/Cysu/noisy_label): put its annotation files and images/ "
            "folder into datamodule.data_dir."
        )

    def load_sources(self) -> Sources:
        files = self.locate()
        noisy, clean = read_key_values(files["noisy_labels"]), read_key_values(files["clean_labels"])
        lists = {}
        for split in ("train", "holdout", "val", "test"):
            labels = noisy if split == "train" else clean
            keys = [line.strip() for line in files[split].read_text().splitlines() if line.strip()]
            unlabelled = [key for key in keys if key not in labels]
            if unlabelled:
                raise ValueError(
                    f"{files[split]} lists {len(unlabelled)} images without a label in "
                    f"{ANNOTATIONS['noisy_labels' if split == 'train' else 'clean_labels']} (first: {unlabelled[0]})."
                )
            if not keys or not (self.data_dir / keys[0]).is_file():
                raise FileNotFoundError(
                    f"clothing1m: {files[split].name} lists {len(keys)} images but "
                    f"{self.data_dir / keys[0] if keys else 'none'} is not there: extract the images into "
                    f"datamodule.data_dir={self.data_dir} at the paths the key lists name."
                )
            targets = torch.tensor([labels[key] for key in keys], dtype=torch.long)
            lists[split] = (ImageList(self.data_dir, keys, targets), targets)
        return Sources(*lists["train"], *lists["test"], *lists["holdout"], *lists["val"])
