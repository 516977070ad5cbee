"""Refuse config keys that nothing reads, before any work: a typo added with ``+`` (``+foo=1``,
``+trainer.max_step=5``, ``+selection.temprature=2``) would otherwise be ignored silently.

Hydra refuses overrides of keys that no config defines, unless they are added with ``+``. A key of
the composed config is read when

- a config file in ``configs/`` defines it at that place (the project's own settings, whichever
  group option or experiment defines them), or
- it sits in a node that is instantiated (``_target_``) and the target's signature takes it
  (Trainer arguments, a model's or datamodule's keyword, a logger's option), or
- it is a ``selection`` key that the base config sets for every method, that the configured method
  class takes or that its rule takes (e.g. ``temperature`` for reducible_loss_sampled; not for a rule
  without that option).

Checked against the real signatures, so every addition the code would accept still runs.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from rholoss.config_dict import config_dict
from rholoss.configs import CONFIG_DIR
from rholoss.methods import selection_keys

# Keys Hydra's instantiate reads itself.
_INSTANTIATE_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
# Bases whose __init__ takes **kwargs but reads none: a subclass's **kwargs passed to them is unread.
_KEYWORDLESS_BASES = (pl.LightningDataModule, pl.LightningModule, torch.nn.Module)


class UnknownConfigKeyError(ValueError):
    """The config holds keys that nothing reads."""


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`UnknownConfigKeyError` naming every key of ``cfg`` that nothing reads, each
    with the closest key that would be read there. The ``selection`` keys must be set by the base
    config for every method, or be taken by the method class or by its rule."""
    container = config_dict(cfg, resolve=False)
    container.pop("hydra", None)  # Hydra's own, when composed with it
    selection = container.pop("selection", None)
    unknown = list(_unknown(container, defined_keys(CONFIG_DIR), ""))
    options: set[str] = set()
    if isinstance(selection, dict):
        takes, options = selection_keys(selection)
        read = takes | options | base_selection_keys()
        unknown += [(f"selection.{key}", _closest(key, read, "selection.")) for key in selection if key not in read]
    if not unknown:
        return
    lines = [
        f"  {path}" + (f" (did you mean {closest}?)" if closest else " (no similar key)") for path, closest in unknown
    ]
    if isinstance(selection, dict) and any(path.startswith("selection.") for path, _ in unknown):
        name = selection.get("name") or selection.get("_target_")
        lines.append(f"  (the selection function {name} takes {', '.join(sorted(options)) or 'no options'})")
    raise UnknownConfigKeyError(
        "These config keys are read by nothing (a typo, or a key added with + that no config or "
        "signature takes):\n" + "\n".join(lines) + "\nFix the spelling or remove them (python run.py --cfg job "
        "shows the composed config)."
    )


@functools.cache
def defined_keys(config_dir: Path) -> dict[str, Any]:
    """Every key any config file under ``config_dir`` defines, as a tree of nested dicts (a leaf is
    an empty dict), each group option's keys under its package (``_global_`` files at the root)."""
    tree: dict[str, Any] = {}
    for path in sorted(config_dir.rglob("*.yaml")):
        group = path.parent.relative_to(config_dir).parts
        if group[:1] == ("hydra",):  # Hydra's settings, not the task's
            continue
        package = () if not group or path.read_text().startswith("# @package _global_") else group
        content = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        if isinstance(content, dict):
            content.pop("defaults", None)
            node = tree
            for part in package:
                node = node.setdefault(part, {})
            _merge(node, content)
    return tree


def _merge(tree: dict[str, Any], content: dict[Any, Any]) -> None:
    for key, value in content.items():
        child = tree.setdefault(str(key), {})
        if isinstance(value, dict):
            _merge(child, value)


def _unknown(node: dict[str, Any], defined: dict[str, Any], prefix: str) -> Iterator[tuple[str, str | None]]:
    """(dotted path, closest accepted key) of each key under ``node`` that nothing reads."""
    accepted = _signature_keys(node.get("_target_"))
    for key, value in node.items():
        path = f"{prefix}{key}"
        if key in defined:
            # A mapping given where the configs hold a plain value ({split: files}) is that value, not settings.
            if isinstance(value, dict) and (defined[key] or "_target_" in value):
                yield from _unknown(value, defined[key], f"{path}.")
            continue
        if accepted is None or key in accepted or key in _INSTANTIATE_KEYS:
            continue
        if isinstance(value, dict) and "_target_" in value and _is_dict_of_targets(defined):
            yield from _unknown(value, {}, f"{path}.")  # a new callback or logger
            continue
        yield path, _closest(key, set(defined) | (accepted or set()), prefix)


def _closest(key: str, candidates: set[str], prefix: str) -> str | None:
    closest = difflib.get_close_matches(str(key), sorted(candidates), n=1)
    return f"{prefix}{closest[0]}" if closest else None


def _is_dict_of_targets(defined: dict[str, Any]) -> bool:
    """A node whose entries are each instantiated (``callbacks``, ``logger``): new entries may be added."""
    return bool(defined) and all("_target_" in child for child in defined.values())


def _signature_keys(target: Any) -> set[str] | None:
    """The keyword arguments ``target`` takes; None when it takes any; the empty set for a node
    that is not instantiated. This project's classes pass their ``**kwargs`` on to their base
    class, so a key counts if a base down the line takes it (Lightning's and torch's bases read
    none); another library's ``**kwargs`` may go anywhere (a logger's to its service, a strategy's
    to DDP), so it takes any key."""
    if target is None:
        return set()
    try:
        target = get_object(str(target))
    except (ImportError, ValueError, AttributeError):
        return None  # cannot be found here: instantiate will say what is wrong
    if not isinstance(target, type):
        return _keywords(target)
    keys: set[str] = set()
    for base in target.__mro__:
        if base in _KEYWORDLESS_BASES:
            return keys
        if "__init__" in vars(base):
            taken = _keywords(vars(base)["__init__"])
            if taken is not None:
                return keys | taken
            if not base.__module__.startswith("rholoss."):
                return None
            keys |= _keywords(vars(base)["__init__"], named_only=True) or set()
    return None


def _keywords(function: Any, named_only: bool = False) -> set[str] | None:
    """The named parameters of ``function``; None if it also takes ``**kwargs`` (unless ``named_only``)."""
    parameters = inspect.signature(function).parameters.values()
    if not named_only and any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


@functools.cache
def base_selection_keys() -> frozenset[str]:
    """The ``selection`` keys the target stage's base config (train.yaml) sets for every method: a
    method that does not take one of them runs without it."""
    base = OmegaConf.load(CONFIG_DIR / "train.yaml")
    node = base.get("selection") if isinstance(base, DictConfig) else None
    return frozenset(str(key) for key in node or {})
