"""DenseNet-BC for 32x32 inputs: a 3x3 stem (no 7x7/stride-2 stem or max-pool); three transitions
take 32x32 to 4x4."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rholoss.models.layers import classifier_head, image_channels


def _bn_relu_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    # DenseNet is pre-activation: every convolution sees the normalised concatenation of features.
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
    )


class DenseLayer(nn.Module):
    """Bottleneck (1x1 to 4k channels, then 3x3 to k) whose k new channels join its input."""

    def __init__(self, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _bn_relu_conv(in_channels, 4 * growth_rate, 1), _bn_relu_conv(4 * growth_rate, growth_rate, 3)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class CifarDenseNet(nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        blocks: Sequence[int] = (6, 12, 24, 16),
        growth_rate: int = 32,
        reduction: float = 0.5,
    ) -> None:
        super().__init__()
        channels = 2 * growth_rate
        layers: list[nn.Module] = [nn.Conv2d(image_channels(input_shape), channels, 3, padding=1, bias=False)]
        for stage, count in enumerate(blocks):
            for _ in range(count):
                layers.append(DenseLayer(channels, growth_rate))
                channels += growth_rate
            if stage < len(blocks) - 1:  # transition: compress channels, halve the resolution
                reduced = int(channels * reduction)
                layers += [_bn_relu_conv(channels, reduced, 1), nn.AvgPool2d(2)]
                channels = reduced
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = classifier_head(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def densenet121(input_shape: Sequence[int], num_classes: int) -> CifarDenseNet:
    return CifarDenseNet(input_shape, num_classes, blocks=(6, 12, 24, 16), growth_rate=32)
