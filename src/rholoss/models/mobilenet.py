"""MobileNet-v2 for 32x32 inputs: stride 1 in the stem and in the first downsampling stage, so the
maps go 32 -> 16 -> 8 -> 4 instead of ImageNet's 224 -> 7."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from rholoss.models.layers import classifier_head, conv_bn, image_channels

# Per stage: expansion t, output channels c, blocks n, stride s of the first block (Sandler et al.
# 2018, Table 2), with the 24-channel stage's stride 2 -> 1 for CIFAR.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """1x1 expand, depthwise 3x3, linear 1x1 project; a residual when the shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = [conv_bn(in_channels, hidden, 1, activation=nn.ReLU6)] if expansion != 1 else []
        layers += [
            conv_bn(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6),
            conv_bn(hidden, out_channels, 1, activation=None),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class CifarMobileNetV2(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(image_channels(input_shape), 32, 3, activation=nn.ReLU6)]
        channels = 32
        for expansion, out_channels, count, stride in STAGES:
            for index in range(count):
                layers.append(InvertedResidual(channels, out_channels, expansion, stride if index == 0 else 1))
                channels = out_channels
        layers.append(conv_bn(channels, 1280, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.head = classifier_head(1280, num_classes, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
