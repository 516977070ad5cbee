"""Which keyword arguments a model callable takes, seen through ``**kwargs`` where Python allows.

The framework passes data-derived arguments (``num_classes``, ``input_shape``, text settings) only to
callables that take them, and refuses config settings a model does not take. Many constructors hide
their arguments behind ``**kwargs``: torchvision's ``resnet18(*, weights, progress, **kwargs)``
forwards them to ``ResNet(num_classes=...)``, and a subclass's ``__init__(**kwargs)`` to its parent's.
Both are followed: a builder's return annotation names the class its ``**kwargs`` reach, a class's
``__init__`` hands them to the next ``__init__`` in its MRO. What cannot be followed is *opaque*: then
only the named arguments are passed, and unknown settings are left for the callable to judge.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
# Hydra's own keys in a config that names a callable.
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_convert_", "_recursive_", "_args_"})


@dataclass(frozen=True)
class Arguments:
    """``names``: keyword arguments the callable takes; ``opaque``: it takes more through ``**kwargs``
    that could not be followed."""

    names: frozenset[str]
    opaque: bool

    def takes(self, name: str) -> bool:
        return name in self.names


def taken_arguments(target: Callable[..., Any]) -> Arguments:
    """The keyword arguments ``target`` (a class, function or other callable) takes."""
    if inspect.isclass(target):
        return _class_arguments(target)
    try:
        signature = inspect.signature(target, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # an annotation that does not resolve
        signature = inspect.signature(target)
    names = _named(signature.parameters.values())
    if not _has_var_keyword(signature.parameters.values()):
        return Arguments(names, False)
    returned = signature.return_annotation
    # A builder annotated with the exact model class it builds forwards **kwargs to that class.
    if inspect.isclass(returned) and issubclass(returned, nn.Module) and returned is not nn.Module:
        inner = _class_arguments(returned)
        return Arguments(names | inner.names, inner.opaque)
    return Arguments(names, True)


def refuse_unknown_settings(target: str, settings: Iterable[str], arguments: Arguments) -> None:
    """Refuse settings the model callable does not take, naming them and the fix, instead of a bare
    TypeError: picking another ``model=`` on the command line keeps the experiment's model settings
    (e.g. the MLP's ``hidden_sizes``), which the other model does not know."""
    if arguments.opaque:
        return
    unknown = sorted(set(settings) - arguments.names - HYDRA_KEYS)
    if unknown:
        removals = " ".join(f"'~model.{key}'" for key in unknown)
        raise ValueError(
            f"The model {target} does not take {', '.join(unknown)}. Settings of another model "
            f"(an experiment's) carry over when you choose model= on the command line: remove them with "
            f"{removals}, or use an experiment made for this model."
        )


def _class_arguments(cls: type) -> Arguments:
    names: frozenset[str] = frozenset()
    for klass in cls.__mro__:
        if klass in (nn.Module, object):  # takes nothing a model config could set
            return Arguments(names, False)
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = list(inspect.signature(init).parameters.values())[1:]  # drop self
        names |= _named(parameters)
        if not _has_var_keyword(parameters):
            return Arguments(names, False)
    return Arguments(names, True)


def _named(parameters: Iterable[inspect.Parameter]) -> frozenset[str]:
    return frozenset(p.name for p in parameters if p.kind in _NAMED)


def _has_var_keyword(parameters: Iterable[inspect.Parameter]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
