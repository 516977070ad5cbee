"""torchvision's ImageNet ResNets (224x224 inputs) for Clothing-1M, optionally from local weights:
ResNet-18 for the IL model and ResNet-50 for the target, as in the paper's release.

The CIFAR ResNets keep full resolution through a 3x3 stem, which at 224x224 costs ~15x the compute of
the ImageNet stem (7x7 stride-2 convolution and max-pool); these models are the ones to use on large
images. Weights are never downloaded: runs must work offline and on clusters without internet, so a
pretrained model is one whose weights file the user put on disk (``pretrained_path``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18, resnet50

from rholoss.models.layers import image_channels

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
        load_weights(model, Path(pretrained_path), depth)
    return model


def load_weights(model: nn.Module, path: Path, depth: int) -> None:
    architecture = f"ResNet-{depth}"
    if not path.is_file():
        raise FileNotFoundError(
            f"model.pretrained_path={path} does not exist. Weights are never downloaded: put a {architecture} "
            f"state dict there (e.g. torchvision's resnet{depth}-*.pth, copied from a machine with internet), "
            "or set model.pretrained_path=null to train from scratch."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state dict (a mapping of parameter names to tensors).")
    own = model.state_dict()
    # An ImageNet output layer (1000 classes) does not fit this task's classes: keep the new one.
    head = {k for k, v in state.items() if k.startswith("fc.") and k in own and v.shape != own[k].shape}
    try:
        missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=False)
    except RuntimeError as error:  # a tensor of the wrong shape
        raise ValueError(f"{path} does not hold {architecture} weights: {error}") from None
    if unexpected or set(missing) - head:
        raise ValueError(
            f"{path} does not hold {architecture} weights: missing {sorted(set(missing) - head)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}."
        )
