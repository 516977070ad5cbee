"""Batched image augmentation on the training device: random crop with zero padding, horizontal flip.

Per-sample torchvision transforms need a DataLoader and a Python call per image; here the whole
large batch is augmented with a few tensor ops where it already lives, so the on-device data path
keeps its speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop(images: Tensor, padding: int) -> Tensor:
    """Each image of ``[N, C, H, W]`` zero-padded by ``padding`` and cropped back to H×W at an
    independent random offset (the standard CIFAR augmentation), done as two gathers."""
    if padding == 0:
        return images
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    device = images.device
    top = torch.randint(0, 2 * padding + 1, (n,), device=device)
    left = torch.randint(0, 2 * padding + 1, (n,), device=device)
    rows = (top[:, None] + torch.arange(h, device=device))[:, None, :, None].expand(n, c, h, w + 2 * padding)
    cols = (left[:, None] + torch.arange(w, device=device))[:, None, None, :].expand(n, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def random_flip(images: Tensor) -> Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


@dataclass(frozen=True)
class BatchAugment:
    """Crop (``crop_padding`` pixels, 0: none) then flip (``flip``) every image of a batch."""

    crop_padding: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise ValueError(f"datamodule.crop_padding must be >= 0, got {self.crop_padding}.")

    def __call__(self, images: Tensor) -> Tensor:
        if images.ndim != 4:
            raise ValueError(
                f"Augmentation needs image batches [N, C, H, W], got shape {tuple(images.shape)}: "
                "set datamodule.augment=false for this data."
            )
        images = random_crop(images, self.crop_padding)
        return random_flip(images) if self.flip else images
