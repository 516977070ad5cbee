"""Building blocks shared by the CIFAR model families."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int] = 3,
    stride: int = 1,
    groups: int = 1,
    activation: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """Convolution (``same`` padding for odd kernels, no bias since BatchNorm follows), BatchNorm and
    an optional activation: the unit most CIFAR architectures are made of."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, (kh, kw), stride, (kh // 2, kw // 2), groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if activation is not None:
        layers.append(activation(inplace=True))
    return nn.Sequential(*layers)


class Branches(nn.Module):
    """Runs every branch on the same input and concatenates their outputs along channels: the
    Inception module's shape, shared by GoogLeNet and Inception-v3 (which nests it)."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def classifier_head(in_channels: int, num_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """Global average pooling, optional dropout, one linear layer: every CIFAR family ends this way."""
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(in_channels, num_classes))
    return nn.Sequential(*layers)


def image_channels(input_shape: Sequence[int]) -> int:
    """The channel count of a ``(C, H, W)`` input shape; a clear error for flat inputs."""
    if len(input_shape) != 3:
        raise ValueError(
            f"This model takes images of shape (channels, height, width), got input_shape={tuple(input_shape)}; "
            "use model=mlp for flat features."
        )
    return int(input_shape[0])
