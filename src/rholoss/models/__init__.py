"""Plain ``nn.Module`` classifiers and language models, built from ``input_shape`` and ``num_classes``
(text models also from the datamodule's ``model_kwargs``); no Lightning inside.

The CIFAR families take 32x32 images (small stems, little downsampling); ``torchvision_resnet18``
and ``torchvision_resnet50`` are the ImageNet-size models for Clothing-1M; ``torchvision_model`` is
any torchvision classifier by name, ``timm_model`` any timm model (optional extra).
:mod:`rholoss.models.factory` builds any of these, or any other callable that returns an
``nn.Module``, from a ``model`` config.
"""

from rholoss.models.causal_lm import CausalLM
from rholoss.models.cnn import SmallCNN
from rholoss.models.densenet import CifarDenseNet, densenet121
from rholoss.models.googlenet import CifarGoogLeNet
from rholoss.models.inception import CifarInceptionV3
from rholoss.models.mlp import MLP
from rholoss.models.mobilenet import CifarMobileNetV2
from rholoss.models.resnet import CifarResNet, resnet18, resnet34, resnet50
from rholoss.models.sequence_classifier import SequenceClassifier
from rholoss.models.timm_models import timm_model
from rholoss.models.torchvision_models import torchvision_model
from rholoss.models.torchvision_resnet import torchvision_resnet18, torchvision_resnet50
from rholoss.models.vgg import CifarVGG, vgg11_bn

__all__ = [
    "MLP",
    "CausalLM",
    "CifarDenseNet",
    "CifarGoogLeNet",
    "CifarInceptionV3",
    "CifarMobileNetV2",
    "CifarResNet",
    "CifarVGG",
    "SequenceClassifier",
    "SmallCNN",
    "densenet121",
    "resnet18",
    "resnet34",
    "resnet50",
    "timm_model",
    "torchvision_model",
    "torchvision_resnet18",
    "torchvision_resnet50",
    "vgg11_bn",
]
