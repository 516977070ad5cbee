"""The Hydra configs of both stages. They ship inside the package, so an installed rholoss composes
them from any folder: the console scripts search ``pkg://rholoss.configs``, and code that composes a
config itself (tests, notebooks, benchmarks) calls :func:`compose_config`."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

# Hydra's name for this folder: it finds the YAML files through the package, wherever it is installed.
SEARCH_PATH = "pkg://rholoss.configs"
# The same folder on disk, for code that reads the YAML files themselves (the config check).
CONFIG_DIR = Path(__file__).resolve().parent


def compose_config(config_name: str, overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """The config ``rholoss-train`` (``train``) or ``rholoss-irreducible`` (``train_irreducible``)
    would compose with these command-line overrides, without starting a run."""
    with initialize_config_module(config_module="rholoss.configs", version_base="1.3"):
        return compose(config_name, overrides=overrides, return_hydra_config=return_hydra_config)
