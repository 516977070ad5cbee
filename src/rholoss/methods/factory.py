"""A method from the ``selection`` config, as ``model._target_`` makes a model.

``selection.name`` names a registered rule (``reducible_loss``); ``selection._target_`` names, by
import path, a rule function from any package (decorated with :func:`~rholoss.selection.register_score`,
:func:`~rholoss.selection.register` or :func:`~rholoss.selection.register_token_score`) or a
:class:`~rholoss.methods.Method` subclass. The other keys are the method class's keyword arguments and
the rule's own options; a key neither takes is refused, naming the closest one.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from hydra.utils import get_object

from rholoss.methods.base import Method, method_keys
from rholoss.methods.points import PointSelection
from rholoss.methods.svp import CoresetSelection
from rholoss.methods.tokens import TokenSelection
from rholoss.selection.registry import SelectionRule, get_selection, rule_of

# Arguments of a rule's function that are not options: the batch and the number to keep.
_RULE_ARGUMENTS = {"batch", "k"}
# Keys of the selection node that say what it is, not how it runs.
_IDENTITY_KEYS = {"name", "_target_"}


def method_class_for(rule: SelectionRule) -> type[Method]:
    """The lifecycle that runs ``rule``: token-level rules train on a share of every drawn sequence's
    tokens, core-set rules choose their pool first, the rest select points from each large batch."""
    if rule.token_level:
        return TokenSelection
    if rule.needs_coreset:
        return CoresetSelection
    return PointSelection


def resolve(settings: Mapping[str, Any]) -> tuple[type[Method], SelectionRule]:
    """The method class and rule the ``selection`` config names."""
    target, name = settings.get("_target_"), settings.get("name")
    if target is None:
        if name is None:
            raise ValueError("The selection config needs selection.name (a registered rule) or selection._target_.")
        rule = get_selection(str(name))
        return method_class_for(rule), rule
    try:
        found = get_object(str(target))
    except Exception as error:  # hydra wraps import errors of its own kinds
        raise ValueError(f"selection._target_={target} cannot be imported: {error}") from None
    if isinstance(found, type) and issubclass(found, Method):
        rule_name = name or getattr(found, "default_rule", None)
        if rule_name is None:
            raise ValueError(
                f"selection._target_={target} is a Method class: say which rule it runs with selection.name=... "
                "(or give the class a default_rule)."
            )
        return found, get_selection(str(rule_name))
    declared = rule_of(found)
    if declared is None:
        raise ValueError(
            f"selection._target_={target} is not a selection rule: decorate the function with "
            "@rholoss.selection.register_score(...) (a score per point), @register(...) (positions to train on) "
            "or @register_token_score(...) (a score per token), saying what it needs, or name a "
            "rholoss.methods.Method subclass."
        )
    return method_class_for(declared), declared


def rule_options(rule: SelectionRule) -> set[str]:
    """The keyword options the rule's function takes."""
    function = rule.select_tokens or rule.select
    parameters = inspect.signature(function).parameters.values()
    return {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD} - _RULE_ARGUMENTS


def selection_keys(settings: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """(keys the method class takes, the rule's options) for the ``selection`` config ``settings``."""
    method_class, rule = resolve(settings)
    return method_keys(method_class) | _IDENTITY_KEYS, rule_options(rule)


def build_method(settings: Mapping[str, Any], ignore: set[str] | frozenset[str] = frozenset()) -> Method:
    """The method the ``selection`` config describes. ``ignore``: keys the run's base config sets for
    every method (``precision``, ``stale_every``, …) that this method class may not take; any other key
    it does not take is refused."""
    method_class, rule = resolve(settings)
    takes, options = method_keys(method_class), rule_options(rule)
    unknown = sorted(set(settings) - takes - options - _IDENTITY_KEYS - set(ignore))
    if unknown:
        accepted = sorted(takes | options)
        hints = [
            f"selection.{key}" + (f" (did you mean selection.{close[0]}?)" if close else "")
            for key in unknown
            for close in [difflib.get_close_matches(key, accepted, n=1)]
        ]
        raise ValueError(
            f"Selection {rule.name!r} ({method_class.__name__}) does not take {', '.join(hints)}; it takes "
            f"{', '.join(accepted)}."
        )
    keywords = {key: value for key, value in settings.items() if key in takes}
    return method_class(rule, options={key: settings[key] for key in options if key in settings}, **keywords)
