"""What stage two needs to build a selection method from the config and prepare it: the method
(config keys checked first), and the :class:`~rholoss.methods.Run` it prepares from, with the run's IL
store found and opened on demand and a trainer for auxiliary models."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from rholoss.config_check import base_selection_keys, check_config
from rholoss.config_dict import config_dict
from rholoss.data import SplitDataModule
from rholoss.irreducible import StoreError, find_store
from rholoss.irreducible.exchange import read_il_column
from rholoss.irreducible.source import IrreducibleLosses, open_irreducible
from rholoss.methods import Method, Run, build_method
from rholoss.models.factory import build_model_for
from rholoss.pipelines.parts import irreducible_command, store_suffix
from rholoss.tasks import Task

log = logging.getLogger(__name__)


def method_of(cfg: DictConfig) -> Method:
    """The selection method ``cfg.selection`` describes, after every config key is checked."""
    check_config(cfg)
    return build_method(config_dict(cfg.selection), ignore=base_selection_keys())


def run_for(cfg: DictConfig, datamodule: SplitDataModule, task: Task) -> Run:
    """What a method prepares from in a pipeline run."""
    return Run(
        task,
        len(datamodule.split("pool")),
        datamodule,
        irreducible=lambda per_token: _open_store(cfg, datamodule, task, per_token),
        fit=lambda module, steps: _fit_auxiliary(cfg, module, datamodule, steps),
        new_model=lambda settings=None: build_model_for(cfg.model if settings is None else settings, datamodule, task),
        optimizer=instantiate(cfg.optimizer),
    )


def _open_store(
    cfg: DictConfig, datamodule: SplitDataModule, task: Task, per_token: bool
) -> tuple[IrreducibleLosses, str]:
    """The IL of every pool point from its store (named, or the newest in the cache for this data),
    checked against the data and the task; per token only where the method reads per-token IL (held
    in memory beside data that is, read from the mapped store each step otherwise)."""
    path = _store_path(cfg, datamodule, task)
    if path.suffix == ".parquet":  # an IL table (id, il) made anywhere, joined by sample id
        if per_token:
            raise StoreError(f"irreducible.path={path} holds one IL per point; this method reads per-token IL.")
        log.info("Using the IL table %s, joined with the pool by sample id", path)
        return IrreducibleLosses(read_il_column(path, datamodule.sample_ids("pool"))), str(path)
    try:
        source, metadata = open_irreducible(
            path,
            datamodule.fingerprint,
            task.name,
            token_store=task.token_level,
            per_token=per_token,
            in_memory=datamodule.on_device,
        )
    except StoreError as error:
        if "this run's task" in str(error):
            raise StoreError(f"{error}\n  {irreducible_command()}") from None
        raise
    log.info("Using IL store %s (IL model %s %s)", path, task.val_metric, metadata.get(f"val_{task.metric}"))
    return source, str(path)


def _store_path(cfg: DictConfig, datamodule: SplitDataModule, task: Task) -> Path:
    if cfg.irreducible.path:
        path = Path(cfg.irreducible.path)
        if not path.is_file():
            raise StoreError(
                f"irreducible.path={path} does not exist. Make it with:\n  {irreducible_command()} "
                f"irreducible.path={shlex.quote(str(path))}"
            )
        return path
    found = find_store(Path(cfg.paths.cache_dir), datamodule.fingerprint, store_suffix(task))
    if found is None:
        raise StoreError(
            f"Selection {cfg.selection.get('name') or cfg.selection.get('_target_')!r} needs irreducible losses, "
            f"and the cache {cfg.paths.cache_dir} has no IL store for this data ({datamodule.name}, pool of "
            f"{datamodule.fingerprint['pool_size']}, {datamodule.noise_settings()}). Make one with:\n"
            f"  {irreducible_command()}\nor point to one with irreducible.path=..."
        )
    return found


def _fit_auxiliary(cfg: DictConfig, module: pl.LightningModule, datamodule: SplitDataModule, steps: int) -> pl.Trainer:
    """Train ``module`` (a proxy) for ``steps`` steps on the run's data with the run's trainer settings,
    on one device, without validation, logs or checkpoints; returns its trainer (to predict with)."""
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        devices=1,
        strategy="auto",
        max_steps=steps,
        val_check_interval=None,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule)
    return trainer
