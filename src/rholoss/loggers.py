"""The loggers a config names (``logger=csv``, ``wandb``, ``tensorboard``, ``mlflow``): the packages
they need, checked before any work, since only CSV's ships with the core install."""

from __future__ import annotations

import importlib.util
import os

from omegaconf import DictConfig

# Logger class -> (the package it imports, the rholoss extra that installs it).
_PACKAGES = {
    "WandbLogger": ("wandb", "wandb"),
    "TensorBoardLogger": ("tensorboard", "tensorboard"),
    "MLFlowLogger": ("mlflow", "mlflow"),
}


def require_package(package: str, extra: str, wanted: str) -> None:
    """Refuse ``wanted`` (what the user asked for, in words) when ``package`` is not installed,
    naming the rholoss extra that installs it."""
    if importlib.util.find_spec(package) is None:
        raise ModuleNotFoundError(
            f"{wanted} needs the {package} package, which is not installed: pip install 'rholoss[{extra}]'."
        )


def prepare_loggers(cfg: DictConfig) -> None:
    """Refuse a logger whose package is not installed (Lightning would say so only when the trainer
    is built, after the data is loaded), and let MLflow write its local file store."""
    for key, node in (cfg.get("logger") or {}).items():
        cls = str(node.get("_target_", "")).rsplit(".", 1)[-1]
        if cls not in _PACKAGES:
            continue
        require_package(*_PACKAGES[cls], f"logger={key} ({cls})")
        if cls == "MLFlowLogger" and str(node.get("tracking_uri") or "file:").startswith("file:"):
            # MLflow 3 refuses a file store unless this is set: rholoss keeps each run's MLflow
            # record in the run folder, with no database or server to set up.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
