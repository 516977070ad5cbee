"""Stage one, what run_irreducible.py runs: train the IL model(s), score every pool point (or token), write
the IL store."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor

from rholoss.callbacks import ValCurve
from rholoss.config_check import check_config
from rholoss.data import SplitDataModule
from rholoss.data.splits import pool_halves, seeded_fraction
from rholoss.irreducible import store_path
from rholoss.modules import SupervisedModule
from rholoss.pipelines.parts import (
    close_loggers,
    code_version,
    datamodule_of,
    model_for,
    resume_checkpoint,
    start_run,
    store_suffix,
    task_of,
    trainer_for,
    write_results,
)
from rholoss.pipelines.scoring import Scorer, score_pool
from rholoss.tasks import Task

# How the IL model(s) are trained: on the holdout split, or on two halves of the pool (no holdout).
IL_STRATEGIES = ("holdout", "two_halves")

log = logging.getLogger(__name__)


def train_irreducible(cfg: DictConfig) -> dict[str, Any]:
    """Train the IL model(s), score every pool point, write the IL store.

    ``irreducible.strategy=holdout`` (the paper's default) trains one IL model on the holdout split,
    or on a seeded ``irreducible.holdout_fraction`` of it. ``two_halves`` needs no holdout data (paper
    Sec. 5.3): it splits the pool into seeded halves, trains an IL model on each and scores every
    point with the model that did not see it.
    """
    check_config(cfg)
    strategy, fraction = (str(cfg.irreducible.strategy), float(cfg.irreducible.holdout_fraction))
    if strategy not in IL_STRATEGIES:
        raise ValueError(f"irreducible.strategy must be one of {IL_STRATEGIES}, got {strategy!r}.")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"irreducible.holdout_fraction must be in (0, 1], got {fraction}.")
    if strategy == "two_halves" and fraction != 1.0:
        raise ValueError(
            "irreducible.holdout_fraction applies to irreducible.strategy=holdout only; two_halves trains on "
            "the pool: remove irreducible.holdout_fraction."
        )
    if strategy == "holdout" and cfg.datamodule.get("pool_includes_holdout"):
        raise ValueError(
            "datamodule.pool_includes_holdout=true puts the holdout into the pool, so an IL model trained on the "
            "holdout would score points it has seen: use irreducible.strategy=two_halves (IL models trained on "
            "halves of the whole pool), or drop datamodule.pool_includes_holdout."
        )
    if strategy == "two_halves" and cfg.get("resume"):
        raise ValueError("resume= continues one IL model; irreducible.strategy=two_halves trains two: start it afresh.")
    task = task_of(cfg)
    output_dir = start_run(cfg)
    resumed_from = resume_checkpoint(cfg)
    started = time.perf_counter()
    if strategy == "holdout":
        datamodule = datamodule_of(cfg, train_split="holdout")
        task = task.fit_to(datamodule)
        positions = None if fraction == 1.0 else seeded_fraction(len(datamodule.split("holdout")), fraction, cfg.seed)
        models = [_fit_il_model(cfg, datamodule, task, output_dir / "checkpoints", positions, "holdout", resumed_from)]
        scorers: list[tuple[FittedILModel, Tensor | None]] = [(models[0], None)]
    else:
        datamodule = datamodule_of(cfg, train_split="pool")
        task = task.fit_to(datamodule)
        pool_size = len(datamodule.split("pool"))
        half_a, half_b = pool_halves(pool_size, cfg.seed)
        models = [
            _fit_il_model(cfg, datamodule, task, output_dir / "checkpoints" / "half_a", half_a, "half_a"),
            _fit_il_model(cfg, datamodule, task, output_dir / "checkpoints" / "half_b", half_b, "half_b"),
        ]
        scorers = [(models[1], half_a), (models[0], half_b)]  # each half scored by the other's model
    # The IL model's validation score in the task's metric (val_acc for classification), mean of both halves.
    val_key = f"val_{task.metric}"
    val_score = sum(m.val_score for m in models) / len(models)

    il_config = {
        "strategy": strategy,
        "holdout_fraction": fraction,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "scheduler": OmegaConf.to_container(cfg.scheduler, resolve=True),
        "batch_size": cfg.datamodule.batch_size,
        "max_steps": cfg.trainer.max_steps,
        "max_epochs": cfg.trainer.max_epochs,
        "seed": cfg.seed,
    }
    path = (
        Path(cfg.irreducible.path)
        if cfg.irreducible.path
        else store_path(Path(cfg.paths.cache_dir), datamodule.fingerprint, il_config, store_suffix(task))
    )
    metadata = {
        "il_config": il_config,
        "strategy": strategy,
        **task.describe(),
        val_key: val_score,
        "il_models": [m.summary() for m in models],
        "created": datetime.now(timezone.utc).isoformat(),
        "code_version": code_version(),
        "run_dir": str(output_dir),
    }
    trainer = models[0].trainer
    scoring = score_pool(
        [Scorer(model.module, model.trainer, model.best_checkpoint, positions) for model, positions in scorers],
        datamodule,
        path,
        metadata,
        token_store=task.token_level,
        shard_size=int(cfg.irreducible.shard_size),
    )
    wall_seconds = time.perf_counter() - started
    for model in models:
        close_loggers(model.trainer)
    results = {
        "stage": "irreducible",
        "strategy": strategy,
        "seed": cfg.seed,
        "il_store": str(path),
        **task.describe(),
        val_key: val_score,
        "val_curve": models[0].val_curve if len(models) == 1 else None,
        "best_checkpoint": models[0].best_checkpoint if len(models) == 1 else None,
        "il_models": metadata["il_models"],
        "steps": sum(m.trainer.global_step for m in models),
        "mean_irreducible_loss": scoring.mean_loss,
        "scored_by_rank": scoring.scored_by_rank,
        "resumed_points": scoring.resumed_points,
        "scoring_seconds": round(scoring.seconds, 3),
        "wall_seconds": round(wall_seconds, 3),
        "resumed_from": resumed_from,
        "dataset": datamodule.fingerprint,
        "code_version": metadata["code_version"],
    }
    write_results(results, output_dir, trainer)
    log.info("IL store written: %s", path)
    log.info(
        "IL model val %s (best checkpoint%s): %.4f", task.metric_label, "s, mean" if len(models) > 1 else "", val_score
    )
    return results


@dataclass
class FittedILModel:
    """One trained IL model: its best weights are in ``best_checkpoint`` (None: no validation ran,
    the final weights are in ``module``); ``val_score``: their value of the task's metric."""

    name: str
    module: SupervisedModule
    trainer: pl.Trainer
    best_checkpoint: str | None
    val_score: float
    val_curve: list[list[float]]
    trained_on: int

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trained_on": self.trained_on,
            f"val_{self.module.task.metric}": self.val_score,
            "steps": self.trainer.global_step,
            "best_checkpoint": self.best_checkpoint,
            "val_curve": self.val_curve,
        }


def _fit_il_model(
    cfg: DictConfig,
    datamodule: SplitDataModule,
    task: Task,
    checkpoint_dir: Path,
    positions: Tensor | None,
    name: str,
    resumed_from: str | None = None,
) -> FittedILModel:
    """Train an IL model on ``positions`` of the datamodule's training split (None: all of it),
    keeping the checkpoint with the best value of the task's val metric, and report that value."""
    datamodule.restrict_training(positions)
    module = SupervisedModule(
        model_for(cfg, datamodule, task), task, instantiate(cfg.optimizer), instantiate(cfg.scheduler)
    )
    # A resumed run keeps its best-model checkpoints where the run it continues kept them: Lightning
    # reloads the best score only for an unchanged folder.
    best_dir = Path(resumed_from).parent if resumed_from else checkpoint_dir
    checkpoint = ModelCheckpoint(dirpath=best_dir, monitor=task.val_metric, mode=task.mode, save_top_k=1)
    val_curve = ValCurve(task.val_metric, task.mode)
    part = None if name == "holdout" else name
    trainer = trainer_for(cfg, Path(cfg.paths.output_dir), [checkpoint, val_curve], part)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resumed_from)
    # Training's validations alone: validating the best checkpoint restores its curve and would append
    # one more point, its clock counting the restored seconds twice.
    curve = list(val_curve.points)
    best = checkpoint.best_model_path or None
    val_score = float(
        trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0][task.val_metric]
    )
    trained_on = len(datamodule.split(datamodule.train_split)) if positions is None else len(positions)
    log.info("IL model %s: trained on %d points, val %s %.4f", name, trained_on, task.metric_label, val_score)
    return FittedILModel(name, module, trainer, best, val_score, curve, trained_on)
