"""GoogLeNet (Inception-v1) for 32x32 inputs: a single 3x3 stem instead of the 7x7/stride-2 stem and
two max-pools, so the nine Inception modules see 32x32, 16x16 and 8x8 maps."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from rholoss.models.layers import Branches, classifier_head, conv_bn, image_channels

# Per module: 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection (Szegedy et al. 2015, Table 1);
# "M" halves the resolution.
# Inception modules (n1, n3 reduce, n3, n5 reduce, n5, pool projection) and "M" for a max-pool.
MODULES: tuple[tuple[int, int, int, int, int, int] | str, ...] = (
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    "M",
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
    "M",
    (256, 160, 320, 32, 128, 128),
    (384, 192, 384, 48, 128, 128),
)


def inception(in_channels: int, n1: int, r3: int, n3: int, r5: int, n5: int, pool: int) -> Branches:
    return Branches(
        conv_bn(in_channels, n1, 1),
        nn.Sequential(conv_bn(in_channels, r3, 1), conv_bn(r3, n3, 3)),
        nn.Sequential(conv_bn(in_channels, r5, 1), conv_bn(r5, n5, 5)),
        nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn(in_channels, pool, 1)),
    )


class CifarGoogLeNet(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(image_channels(input_shape), 192, 3)]
        channels = 192
        for module in MODULES:
            if isinstance(module, str):  # "M"
                layers.append(nn.MaxPool2d(3, 2, 1))
            else:
                layers.append(inception(channels, *module))
                n1, _, n3, _, n5, pool = module
                channels = n1 + n3 + n5 + pool
        self.features = nn.Sequential(*layers)
        self.head = classifier_head(channels, num_classes, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
