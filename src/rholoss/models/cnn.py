from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from rholoss.models.layers import image_channels


class SmallCNN(nn.Module):
    """The paper's cheap irreducible loss model (Sec. 5.3), "reminiscent of LeNet": unpadded 3x3
    convolutions of ``widths`` channels, each followed by 2x2 max-pooling, then dense layers of
    ``hidden_sizes``. With the defaults it has ~21x fewer parameters and ~29x fewer multiply-adds
    than the CIFAR ResNet-18 on 32x32 inputs, the ratios the paper reports.

    ``dropout`` > 0 adds channel dropout after each convolution block and dropout after each dense
    layer (for MC-dropout selection functions).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        widths: Sequence[int] = (64, 128, 256),
        hidden_sizes: Sequence[int] = (128, 256),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        features: list[nn.Module] = []
        channels = image_channels(input_shape)
        for width in widths:
            features += [nn.Conv2d(channels, width, 3), nn.MaxPool2d(2), nn.ReLU(inplace=True)]
            if dropout > 0:
                features.append(nn.Dropout2d(dropout))
            channels = width
        self.features = nn.Sequential(*features, nn.Flatten())
        height, width = input_shape[1:]
        for _ in widths:  # each block: unpadded 3x3 convolution (-2 pixels), then halving
            height, width = (height - 2) // 2, (width - 2) // 2
        if height < 1 or width < 1:
            raise ValueError(
                f"SmallCNN with {len(widths)} blocks needs larger inputs than {tuple(input_shape)}: "
                "use fewer model.widths or larger images."
            )
        size = channels * height * width
        dense: list[nn.Module] = []
        for hidden in hidden_sizes:
            dense += [nn.Linear(size, hidden), nn.ReLU(inplace=True)]
            if dropout > 0:
                dense.append(nn.Dropout(dropout))
            size = hidden
        self.classifier = nn.Sequential(*dense, nn.Linear(size, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
