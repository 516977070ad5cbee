"""A config mapping as a plain ``dict[str, Any]``.

``OmegaConf.to_container`` is typed to return a list, a string or None as well, for any node; the
callers here hold mapping nodes (a model's settings, a whole run config), and read the result as a
dict. This says so once, and fails clearly if a node is not a mapping.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def config_dict(node: DictConfig, resolve: bool = True) -> dict[str, Any]:
    """``node`` as nested plain dicts and lists (interpolations resolved when ``resolve``)."""
    container = OmegaConf.to_container(node, resolve=resolve)
    if not isinstance(container, dict):
        raise TypeError(f"Expected a config mapping, got {type(container).__name__}: {container!r}.")
    return {str(key): value for key, value in container.items()}
