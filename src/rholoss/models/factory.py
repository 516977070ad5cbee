"""The model a ``model`` config names, fitted to the data and checked against it before training.

``model._target_`` may name any callable that returns an ``nn.Module``: a rholoss model, a torchvision
constructor (``torchvision.models.resnet18``), a class in the user's own package. The data offers
arguments (``input_shape``, ``num_classes``, a task's output width ``num_outputs``, a tokenizer's
``vocab_size`` and ``pad_token_id``); each goes only to callables that take it
(:mod:`rholoss.models.signatures`), so no model has to take the framework's whole vocabulary. A model
that does not fit the data (3-channel model, 1-channel images; 1000 outputs, 10 classes) is refused
after one forward pass on two inputs, not several minutes into a run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import default_collate

from rholoss.config_dict import config_dict
from rholoss.models.signatures import Arguments, refuse_unknown_settings, taken_arguments

if TYPE_CHECKING:
    from rholoss.data import SplitDataModule
    from rholoss.tasks import Task

# Inputs of the forward pass that checks a model against the data: two, so a model that squeezes the
# batch dimension shows it.
CHECK_BATCH = 2


class ModelDataMismatch(ValueError):
    """The model does not fit the data: raised before training, saying what differs."""


def build_model_for(
    model_cfg: DictConfig | Mapping[str, Any], datamodule: SplitDataModule, task: Task | None = None
) -> nn.Module:
    """:func:`build_model` with what a set-up datamodule (and the task, sized for it) says about the
    data, checked on two of its own inputs (a text datamodule's dict of token ids as much as an image
    batch) against the outputs the task needs."""
    return build_model(
        model_cfg, example_input=sample_inputs(datamodule), task=task, **data_arguments(datamodule, task)
    )


def data_arguments(datamodule: SplitDataModule, task: Task | None = None) -> dict[str, Any]:
    """The data-derived arguments a model may take: ``input_shape``, the task's
    :meth:`~rholoss.tasks.Task.model_arguments` (class count or output width; without a task the
    datamodule's ``num_classes``) and the datamodule's :meth:`~rholoss.data.PoolDataModule.model_kwargs`
    (text: ``vocab_size``, ``pad_token_id``)."""
    width = task.model_arguments() if task is not None else {"num_classes": datamodule.num_classes}
    return {"input_shape": tuple(datamodule.input_shape), **width, **datamodule.model_kwargs()}


def sample_inputs(datamodule: SplitDataModule) -> Any:
    """The inputs of the first :data:`CHECK_BATCH` points of the training split, collated as the
    datamodule's loaders collate them, on the CPU."""
    split = datamodule.split(datamodule.train_split)
    collate = datamodule.collate_fn or default_collate
    indices = [i % len(split) for i in range(CHECK_BATCH)]
    # As a DataLoader fetches: a dataset that reads whole batches at once (token windows) does so.
    items = split.__getitems__(indices) if hasattr(split, "__getitems__") else [split[i] for i in indices]
    _, inputs, _ = collate(items)
    return _to_cpu(inputs)


def build_model(
    model_cfg: DictConfig | Mapping[str, Any],
    input_shape: Sequence[int],
    num_classes: int | None = None,
    *,
    example_input: Any = None,
    task: Task | None = None,
    **data_kwargs: Any,
) -> nn.Module:
    """The model ``model_cfg`` describes, given the data-derived arguments its callable takes.

    ``input_shape``, ``num_classes`` and ``data_kwargs`` (e.g. ``vocab_size``, ``num_outputs``) are the
    candidates; None values are left out. A candidate set explicitly in the config must equal the
    data's value. The built model runs one forward pass in eval mode on ``example_input`` (default:
    zeros of ``input_shape``, so models whose inputs are not one float tensor, such as text models'
    dicts of token ids, need the datamodule's own: :func:`build_model_for`) and must return what
    ``task`` needs (:meth:`~rholoss.tasks.Task.output_problem`), or without a task
    ``(batch, num_outputs or num_classes)``.
    ``compile: true`` compiles it in place afterwards, so state-dict keys (checkpoints, stores) stay
    those of the plain model.
    """
    if num_classes is not None:  # classification: the output width is the class count
        data_kwargs.setdefault("num_outputs", num_classes)
    candidates = {
        name: value
        for name, value in {"input_shape": tuple(input_shape), "num_classes": num_classes, **data_kwargs}.items()
        if value is not None
    }
    settings: dict[str, Any] = config_dict(model_cfg) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    compile_model = bool(settings.pop("compile", False))
    target, builder = _target(settings)
    arguments = taken_arguments(builder)
    refuse_unknown_settings(target, settings, arguments)
    _refuse_contradictions(settings, candidates)
    passed = {name: value for name, value in candidates.items() if arguments.takes(name)}
    try:
        model = instantiate(settings, **passed)
    except InstantiationException as error:
        # The model's own refusals of bad settings say what to change; Hydra's wrapping adds nothing.
        if isinstance(error.__cause__, (ValueError, FileNotFoundError, ImportError)):
            raise error.__cause__ from None
        raise
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model._target_={target} returned a {type(model).__name__}, not a torch.nn.Module: name a model class "
            "or a function that builds and returns one."
        )
    inputs = torch.zeros(CHECK_BATCH, *candidates["input_shape"]) if example_input is None else example_input
    described = f"{target} (name={settings['name']})" if "name" in settings else target
    check_fits(model, inputs, candidates, described, arguments, {**settings, **passed}, task)
    if compile_model:
        model.compile()
    return model


def check_fits(
    model: nn.Module,
    inputs: Any,
    candidates: Mapping[str, Any],
    target: str,
    arguments: Arguments,
    given: Mapping[str, Any],
    task: Task | None = None,
) -> None:
    """One forward pass on ``inputs`` in eval mode without gradients: the model must take the data's
    inputs and return what ``task`` needs (without a task: one row of ``num_outputs`` or
    ``num_classes`` values per input). ``given``: the arguments the model was built with, to say
    why its width differs."""
    input_shape = tuple(candidates["input_shape"])
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(inputs)
    except Exception as error:  # any failure of the user's forward is reported with the data's shape
        raise ModelDataMismatch(
            f"The model {target} does not fit this data: a forward pass on {CHECK_BATCH} of its inputs "
            f"({_describe(inputs)}; input_shape {input_shape}) failed with {type(error).__name__}: {error}"
            f"{_first_layer_hint(model, inputs, input_shape)}"
        ) from error
    finally:
        model.train(training)
    width_name = "num_classes" if "num_classes" in candidates else "num_outputs"
    width = candidates.get(width_name)
    if not isinstance(output, Tensor):
        raise ModelDataMismatch(
            f"The model {target} returns a {type(output).__name__}; training needs one tensor of shape "
            f"(batch, {width if width is not None else width_name}) from its forward pass."
        )
    if task is not None:
        problem = task.output_problem(output, CHECK_BATCH)
        if problem:
            raise ModelDataMismatch(
                f"The model {target} {problem}. {_width_hint(target, width_name, width, arguments, given)}"
            )
    elif width is not None and tuple(output.shape) != (CHECK_BATCH, width):
        raise ModelDataMismatch(
            f"The model {target} outputs shape {tuple(output.shape)} for {CHECK_BATCH} inputs, but this data needs "
            f"({CHECK_BATCH}, {width}): {width_name}={width}. {_width_hint(target, width_name, width, arguments, given)}"
        )


def _target(settings: Mapping[str, Any]) -> tuple[str, Callable[..., Any]]:
    """The config's ``_target_`` and the callable it names."""
    target = settings.get("_target_")
    if not target:
        raise ValueError("The model config names no _target_: set model._target_ or choose a model= config.")
    try:
        builder = get_object(target)
    except Exception as error:  # Hydra reports import failures as several exception types
        raise ValueError(
            f"model._target_={target} cannot be imported ({error}). Name a callable that returns a torch.nn.Module "
            "and is importable here: e.g. torchvision.models.resnet18, or my_package.models.MyNet with my_package "
            "installed or on PYTHONPATH."
        ) from None
    return str(target), builder


def _refuse_contradictions(settings: Mapping[str, Any], candidates: Mapping[str, Any]) -> None:
    for name, value in candidates.items():
        if name in settings and _plain(settings[name]) != _plain(value):
            raise ValueError(
                f"model.{name}={settings[name]} contradicts the data, whose {name} is {value}. The framework passes "
                f"{name} from the data to models that take it: remove the setting ('~model.{name}')."
            )


def _plain(value: Any) -> Any:
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def _width_hint(target: str, width_name: str, width: int | None, arguments: Arguments, given: Mapping[str, Any]) -> str:
    if width_name in given:
        return f"It was built with {width_name}={given[width_name]} and still has another output width."
    if arguments.opaque:
        return (
            f"{target} takes **kwargs the framework cannot see through, so {width_name} was not passed: "
            f"set model.{width_name}={width} if it takes that, or give it a {width}-wide output layer."
        )
    return (
        f"{target} takes no {width_name} argument: give it one (the framework fills it from the data) or a "
        f"{width}-wide output layer."
    )


def _first_layer_hint(model: nn.Module, inputs: Any, input_shape: tuple[int, ...]) -> str:
    """What the model's first weight layer expects, where it contradicts the data's input_shape."""
    if not isinstance(inputs, Tensor):
        return ""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            if len(input_shape) == module.weight.dim() - 1 and module.in_channels != input_shape[0]:
                return (
                    f"\nIts first convolution ({name}) takes {module.in_channels}-channel inputs; the data has "
                    f"{input_shape[0]} channel(s). Choose a model for {input_shape[0]}-channel inputs, or give the "
                    f"data {module.in_channels} channels (e.g. repeat grey images along the channel dimension)."
                )
            return ""
        if isinstance(module, nn.Linear):
            features = math.prod(input_shape)
            if module.in_features != features:
                return (
                    f"\nIts first linear layer ({name}) takes {module.in_features} features; the data's inputs "
                    f"have {features} ({' x '.join(map(str, input_shape))})."
                )
            return ""
    return ""


def _describe(inputs: Any) -> str:
    if isinstance(inputs, Tensor):
        return f"a {str(inputs.dtype).removeprefix('torch.')} tensor of shape {tuple(inputs.shape)}"
    if isinstance(inputs, Mapping):
        return "a dict of " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in inputs.items() if isinstance(v, Tensor))
    return f"a {type(inputs).__name__}"


def _to_cpu(inputs: Any) -> Any:
    if isinstance(inputs, Tensor):
        return inputs.cpu()
    if isinstance(inputs, Mapping):
        return {key: _to_cpu(value) for key, value in inputs.items()}
    return inputs
