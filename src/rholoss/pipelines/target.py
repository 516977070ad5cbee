"""Stage two, what run.py runs: train the target model with online batch selection and write results.json."""

from __future__ import annotations

import logging
import time
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from rholoss.callbacks import StepTimer, ValCurve
from rholoss.methods import SelectionDiagnostics
from rholoss.modules import OnlineBatchSelection
from rholoss.pipelines.parts import (
    close_loggers,
    code_version,
    datamodule_of,
    model_for,
    resume_checkpoint,
    start_run,
    task_of,
    trainer_for,
    write_results,
)
from rholoss.pipelines.selection import method_of, run_for
from rholoss.selection import selection_size

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the target model with online batch selection and write ``results.json``."""
    method = method_of(cfg)
    task = task_of(cfg)
    method.check_task(task)  # before any data is loaded
    large_batch_size = int(cfg.datamodule.batch_size)
    output_dir = start_run(cfg)
    datamodule = datamodule_of(cfg, train_split="pool", batch_size=method.points_per_step(large_batch_size))
    task = task.fit_to(datamodule)
    run = run_for(cfg, datamodule, task)
    method.prepare(run)
    module = OnlineBatchSelection(
        model_for(cfg, datamodule, task),
        task,
        instantiate(cfg.optimizer),
        method,
        augment=datamodule.train_augmentation(),
        diagnostics=SelectionDiagnostics.for_pool(datamodule, task),
    )
    val_curve, step_timer = ValCurve(task.val_metric, task.mode), StepTimer()
    trainer = trainer_for(cfg, output_dir, [val_curve, step_timer])
    resumed_from = resume_checkpoint(cfg)

    world_size, batch_size = trainer.world_size, selection_size(large_batch_size, method.percent_train)
    log.info(
        "Each step: %d rank(s) each score %d points and train on %d: a global large batch of %d and a global "
        "batch of %d per optimizer step; %d steps.",
        world_size,
        large_batch_size,
        batch_size,
        world_size * large_batch_size,
        world_size * batch_size,
        cfg.trainer.max_steps,
    )

    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resumed_from)
    wall_seconds = time.perf_counter() - started
    module.diagnostics.sum_over_ranks(trainer.strategy, world_size)
    test_score = float(trainer.test(module, datamodule=datamodule, verbose=False)[0][task.test_metric])
    close_loggers(trainer)

    results = {
        "stage": "target",
        "selection": method.name,
        "seed": cfg.seed,
        "steps": trainer.global_step,
        "large_batch_size": large_batch_size,
        "batch_size": batch_size,
        "world_size": world_size,
        "global_large_batch_size": world_size * large_batch_size,
        "global_batch_size": world_size * batch_size,
        **method.results(),
        **task.describe(),
        "val_curve": val_curve.points,
        f"best_val_{task.metric}": val_curve.best,
        f"test_{task.metric}": test_score,
        **module.diagnostics.results(),
        "wall_seconds": round(wall_seconds, 3),
        # A step's cost without validation (median over the run's steps; the first step is not timed).
        "median_step_seconds": step_timer.median_seconds,
        "il_store": run.il_store,
        "resumed_from": resumed_from,
        "model": cfg.model._target_,
        "dataset": datamodule.fingerprint,
        "code_version": code_version(),
    }
    write_results(results, output_dir, trainer)
    log.info("Results written to %s", output_dir / "results.json")
    return results
