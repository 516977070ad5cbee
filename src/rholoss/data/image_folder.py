"""Image folders (``<split>/<class>/<image>``), for CINIC-10 and users' data: decoded once into memory,
or per image in DataLoader workers when they would not fit (``decode``).

In memory, decoding 270k PNGs takes minutes, so the decoded uint8 array is cached as ``.npy`` files next
to the data, keyed by the folder's file list: the second run loads them in seconds, and adding,
removing or renaming an image makes a new cache instead of serving stale data. Lazily, each image is
decoded, resized and standardised when a worker loads it (:mod:`rholoss.data.lazy_images`), so the
folder may be any size and hold images of any size.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rholoss.atomic import atomic_write
from rholoss.data.cifar import normalise_images
from rholoss.data.clothing1m import ImageList
from rholoss.data.datamodule import PoolDataModule, Sources
from rholoss.data.lazy_images import STATISTICS_SAMPLE, ImageTransform, image_statistics, sample_positions

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DECODE_MODES = ("auto", "memory", "lazy")
# Images whose headers are read to find the size (and, for decode=auto, to estimate the memory).
PROBE_IMAGES = 64


def list_image_folder(root: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """Every image under ``root/<class>/`` (sorted) and its class index in ``classes``."""
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        folder = root / name
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


def decode_images(paths: list[Path], size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB images ``(N, 3, H, W)`` uint8, resized to ``size`` (``(H, W)``) when given; otherwise all must
    have the same size to share one array."""
    from PIL import Image

    images: list[np.ndarray] = []
    for path in paths:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        array = np.asarray(rgb if size is None else rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR))
        if images and array.shape != images[0].shape:
            raise ValueError(
                f"{path} is {array.shape[1]}x{array.shape[0]} but {paths[0]} is "
                f"{images[0].shape[1]}x{images[0].shape[0]}: an in-memory image folder needs images of one size; "
                "resize them first, or set datamodule.image_size."
            )
        images.append(array)
    return np.stack(images).transpose(0, 3, 1, 2).copy() if images else np.zeros((0, 3, 0, 0), np.uint8)


def load_image_folder(
    root: Path, classes: list[str], cache: bool = True, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The images (uint8 ``(N, 3, H, W)``, resized to ``size`` when given) and labels of ``root``, from
    the ``.npy`` cache beside it when its file list is unchanged, else decoded (and cached when ``cache``)."""
    paths, labels = list_image_folder(root, classes)
    listing = "\n".join(str(p.relative_to(root)) for p in paths) + ("" if size is None else f"\n{size}")
    digest = hashlib.sha256(listing.encode()).hexdigest()[:16]
    cached = root.parent / f".{root.name}.{digest}.images.npy"
    if cached.is_file():
        return np.load(cached), labels
    log.info("Decoding %d images in %s (cached for the next run as %s)", len(paths), root, cached)
    images = decode_images(paths, size)
    if cache:
        try:
            atomic_write(cached, lambda handle: np.save(handle, images))
        except OSError as error:  # a read-only data folder: still works, just decodes every time
            log.warning("Could not cache decoded images at %s (%s)", cached, error)
    return images, labels


class ImageFolderDataModule(PoolDataModule):
    """Your own images: ``data_dir/train/<class>/*.png`` (the pool, and the holdout and val unless
    given) and ``data_dir/test/<class>/*``, optionally ``data_dir/holdout/<class>/*`` (trains the IL
    model) and ``data_dir/val/<class>/*``. Classes are the sorted folder names of ``train``.

    ``decode``: ``memory`` decodes every image once into RAM (cached as ``.npy`` beside the folders) and
    serves tensors, on the training device with ``on_device``; ``lazy`` decodes each image when a
    DataLoader worker loads it (``num_workers`` decode in parallel; RAM holds a batch, not the folder);
    ``auto`` (the default) keeps the in-memory fast path while the decoded images (3 bytes a pixel)
    fit in ``memory_limit_gb`` and goes lazy beyond it. ``image_size`` (``[H, W]`` or one number)
    resizes every image, so folders of mixed sizes work; null keeps their own (one) size.
    Inputs are standardised with ``mean``/``std`` (default: the training images' own statistics, from
    all of them in memory, from a seeded sample of 1,024 lazily).
    """

    name = "image_folder"
    split_dirs: ClassVar[dict[str, str]] = {"train": "train", "test": "test", "holdout": "holdout", "val": "val"}
    required: tuple[str, ...] = ("train", "test")
    how_to_get = "Put your images there as <split>/<class name>/<image file>."

    def __init__(
        self,
        data_dir: str = "data",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        cache: bool = True,
        decode: str = "auto",
        memory_limit_gb: float = 4.0,
        image_size: int | list[int] | None = None,
        **kwargs,
    ) -> None:
        if decode not in DECODE_MODES:
            raise ValueError(f"datamodule.decode must be one of {', '.join(DECODE_MODES)}, got {decode!r}.")
        if decode == "lazy" and kwargs.get("on_device"):
            raise ValueError(
                "datamodule.decode=lazy decodes images in DataLoader workers, but datamodule.on_device=true serves "
                "tensors held in memory: set datamodule.on_device=false, or datamodule.decode=memory."
            )
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)
        self.mean, self.std = mean, std
        self.cache = cache
        self.decode = decode
        self.memory_limit_gb = memory_limit_gb
        size = [image_size, image_size] if isinstance(image_size, int) else image_size
        self.image_size = (int(size[0]), int(size[1])) if size is not None else None

    def classes(self) -> list[str]:
        train = self.data_dir / self.split_dirs["train"]
        return sorted(p.name for p in train.iterdir() if p.is_dir()) if train.is_dir() else []

    def _check_layout(self, classes: list[str]) -> None:
        folders = [self.data_dir / self.split_dirs[split] for split in self.required]
        missing = [folder for folder in folders if not folder.is_dir()]
        if missing or not classes:
            names = ", ".join(f"{self.split_dirs[s]}/" for s in self.required)
            raise FileNotFoundError(
                f"{self.name}: expected the folders {names} with one subfolder of images per class in "
                f"datamodule.data_dir={self.data_dir}, but "
                f"{', '.join(map(str, missing)) or 'train/ has no class folders'} "
                f"{'is' if len(missing) <= 1 else 'are'} missing. {self.how_to_get}"
            )

    def load_sources(self) -> Sources:
        classes = self.classes()
        self._check_layout(classes)
        self.num_classes = len(classes)
        listings = {
            split: list_image_folder(self.data_dir / folder, classes)
            for split, folder in self.split_dirs.items()
            if (self.data_dir / folder).is_dir()
        }
        for split, (paths, _) in listings.items():
            if not paths:
                raise FileNotFoundError(
                    f"{self.name}: {self.data_dir / self.split_dirs[split]} has no images in the class folders "
                    f"{classes}. {self.how_to_get}"
                )
        if self._decodes_lazily(listings):
            return self._lazy_sources(listings)
        return self._in_memory_sources(classes)

    def _decodes_lazily(self, listings: dict[str, tuple[list[Path], np.ndarray]]) -> bool:
        """``decode=auto``: lazy when the decoded images would not fit in ``memory_limit_gb`` (the size
        from a sample of image headers); the in-memory path's ``on_device`` then gives way."""
        if self.decode != "auto":
            return self.decode == "lazy"
        height, width = self.image_size or self._probe_size(listings["train"][0], required=False)
        count = sum(len(paths) for paths, _ in listings.values())
        needed = count * 3 * height * width
        if needed <= self.memory_limit_gb * 2**30:
            return False
        log.info(
            "%d images of %dx%d need %.1f GB decoded, above datamodule.memory_limit_gb=%s: decoding them per image "
            "in DataLoader workers (datamodule.decode=lazy)",
            count,
            width,
            height,
            needed / 2**30,
            self.memory_limit_gb,
        )
        self.on_device = False
        return True

    def _probe_size(self, paths: list[Path], required: bool = True) -> tuple[int, int]:
        """``(H, W)`` of the images, from the headers of a seeded sample; several sizes are an error
        when ``required`` (lazy batches need one), else the largest counts (a memory estimate)."""
        from PIL import Image

        sizes = set()
        for position in sample_positions(len(paths), PROBE_IMAGES, self.split_seed):
            with Image.open(paths[position]) as image:
                sizes.add((image.height, image.width))
        if required and len(sizes) > 1:
            shown = ", ".join(f"{w}x{h}" for h, w in sorted(sizes)[:4])
            raise ValueError(
                f"{self.name}: the training images have several sizes ({shown}, ...): set datamodule.image_size to "
                "the [height, width] every image is resized to."
            )
        return max(sizes, key=lambda size: size[0] * size[1])

    def _lazy_sources(self, listings: dict[str, tuple[list[Path], np.ndarray]]) -> Sources:
        train_paths = listings["train"][0]
        size = self.image_size or self._probe_size(train_paths)
        if self.mean is not None and self.std is not None:
            mean, std = tuple(self.mean), tuple(self.std)
        else:
            sample = sample_positions(len(train_paths), STATISTICS_SAMPLE, self.split_seed)
            mean, std = image_statistics((train_paths[i] for i in sample), "RGB", size)
        self.input_shape = (3, *size)
        self.eval_transform = ImageTransform("RGB", mean, std, size)
        if self.augment:
            self.train_transform = ImageTransform("RGB", mean, std, size, augment=True, crop_padding=self.crop_padding)
        fields: dict[str, Any] = {}
        for split, (paths, labels) in listings.items():
            root = self.data_dir / self.split_dirs[split]
            targets = torch.from_numpy(labels)
            fields |= {
                split: ImageList(root, [str(p.relative_to(root)) for p in paths], targets),
                f"{split}_targets": targets,
            }
        return Sources(**fields)

    def _in_memory_sources(self, classes: list[str]) -> Sources:
        arrays = {
            split: load_image_folder(self.data_dir / folder, classes, self.cache, self.image_size)
            for split, folder in self.split_dirs.items()
            if (self.data_dir / folder).is_dir()
        }
        train_images = arrays["train"][0]
        self.input_shape = tuple(train_images.shape[1:])
        for split, (images, _) in arrays.items():
            if images.shape[1:] != train_images.shape[1:]:
                raise ValueError(
                    f"{self.name}: the {split} images are {images.shape[3]}x{images.shape[2]} but the train "
                    f"images {train_images.shape[3]}x{train_images.shape[2]}: one model needs one input size; "
                    "resize them first, or set datamodule.image_size."
                )
        mean, std = self._statistics(train_images)
        return Sources.from_tensors(
            **{split: (normalise_images(x, mean, std), torch.from_numpy(y)) for split, (x, y) in arrays.items()}
        )

    def _statistics(self, images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.mean is not None and self.std is not None:
            return tuple(self.mean), tuple(self.std)
        pixels = torch.from_numpy(images).float().div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)
        return tuple(pixels.mean(dim=1).tolist()), tuple(pixels.std(dim=1).clamp_min(1e-6).tolist())


class CINIC10DataModule(ImageFolderDataModule):
    """CINIC-10 (Darlow et al., 2018): the ``train`` folder (90k) is the pool, the ``valid`` folder
    (90k) the holdout, val comes off the holdout, the ``test`` folder (90k) is the test set.

    ``relevant_classes`` (e.g. ``[0, 1, 2, 3, 4]``) gives the paper's relevance experiment: holdout,
    val and test keep only those classes while the pool keeps all ten.
    """

    name = "cinic10"
    split_dirs: ClassVar[dict[str, str]] = {"train": "train", "holdout": "valid", "test": "test"}
    required = ("train", "holdout", "test")
    classes_in_order = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    how_to_get = (
        "Download CINIC-10 (https://datashare.ed.ac.uk/handle/10283/3192, CINIC-10.tar.gz) and extract it so "
        "that datamodule.data_dir holds train/, valid/ and test/."
    )

    def __init__(self, data_dir: str = "data/CINIC-10", val_from: str = "holdout", **kwargs) -> None:
        kwargs.setdefault("mean", [0.47889522, 0.47227842, 0.43047404])  # CINIC-10's statistics (the release's)
        kwargs.setdefault("std", [0.24205776, 0.23828046, 0.25874835])
        super().__init__(data_dir=data_dir, val_from=val_from, **kwargs)

    def classes(self) -> list[str]:
        return list(self.classes_in_order)
