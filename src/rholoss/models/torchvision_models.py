"""Any torchvision classification model by name (``model=torchvision model.name=...``), built by
torchvision's own ``get_model`` with the data's class count, optionally from local weights.

torchvision's named weights (``IMAGENET1K_V1``, ``DEFAULT``) download on first use; runs never do, so
a named weight is taken only when its file already sits in the torch hub cache, and otherwise the
error says where to put it.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch
import torchvision.models
from torch import nn

from rholoss.models.signatures import refuse_unknown_settings, taken_arguments
from rholoss.models.weights import load_weights


def torchvision_model(name: str, num_classes: int, weights: str | None = None, **settings: Any) -> nn.Module:
    """torchvision's classifier ``name`` with ``num_classes`` outputs.

    Args:
        name: any of ``torchvision.models.list_models(module=torchvision.models)``.
        num_classes: from the data; an output layer of another size in ``weights`` is replaced.
        weights: a local state-dict file, or the name of one of the model's torchvision weights
            (``IMAGENET1K_V1``, ``DEFAULT``, ``ResNet18_Weights.IMAGENET1K_V1``) whose file is already in
            the torch hub cache. None: freshly initialised.
        settings: the model class's own arguments (e.g. ``dropout``, ``image_size`` for ViTs).
    """
    builder = torchvision.models.get_model_builder(_known_name(name))
    arguments = taken_arguments(builder)
    refuse_unknown_settings(f"torchvision {name}", settings, arguments)
    # The training step takes one logits tensor; GoogLeNet and Inception-v3 would return auxiliary
    # logits too in train mode unless told not to.
    if arguments.takes("aux_logits"):
        settings.setdefault("aux_logits", False)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **settings)
    if weights is not None:
        load_weights(model, _weights_file(name, str(weights)), f"torchvision {name}", "model.weights", num_classes)
    return model


def classification_models() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def _known_name(name: str) -> str:
    known = classification_models()
    if name in known:
        return name
    if name in torchvision.models.list_models():
        raise ValueError(
            f"model.name={name} is a torchvision detection, segmentation, video or optical-flow model; "
            "model=torchvision takes classification models (torchvision.models.list_models(module=torchvision.models))."
        )
    close = difflib.get_close_matches(name.lower(), known, n=6, cutoff=0.6)
    hint = f"close names: {', '.join(close)}" if close else f"the names: {', '.join(known)}"
    raise ValueError(f"Unknown torchvision classification model model.name={name}; {hint}.")


def _weights_file(name: str, weights: str) -> Path:
    """The file ``model.weights`` points to: a path, or a named torchvision weight's file in the hub cache."""
    path = Path(weights).expanduser()
    if path.is_file():
        return path
    named = _named_weights(name, weights)
    if named is None:
        return path  # load_weights says the file does not exist and how to proceed
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(named.url).name
    if cached.is_file():
        return cached
    raise FileNotFoundError(
        f"model.weights={weights} names torchvision's {named}, which torchvision downloads from {named.url}; "
        f"runs never download. On a machine with internet, fetch that file (e.g. "
        f"torchvision.models.get_model({name!r}, weights={str(named)!r}) saves it in the torch hub cache) and copy "
        f"it to {cached}, or anywhere and set model.weights=/path/to/{cached.name}."
    )


def _named_weights(name: str, weights: str) -> torchvision.models.WeightsEnum | None:
    """The torchvision weight ``weights`` names for model ``name`` (``IMAGENET1K_V1``, ``DEFAULT`` or
    ``<Enum>.<value>``), or None when it names none."""
    try:
        enum = torchvision.models.get_model_weights(name)
    except ValueError:  # a model without published weights
        return None
    member = weights.split(".")[-1] if weights.startswith(f"{enum.__name__}.") else weights
    try:
        return enum[member]
    except KeyError:
        if "/" in weights or weights.endswith((".pth", ".pt")):
            return None
        raise ValueError(
            f"model.weights={weights} is neither a file nor one of {name}'s torchvision weights "
            f"({', '.join(enum.__members__)})."
        ) from None
