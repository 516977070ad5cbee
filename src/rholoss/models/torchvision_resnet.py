"""torchvision's ImageNet ResNets (224x224 inputs) for Clothing-1M, optionally from local weights:
ResNet-18 for the IL model and ResNet-50 for the target, as in the paper's release.

The CIFAR ResNets keep full resolution through a 3x3 stem, which at 224x224 costs ~15x the compute of
the ImageNet stem (7x7 stride-2 convolution and max-pool); these models are the ones to use on large
images. Weights are never downloaded (see :mod:`rholoss.models.weights`): a pretrained model is one
whose weights file the user put on disk (``pretrained_path``). Any other torchvision classifier, by
name: ``model=torchvision`` (:func:`rholoss.models.torchvision_model`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn
from torchvision.models import resnet18, resnet50

from rholoss.models.layers import image_channels
from rholoss.models.weights import load_weights

BUILDERS: dict[int, Callable[..., nn.Module]] = {18: resnet18, 50: resnet50}


def torchvision_resnet18(input_shape: Sequence[int], num_classes: int, pretrained_path: str | None = None) -> nn.Module:
    """ImageNet ResNet-18 with a ``num_classes`` output layer (see :func:`torchvision_resnet`)."""
    return torchvision_resnet(18, input_shape, num_classes, pretrained_path)


def torchvision_resnet50(input_shape: Sequence[int], num_classes: int, pretrained_path: str | None = None) -> nn.Module:
    """ImageNet ResNet-50 with a ``num_classes`` output layer (see :func:`torchvision_resnet`)."""
    return torchvision_resnet(50, input_shape, num_classes, pretrained_path)


def torchvision_resnet(
    depth: int, input_shape: Sequence[int], num_classes: int, pretrained_path: str | None = None
) -> nn.Module:
    """``pretrained_path``: a state dict saved by torchvision (e.g. ImageNet weights,
    ``resnet50-*.pth``) or by a previous run; its output layer is kept only if it has ``num_classes``
    outputs, otherwise the new one stays freshly initialised."""
    name = f"torchvision_resnet{depth}"
    if image_channels(input_shape) != 3:
        raise ValueError(f"{name} takes RGB images (3 channels), got input_shape={tuple(input_shape)}.")
    model = BUILDERS[depth](weights=None, num_classes=num_classes)
    if pretrained_path is not None:
        load_weights(model, Path(pretrained_path), f"ResNet-{depth}", "model.pretrained_path", num_classes)
    return model
