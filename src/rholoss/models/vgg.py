"""VGG with BatchNorm for 32x32 inputs: five 2x2 poolings take 32x32 to 1x1, then one linear layer."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from rholoss.models.layers import classifier_head, conv_bn, image_channels

# Output channels of each 3x3 convolution; "M" is a 2x2 max-pool.
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class CifarVGG(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int, layers: Sequence[int | str] = VGG11) -> None:
        super().__init__()
        features: list[nn.Module] = []
        channels = image_channels(input_shape)
        for layer in layers:
            if layer == "M":
                features.append(nn.MaxPool2d(2))
            else:
                features.append(conv_bn(channels, int(layer), 3))
                channels = int(layer)
        self.features = nn.Sequential(*features)
        self.head = classifier_head(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def vgg11_bn(input_shape: Sequence[int], num_classes: int) -> CifarVGG:
    return CifarVGG(input_shape, num_classes, VGG11)
