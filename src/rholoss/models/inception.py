"""Inception-v3 for 32x32 inputs: a stride-1 3x3 stem without max-pools replaces the 299x299 stem,
so the Inception-A/C/E modules see 32x32, 16x16 and 8x8 maps (ImageNet: 35, 17, 8). Module widths
follow Szegedy et al. 2016; the auxiliary classifier is left out (a training aid, not the model)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from rholoss.models.layers import Branches, classifier_head, conv_bn, image_channels


def _chain(*convs: tuple[int, int, int | tuple[int, int]]) -> nn.Sequential:
    """Convolutions given as (in, out, kernel) triples, one after the other."""
    return nn.Sequential(*(conv_bn(i, o, k) for i, o, k in convs))


def _pool_projection(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.AvgPool2d(3, 1, 1), conv_bn(in_channels, out_channels, 1))


def inception_a(c: int, pool: int) -> Branches:
    """35x35-grid module (here 32x32): 1x1, 5x5, double 3x3 and pool branches; 224 + pool channels."""
    return Branches(
        conv_bn(c, 64, 1),
        _chain((c, 48, 1), (48, 64, 5)),
        _chain((c, 64, 1), (64, 96, 3), (96, 96, 3)),
        _pool_projection(c, pool),
    )


def reduction_b(c: int) -> Branches:
    """Grid reduction 32 -> 16: strided 3x3, strided double 3x3, max-pool; 480 + c channels."""
    return Branches(
        conv_bn(c, 384, 3, stride=2),
        nn.Sequential(conv_bn(c, 64, 1), conv_bn(64, 96, 3), conv_bn(96, 96, 3, stride=2)),
        nn.MaxPool2d(3, 2, 1),
    )


def inception_c(c: int, c7: int) -> Branches:
    """17x17-grid module (here 16x16): 7x7 factorised into 1x7 and 7x1; 768 channels."""
    return Branches(
        conv_bn(c, 192, 1),
        _chain((c, c7, 1), (c7, c7, (1, 7)), (c7, 192, (7, 1))),
        _chain((c, c7, 1), (c7, c7, (7, 1)), (c7, c7, (1, 7)), (c7, c7, (7, 1)), (c7, 192, (1, 7))),
        _pool_projection(c, 192),
    )


def reduction_d(c: int) -> Branches:
    """Grid reduction 16 -> 8; 512 + c channels."""
    return Branches(
        nn.Sequential(conv_bn(c, 192, 1), conv_bn(192, 320, 3, stride=2)),
        nn.Sequential(_chain((c, 192, 1), (192, 192, (1, 7)), (192, 192, (7, 1))), conv_bn(192, 192, 3, stride=2)),
        nn.MaxPool2d(3, 2, 1),
    )


def inception_e(c: int) -> Branches:
    """8x8-grid module with expanded filter banks: 3x3 split into parallel 1x3 and 3x1; 2048 channels."""
    return Branches(
        conv_bn(c, 320, 1),
        nn.Sequential(conv_bn(c, 384, 1), Branches(conv_bn(384, 384, (1, 3)), conv_bn(384, 384, (3, 1)))),
        nn.Sequential(
            _chain((c, 448, 1), (448, 384, 3)), Branches(conv_bn(384, 384, (1, 3)), conv_bn(384, 384, (3, 1)))
        ),
        _pool_projection(c, 192),
    )


class CifarInceptionV3(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        stem = _chain((image_channels(input_shape), 32, 3), (32, 32, 3), (32, 64, 3), (64, 80, 1), (80, 192, 3))
        self.features = nn.Sequential(
            stem,
            inception_a(192, 32),
            inception_a(256, 64),
            inception_a(288, 64),
            reduction_b(288),
            inception_c(768, 128),
            inception_c(768, 160),
            inception_c(768, 160),
            inception_c(768, 192),
            reduction_d(768),
            inception_e(1280),
            inception_e(2048),
        )
        self.head = classifier_head(2048, num_classes, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
