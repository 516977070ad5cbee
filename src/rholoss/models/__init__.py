"""Plain ``nn.Module`` classifiers, built from ``input_shape`` and ``num_classes``; no Lightning inside."""

from rholoss.models.cnn import SmallCNN
from rholoss.models.mlp import MLP
from rholoss.models.resnet import CifarResNet, resnet18

__all__ = ["MLP", "CifarResNet", "SmallCNN", "resnet18"]
