"""ResNets for 32x32 inputs (3x3 stem, no max-pool), as used for CIFAR in the paper."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from rholoss.models.layers import classifier_head, conv_bn, image_channels


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(in_planes, planes, 3, stride), conv_bn(planes, planes, 3, activation=None))
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) and a shortcut (ResNet-50): deeper for the same cost."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(in_planes, planes, 1),
            conv_bn(planes, planes, 3, stride),
            conv_bn(planes, planes * self.expansion, 1, activation=None),
        )
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return conv_bn(in_planes, out_planes, 1, stride, activation=None)


class CifarResNet(nn.Module):
    """Four stages of 64/128/256/512 planes, the last three halving the resolution (32 -> 4)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        blocks: Sequence[int] = (2, 2, 2, 2),
        block: type[BasicBlock | Bottleneck] = BasicBlock,
    ) -> None:
        super().__init__()
        self.stem = conv_bn(image_channels(input_shape), 64, 3)
        layers: list[nn.Module] = []
        in_planes = 64
        for stage, count in enumerate(blocks):
            planes = 64 * 2**stage
            for index in range(count):
                layers.append(block(in_planes, planes, stride=2 if stage > 0 and index == 0 else 1))
                in_planes = planes * block.expansion
        self.layers = nn.Sequential(*layers)
        self.head = classifier_head(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x)))


def resnet18(input_shape: Sequence[int], num_classes: int) -> CifarResNet:
    return CifarResNet(input_shape, num_classes, blocks=(2, 2, 2, 2), block=BasicBlock)


def resnet34(input_shape: Sequence[int], num_classes: int) -> CifarResNet:
    return CifarResNet(input_shape, num_classes, blocks=(3, 4, 6, 3), block=BasicBlock)


def resnet50(input_shape: Sequence[int], num_classes: int) -> CifarResNet:
    return CifarResNet(input_shape, num_classes, blocks=(3, 4, 6, 3), block=Bottleneck)
