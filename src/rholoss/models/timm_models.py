"""Any timm model by name (``model=timm model.name=...``; the optional ``timm`` extra), built by
``timm.create_model`` for the data's channels and class count, optionally from a local weights file.

timm adapts what torchvision cannot: ``in_chans`` builds the stem for the data's channel count, and
local ImageNet weights are loaded into it (the RGB filters summed for grey images) with the output
layer replaced for this data's classes. Weights are never downloaded: timm is asked for pretrained
weights only with a local file to read them from.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from torch import nn

from rholoss.models.layers import image_channels
from rholoss.models.signatures import refuse_unknown_settings, taken_arguments
from rholoss.models.weights import require_file


def timm_model(
    name: str, input_shape: Sequence[int], num_classes: int, weights: str | None = None, **settings: Any
) -> nn.Module:
    """timm's model ``name`` for ``input_shape`` images (any channel count) with ``num_classes`` outputs.

    Args:
        name: any of ``timm.list_models()``.
        weights: a local state-dict file of this timm architecture (e.g. ImageNet weights saved
            from timm, or a previous run's model); None: freshly initialised.
        settings: the model's own arguments (e.g. ``drop_rate``, ``img_size`` for a ViT on 32x32 images).
    """
    try:
        import timm
    except ImportError:
        raise ImportError(
            "model=timm needs the timm package: pip install 'rholoss[timm]' (or pip install timm)."
        ) from None
    if not timm.is_model(name):
        close = difflib.get_close_matches(name.lower(), timm.list_models(), n=6, cutoff=0.6)
        hint = f"close names: {', '.join(close)}" if close else "see timm.list_models()"
        raise ValueError(f"Unknown timm model model.name={name}; {hint}.")
    refuse_unknown_settings(f"timm {name}", settings, taken_arguments(timm.models.model_entrypoint(name)))
    path = None if weights is None else Path(weights).expanduser()
    local: dict[str, Any] = {}
    if path is not None:
        require_file(path, f"timm {name}", "model.weights")
        local = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}
    try:
        model = timm.create_model(
            name, num_classes=num_classes, in_chans=image_channels(input_shape), **local, **settings
        )
    except RuntimeError as error:  # load_state_dict: misshapen tensors
        if path is None:
            raise
        raise ValueError(f"{path} does not hold timm {name} weights: {error}") from None
    if path is not None:
        _check_complete(model, path, name)
    return model


def _check_complete(model: nn.Module, path: Path, name: str) -> None:
    """timm loads a file for another class count leniently (missing and unexpected tensors pass
    silently); outside the output layer, the file must match the model's tensors one for one."""
    from timm.models import load_state_dict

    classifier = cast(dict[str, Any], model.pretrained_cfg).get("classifier") or ()  # every timm model has one
    heads = tuple(f"{head}." for head in ((classifier,) if isinstance(classifier, str) else classifier))
    state, own = load_state_dict(str(path)), model.state_dict()
    missing = sorted(k for k in own.keys() - state.keys() if not k.startswith(heads))
    unexpected = sorted(k for k in state.keys() - own.keys() if not k.startswith(heads))
    if missing or unexpected:
        raise ValueError(
            f"{path} does not hold timm {name} weights: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
