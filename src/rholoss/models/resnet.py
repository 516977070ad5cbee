"""ResNets for 32x32 inputs (3x3 stem, no max-pool), as used for CIFAR in the paper."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
            nn.BatchNorm2d(planes),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int, blocks: Sequence[int] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        in_planes = 64
        for stage, count in enumerate(blocks):
            planes = 64 * 2**stage
            for block in range(count):
                layers.append(BasicBlock(in_planes, planes, stride=2 if stage > 0 and block == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_planes, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x)))


def resnet18(input_shape: Sequence[int], num_classes: int) -> CifarResNet:
    return CifarResNet(input_shape, num_classes, blocks=(2, 2, 2, 2))
