"""Images decoded one at a time, when a DataLoader worker asks for them: for image data larger than
memory, or of mixed sizes, that one array in RAM cannot hold.

A source yields the undecoded image (file bytes, a path, or a Hugging Face ``Image`` cell);
:class:`ImageTransform` decodes it, converts it to the data's colour mode, resizes it to the data's
input size and standardises it, and, for target training with ``augment``, crops and flips it. It
is a plain picklable object, so DataLoader workers each get a copy and decode in parallel.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

# Channels of the colour modes inputs are converted to.
MODE_CHANNELS = {"L": 1, "RGB": 3}
# Images read to estimate the per-channel statistics when none are given: enough for three digits.
STATISTICS_SAMPLE = 1024


def open_image(data: Any) -> Any:
    """A PIL image from what a source holds: encoded bytes, a file path, a Hugging Face ``Image``
    cell (``{"bytes": ..., "path": ...}``) or a PIL image already decoded."""
    from PIL import Image

    if isinstance(data, Image.Image):
        return data
    if isinstance(data, Mapping):
        data = data.get("bytes") or data.get("path")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(data)))
    if isinstance(data, (str, Path)):
        return Image.open(data)
    raise TypeError(f"Cannot read an image from a {type(data).__name__}: expected encoded bytes or a file path.")


def colour_mode(image: Any) -> str:
    """``L`` for grey-scale images (1 channel), ``RGB`` for everything else (3 channels)."""
    return "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"


class ImageTransform:
    """Undecoded image -> standardised ``(C, H, W)`` float tensor.

    ``mode``: ``L`` or ``RGB``; ``size``: ``(H, W)`` every image is resized to (None: keep, so all
    must share one size). ``augment`` adds a random crop (zero padding ``crop_padding``) and a
    horizontal flip after resizing, for target training only.
    """

    def __init__(
        self,
        mode: str,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        size: tuple[int, int] | None = None,
        augment: bool = False,
        crop_padding: int = 4,
    ) -> None:
        from torchvision import transforms

        if mode not in MODE_CHANNELS:
            raise ValueError(f"Image mode must be one of {sorted(MODE_CHANNELS)}, got {mode!r}.")
        steps: list[Any] = [transforms.Resize(size)] if size is not None else []
        if augment:
            if size is None:
                raise ValueError("Random crops need a fixed input size: set the image size.")
            steps += [transforms.RandomCrop(size, padding=crop_padding), transforms.RandomHorizontalFlip()]
        self.mode, self.size = mode, size
        self.steps = transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(mean, std)])

    def __call__(self, data: Any) -> Tensor:
        with open_image(data) as image:
            converted = image.convert(self.mode)
        tensor = self.steps(converted)
        if self.size is not None and tuple(tensor.shape[1:]) != self.size:
            raise ValueError(f"An image became {tuple(tensor.shape[1:])} instead of {self.size} after resizing.")
        return tensor


def image_statistics(
    images: Iterable[Any], mode: str, size: tuple[int, int] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of ``images`` (undecoded) after resizing, in [0, 1]:
    running sums, so memory holds one image whatever the sample's size."""
    channels = MODE_CHANNELS[mode]
    plain = ImageTransform(mode, (0.0,) * channels, (1.0,) * channels, size)
    total, squares, count = torch.zeros(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64), 0
    for image in images:
        pixels = plain(image).flatten(1).double()
        total += pixels.sum(dim=1)
        squares += pixels.square().sum(dim=1)
        count += pixels.shape[1]
    if count < 2:
        raise ValueError("Image statistics need at least two pixels: give datamodule.mean and datamodule.std.")
    mean = total / count
    variance = (squares - count * mean.square()) / (count - 1)
    return tuple(mean.tolist()), tuple(variance.clamp_min(1e-12).sqrt().tolist())


def sample_positions(count: int, sample: int, seed: int) -> list[int]:
    """A seeded sample of ``sample`` positions of ``range(count)`` (all when fewer), sorted."""
    if count <= sample:
        return list(range(count))
    return sorted(np.random.default_rng(seed).choice(count, size=sample, replace=False).tolist())
