"""Stage two, what run.py runs: train the target model with online batch selection and write results.json."""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from rholoss.callbacks import StepTimer, ValCurve
from rholoss.config_check import check_config
from rholoss.data import SplitDataModule, TokenCorpusDataModule
from rholoss.irreducible import IrreducibleLossStore, StoreError, TokenLossStore, find_store
from rholoss.modules import EntropyProxy, OnlineBatchSelection, max_entropy_coreset
from rholoss.pipelines.parts import (
    close_loggers,
    code_version,
    datamodule_of,
    irreducible_command,
    model_for,
    resume_checkpoint,
    start_run,
    store_suffix,
    task_of,
    trainer_for,
    write_results,
)
from rholoss.selection import SelectionMethod, check_applies, get_selection, selection_size
from rholoss.tasks import Task

# Keys of the selection config read by the module itself; the rest go to the selection function.
_SHARED_SELECTION_KEYS = {
    "name",
    "percent_train",
    "precision",
    "model_mode",
    "mc_samples",
    "draw_only_selected",
    "stale_every",
    "coreset_fraction",
    "proxy_steps",
}

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the target model with online batch selection and write ``results.json``."""
    check_config(cfg, selection_keys=_SHARED_SELECTION_KEYS)
    method = get_selection(cfg.selection.name)
    task = task_of(cfg)
    check_applies(method, task)  # before any data is loaded
    large_batch_size = int(cfg.datamodule.batch_size)
    batch_size = selection_size(large_batch_size, cfg.selection.percent_train)
    draw_only_selected = bool(cfg.selection.get("draw_only_selected", False))
    if draw_only_selected and (method.needs_forward or method.needs_irreducible or method.needs_mc_samples):
        raise ValueError(
            f"selection.draw_only_selected applies only to methods that ignore the points' content "
            f"(uniform), not to {method.name!r}: remove it."
        )
    output_dir = start_run(cfg)
    # A content-blind method may draw just the n_b points it trains on: the same distribution of
    # steps as drawing n_B and keeping n_b, without loading the 90% it would throw away. A token-level
    # method trains on (a share of the tokens of) every sequence it draws, so it draws n_b too.
    draws_n_b = draw_only_selected or method.token_level
    datamodule = datamodule_of(cfg, train_split="pool", batch_size=batch_size if draws_n_b else large_batch_size)
    task = task.fit_to(datamodule)
    losses, token_source, store_file = (
        _irreducible_losses(cfg, datamodule, task, method) if method.needs_irreducible else (None, None, None)
    )
    coreset = _svp_coreset(cfg, datamodule, task) if method.needs_coreset else None

    module = OnlineBatchSelection(
        model_for(cfg, datamodule, task),
        task,
        instantiate(cfg.optimizer),
        selection=method.name,
        percent_train=1.0 if draws_n_b else cfg.selection.percent_train,
        precision=str(cfg.selection.precision),
        model_mode=cfg.selection.model_mode,
        mc_samples=cfg.selection.get("mc_samples", 10),
        stale_every=cfg.selection.get("stale_every"),
        augment=datamodule.train_augmentation(),
        options={k: v for k, v in cfg.selection.items() if k not in _SHARED_SELECTION_KEYS},
        scheduler=instantiate(cfg.scheduler),
    )
    if losses is not None:
        module.set_irreducible_losses(losses, token_source)
    pool_size = len(datamodule.split("pool"))
    token_noise = None
    if isinstance(datamodule, TokenCorpusDataModule) and datamodule.has_label_noise:
        token_noise = datamodule.target_noise(torch.arange(pool_size))
    module.prepare_pool(
        pool_size,
        corrupted=datamodule.corrupted if datamodule.has_label_noise else None,
        relevant=datamodule.relevant,
        token_noise=token_noise,
    )
    val_curve, step_timer = ValCurve(task.val_metric, task.mode), StepTimer()
    trainer = trainer_for(cfg, output_dir, [val_curve, step_timer])
    resumed_from = resume_checkpoint(cfg)

    world_size = trainer.world_size
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
    _sum_over_ranks(trainer, module)
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
        "percent_train": cfg.selection.percent_train,
        "draw_only_selected": draw_only_selected,
        "stale_every": module.stale_every,
        "coreset": coreset,
        **task.describe(),
        "val_curve": val_curve.points,
        f"best_val_{task.metric}": val_curve.best,
        f"test_{task.metric}": test_score,
        "noisy_selected_fraction": module.noisy_selected_fraction,
        "tokens_trained": module.tokens_trained,
        "token_fraction": cfg.selection.get("token_fraction") if method.token_level else None,
        "relevant_selected_fraction": module.relevant_selected_fraction,
        "selection_counts": module.selection_count_summary(),
        "wall_seconds": round(wall_seconds, 3),
        # A step's cost without validation (median over the run's steps; the first step is not timed).
        "median_step_seconds": step_timer.median_seconds,
        "il_store": str(store_file) if store_file else None,
        "resumed_from": resumed_from,
        "model": cfg.model._target_,
        "dataset": datamodule.fingerprint,
        "code_version": code_version(),
    }
    write_results(results, output_dir, trainer)
    log.info("Results written to %s", output_dir / "results.json")
    return results


def _svp_coreset(cfg: DictConfig, datamodule: SplitDataModule, task: Task) -> dict[str, Any]:
    """Selection-via-Proxy's offline stage: train a proxy (the target's architecture) on the pool for
    ``selection.proxy_steps`` steps, keep the ``coreset_fraction`` of pool points with the highest
    predictive entropy, and restrict target training to them. Returns what the results record."""
    fraction, steps = (float(cfg.selection.coreset_fraction), int(cfg.selection.proxy_steps))
    if steps < 1:
        raise ValueError(f"selection.proxy_steps must be positive, got {steps}.")
    started = time.perf_counter()
    proxy = EntropyProxy(model_for(cfg, datamodule, task), task, instantiate(cfg.optimizer))
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(proxy, datamodule=datamodule)
    entropies = torch.empty(len(datamodule.split("pool")))
    for index, values in trainer.predict(proxy, dataloaders=datamodule.pool_dataloader()) or []:
        entropies[index.cpu()] = values.float().cpu()
    positions = max_entropy_coreset(entropies, fraction)
    datamodule.restrict_training(positions)
    log.info("SVP core-set: %d of %d pool points (proxy trained %d steps)", len(positions), len(entropies), steps)
    return {
        "size": len(positions),
        "fraction": fraction,
        "proxy_steps": steps,
        "proxy_seconds": round(time.perf_counter() - started, 3),
    }


def _irreducible_losses(
    cfg: DictConfig, datamodule: SplitDataModule, task: Task, method: SelectionMethod
) -> tuple[Tensor, Callable[[Tensor], Tensor] | None, Path]:
    """The IL of every pool point from its store (found in the cache or named), checked against the
    data and the task: ``[N]``, or ``[N, T]`` per token for token-level methods on data held in memory;
    for those on memory-mapped data, the per-window means and a per-step gather from the store."""
    path: Path | None
    if cfg.irreducible.path:
        path = Path(cfg.irreducible.path)
        if not path.is_file():
            raise StoreError(
                f"irreducible.path={path} does not exist. Make it with:\n  {irreducible_command()} "
                f"irreducible.path={shlex.quote(str(path))}"
            )
    else:
        path = find_store(Path(cfg.paths.cache_dir), datamodule.fingerprint, store_suffix(task))
        if path is None:
            raise StoreError(
                f"Selection {cfg.selection.name!r} needs irreducible losses, and the cache "
                f"{cfg.paths.cache_dir} has no IL store for this data ({datamodule.name}, pool of "
                f"{datamodule.fingerprint['pool_size']}, {_noise_description(datamodule)}). Make one with:\n"
                f"  {irreducible_command()}\nor point to one with irreducible.path=..."
            )
    token_source: Callable[[Tensor], Tensor] | None = None
    if task.token_level:
        token_store = TokenLossStore.open(path)
        token_store.check_matches(datamodule.fingerprint, path)
        metadata = token_store.metadata
        if method.token_level and datamodule.on_device:  # the per-token table, held beside the data
            losses = token_store.to_tensor()
        else:  # per-window means; token-level methods read their windows from the mapped store each step
            losses = token_store.sequence_losses()
            if method.token_level:
                token_source = token_store.gather
    else:
        store = IrreducibleLossStore.load(path)
        store.check_matches(datamodule.fingerprint, path)
        metadata, losses = store.metadata, store.losses
    made_for = metadata.get("task", "classification")  # stores made before tasks existed
    if made_for != task.name:
        raise StoreError(
            f"The IL store {path} holds {made_for} losses, but this run's task is {task.name}: make a store with "
            f"task={task.name}:\n  {irreducible_command()}"
        )
    log.info("Using IL store %s (IL model %s %s)", path, task.val_metric, metadata.get(f"val_{task.metric}"))
    return losses, token_source, path


def _noise_description(datamodule: SplitDataModule) -> str:
    if isinstance(datamodule, TokenCorpusDataModule):
        return f"token_noise={datamodule.token_noise}, sequence_noise={datamodule.sequence_noise}"
    return f"label_noise={getattr(datamodule, 'label_noise', None)}"


def _sum_over_ranks(trainer: pl.Trainer, module: OnlineBatchSelection) -> None:
    """Under DDP each rank counted only the points it selected: make the counts global on every rank."""
    if trainer.world_size == 1:
        return
    for name in (
        "selection_counts",
        "num_selected_corrupted",
        "num_selected_relevant",
        "num_tokens_trained",
        "num_noise_tokens_trained",
    ):
        counts = getattr(module, name)
        counts.copy_(trainer.strategy.reduce(counts.clone(), reduce_op="sum"))
