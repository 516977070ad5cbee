"""Local weights for a freshly built model, with a new output layer where the classes differ.

Weights are never downloaded: runs must work offline and on clusters without internet, so a
pretrained model is one whose state dict the user put on disk (ImageNet weights copied from a
machine with internet, or a previous run's model).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def load_weights(model: nn.Module, path: Path, architecture: str, setting: str, num_classes: int | None) -> None:
    """Load the state dict at ``path`` into ``model`` in place.

    A tensor whose shape differs from the model's only in its first dimension, where the model has
    ``num_classes``, belongs to the output layer of another class count (ImageNet's 1000 classes):
    it is left out and the model's freshly initialised layer is trained instead. Any other difference
    means the file holds another architecture's weights, an error naming ``architecture`` and the
    config ``setting`` that points to the file.
    """
    require_file(path, architecture, setting)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state dict (a mapping of parameter names to tensors).")
    own = model.state_dict()
    head = {k for k, v in state.items() if k in own and _other_class_count(v.shape, own[k].shape, num_classes)}
    wrong = {k: (tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if k in own and k not in head
             and v.shape != own[k].shape}  # fmt: skip
    if wrong:
        shown = ", ".join(f"{k} is {file} in the file, {here} here" for k, (file, here) in sorted(wrong.items())[:3])
        raise ValueError(f"{path} does not hold {architecture} weights: {shown}.")
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=False)
    # Auxiliary classifiers the model was built without (GoogLeNet's, Inception-v3's with
    # aux_logits=false) stand as None attributes: their weights in the file have no place to go.
    unexpected = [k for k in unexpected if getattr(model, k.split(".")[0], "absent") is not None]
    if unexpected or set(missing) - head:
        raise ValueError(
            f"{path} does not hold {architecture} weights: missing {sorted(set(missing) - head)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}."
        )


def require_file(path: Path, architecture: str, setting: str) -> None:
    """A clear error for a weights file that is not there: never a download."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{setting}={path} does not exist. Weights are never downloaded: put a {architecture} state dict "
            f"there (e.g. ImageNet weights as a *.pth file, copied from a machine with internet), or set "
            f"{setting}=null to train from scratch."
        )


def _other_class_count(file_shape: torch.Size, model_shape: torch.Size, num_classes: int | None) -> bool:
    return (
        num_classes is not None
        and len(file_shape) == len(model_shape) >= 1
        and model_shape[0] == num_classes != file_shape[0]
        and file_shape[1:] == model_shape[1:]
    )
