"""Plain ``nn.Module`` classifiers, built from ``input_shape`` and ``num_classes`` (text models also
from the datamodule's ``model_kwargs``); no Lightning inside."""

from rholoss.models.cnn import SmallCNN
from rholoss.models.mlp import MLP
from rholoss.models.resnet import CifarResNet, resnet18
from rholoss.models.text import SequenceClassifier

__all__ = ["MLP", "CifarResNet", "SequenceClassifier", "SmallCNN", "resnet18"]
