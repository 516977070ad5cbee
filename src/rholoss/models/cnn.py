from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """LeNet-style CNN: two conv-pool blocks and two dense layers. Cheap enough to serve as the
    irreducible loss model for a much larger target (paper Sec. 5.3)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        channels = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 16, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
