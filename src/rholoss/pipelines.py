"""The two stages, as functions of a composed Hydra config: what run_irreducible.py and run.py call.

Every check that can fail on bad input (names, sizes, data, IL store) runs before training starts,
so a mistake costs seconds, not a run.
"""

from __future__ import annotations

import inspect
import logging
import shlex
import subprocess
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.strategies import DDPStrategy
from torch import Tensor

import rholoss
from rholoss.atomic import atomic_write_json, atomic_write_text
from rholoss.callbacks import CheckpointError, StepCheckpoint, ValCurve, requeued_run, resolve_resume
from rholoss.config_check import check_config
from rholoss.data import PoolDataModule
from rholoss.data.splits import pool_halves, seeded_fraction
from rholoss.irreducible import IrreducibleLossStore, StoreError, find_store, store_path
from rholoss.modules import EntropyProxy, OnlineBatchSelection, SupervisedModule, max_entropy_coreset
from rholoss.selection import get_selection, selection_size
from rholoss.selection.registry import check_applies
from rholoss.tasks import Task

log = logging.getLogger(__name__)

# Training is counted in steps, so Lightning's advice about epochs shorter than its logging interval
# does not apply; its pytree deprecation notice is internal to Lightning.
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
# The loaders do resume mid-epoch, from the restored step (EpochPermutation.start_after).
warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")

# Keys of the selection config read by the module itself; the rest go to the selection function.
_SHARED_SELECTION_KEYS = {
    "name", "percent_train", "precision", "model_mode", "mc_samples", "draw_only_selected", "stale_every",
    "coreset_fraction", "proxy_steps",
}
# Overrides that change which pool a run sees, and so which IL store it needs.
_DATA_OVERRIDE_ROOTS = ("experiment", "task", "datamodule", "paths")
# How the IL model(s) are trained: on the holdout split, or on two halves of the pool (no holdout).
IL_STRATEGIES = ("holdout", "two_halves")
# Settings a resumed run must share with the run it continues (the step budget may change).
_RESUME_MUST_MATCH = ("seed", "task", "datamodule", "model", "selection", "optimizer", "irreducible")


def train_irreducible(cfg: DictConfig) -> dict[str, Any]:
    """Train the IL model(s), score every pool point, write the IL store.

    ``irreducible.strategy=holdout`` (the paper's default) trains one IL model on the holdout split,
    or on a seeded ``irreducible.holdout_fraction`` of it. ``two_halves`` needs no holdout data (paper
    Sec. 5.3): it splits the pool into seeded halves, trains an IL model on each and scores every
    point with the model that did not see it.
    """
    check_config(cfg)
    strategy, fraction = str(cfg.irreducible.strategy), float(cfg.irreducible.holdout_fraction)
    if strategy not in IL_STRATEGIES:
        raise ValueError(f"irreducible.strategy must be one of {IL_STRATEGIES}, got {strategy!r}.")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"irreducible.holdout_fraction must be in (0, 1], got {fraction}.")
    if strategy == "two_halves" and fraction != 1.0:
        raise ValueError(
            "irreducible.holdout_fraction applies to irreducible.strategy=holdout only; two_halves trains on "
            "the pool: remove irreducible.holdout_fraction."
        )
    if strategy == "two_halves" and cfg.get("resume"):
        raise ValueError(
            "resume= continues one IL model; irreducible.strategy=two_halves trains two: start it afresh."
        )
    task = _task(cfg)
    output_dir = _start(cfg)
    resumed_from = _resume_checkpoint(cfg)
    started = time.perf_counter()
    if strategy == "holdout":
        datamodule = _datamodule(cfg, train_split="holdout")
        task = task.fit_to(datamodule)
        positions = None if fraction == 1.0 else seeded_fraction(len(datamodule.split("holdout")), fraction, cfg.seed)
        models = [_fit_il_model(cfg, datamodule, task, output_dir / "checkpoints", positions, "holdout", resumed_from)]
        losses = _pool_losses(models[0], datamodule)
    else:
        datamodule = _datamodule(cfg, train_split="pool")
        task = task.fit_to(datamodule)
        pool_size = len(datamodule.split("pool"))
        half_a, half_b = pool_halves(pool_size, cfg.seed)
        models = [
            _fit_il_model(cfg, datamodule, task, output_dir / "checkpoints" / "half_a", half_a, "half_a"),
            _fit_il_model(cfg, datamodule, task, output_dir / "checkpoints" / "half_b", half_b, "half_b"),
        ]
        losses = torch.empty(pool_size)
        losses[half_a] = _pool_losses(models[1], datamodule, half_a)  # each half scored by the other's model
        losses[half_b] = _pool_losses(models[0], datamodule, half_b)
    wall_seconds = time.perf_counter() - started
    # The IL model's validation score in the task's metric (val_acc for classification), mean of both halves.
    val_key = f"val_{task.metric}"
    val_score = sum(m.val_score for m in models) / len(models)

    il_config = {
        "strategy": strategy,
        "holdout_fraction": fraction,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "batch_size": cfg.datamodule.batch_size,
        "max_steps": cfg.trainer.max_steps,
        "max_epochs": cfg.trainer.max_epochs,
        "seed": cfg.seed,
    }
    path = Path(cfg.irreducible.path) if cfg.irreducible.path else store_path(
        Path(cfg.paths.cache_dir), datamodule.fingerprint, il_config
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
    if trainer.is_global_zero:  # every rank scored the whole pool; one writes
        IrreducibleLossStore(losses, datamodule.fingerprint, metadata).save(path)
    for model in models:
        _close_loggers(model.trainer)
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
        "mean_irreducible_loss": float(losses.mean()),
        "wall_seconds": round(wall_seconds, 3),
        "resumed_from": resumed_from,
        "dataset": datamodule.fingerprint,
        "code_version": metadata["code_version"],
    }
    _write_results(results, output_dir, trainer)
    log.info("IL store written: %s", path)
    log.info("IL model val %s (best checkpoint%s): %.4f", task.metric_label, "s, mean" if len(models) > 1 else "", val_score)
    return results


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the target model with online batch selection and write ``results.json``."""
    check_config(cfg, selection_keys=_SHARED_SELECTION_KEYS)
    method = get_selection(cfg.selection.name)
    task = _task(cfg)
    check_applies(method, task)  # before any data is loaded
    large_batch_size = int(cfg.datamodule.batch_size)
    batch_size = selection_size(large_batch_size, cfg.selection.percent_train)
    draw_only_selected = bool(cfg.selection.get("draw_only_selected", False))
    if draw_only_selected and (method.needs_forward or method.needs_irreducible or method.needs_mc_samples):
        raise ValueError(
            f"selection.draw_only_selected applies only to methods that ignore the points' content "
            f"(uniform), not to {method.name!r}: remove it."
        )
    output_dir = _start(cfg)
    # A content-blind method may draw just the n_b points it trains on: the same distribution of
    # steps as drawing n_B and keeping n_b, without loading the 90% it would throw away.
    datamodule = _datamodule(cfg, train_split="pool", batch_size=batch_size if draw_only_selected else large_batch_size)
    task = task.fit_to(datamodule)
    store, store_file = _irreducible_store(cfg, datamodule, task) if method.needs_irreducible else (None, None)
    coreset = _svp_coreset(cfg, datamodule, task) if method.needs_coreset else None

    module = OnlineBatchSelection(
        _model(cfg, datamodule, task),
        task,
        instantiate(cfg.optimizer),
        selection=method.name,
        percent_train=1.0 if draw_only_selected else cfg.selection.percent_train,
        precision=str(cfg.selection.precision),
        model_mode=cfg.selection.model_mode,
        mc_samples=cfg.selection.get("mc_samples", 10),
        stale_every=cfg.selection.get("stale_every"),
        augment=datamodule.train_augmentation(),
        options={k: v for k, v in cfg.selection.items() if k not in _SHARED_SELECTION_KEYS},
    )
    if store is not None:
        module.set_irreducible_losses(store.losses)
    module.prepare_pool(
        len(datamodule.split("pool")),
        corrupted=datamodule.corrupted if datamodule.has_label_noise else None,
        relevant=datamodule.relevant,
    )
    val_curve = ValCurve(task.val_metric, task.mode)
    trainer = _trainer(cfg, output_dir, [val_curve])
    resumed_from = _resume_checkpoint(cfg)

    world_size = trainer.world_size
    log.info(
        "Each step: %d rank(s) each score %d points and train on %d: a global large batch of %d and a global "
        "batch of %d per optimizer step; %d steps.",
        world_size, large_batch_size, batch_size, world_size * large_batch_size, world_size * batch_size,
        cfg.trainer.max_steps,
    )

    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resumed_from)
    wall_seconds = time.perf_counter() - started
    _sum_over_ranks(trainer, module)
    test_score = float(trainer.test(module, datamodule=datamodule, verbose=False)[0][task.test_metric])
    _close_loggers(trainer)

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
        "relevant_selected_fraction": module.relevant_selected_fraction,
        "selection_counts": module.selection_count_summary(),
        "wall_seconds": round(wall_seconds, 3),
        "il_store": str(store_file) if store_file else None,
        "resumed_from": resumed_from,
        "model": cfg.model._target_,
        "dataset": datamodule.fingerprint,
        "code_version": code_version(),
    }
    _write_results(results, output_dir, trainer)
    log.info("Results written to %s", output_dir / "results.json")
    return results


def _svp_coreset(cfg: DictConfig, datamodule: PoolDataModule, task: Task) -> dict[str, Any]:
    """Selection-via-Proxy's offline stage: train a proxy (the target's architecture) on the pool for
    ``selection.proxy_steps`` steps, keep the ``coreset_fraction`` of pool points with the highest
    predictive entropy, and restrict target training to them. Returns what the results record."""
    fraction, steps = float(cfg.selection.coreset_fraction), int(cfg.selection.proxy_steps)
    if steps < 1:
        raise ValueError(f"selection.proxy_steps must be positive, got {steps}.")
    started = time.perf_counter()
    proxy = EntropyProxy(_model(cfg, datamodule, task), task, instantiate(cfg.optimizer))
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator, devices=1, max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(proxy, datamodule=datamodule)
    entropies = torch.empty(len(datamodule.split("pool")))
    for index, values in trainer.predict(proxy, dataloaders=datamodule.pool_dataloader()):
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


def irreducible_command() -> str:
    """The run_irreducible.py command that makes the IL store this run's data needs."""
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # composed without @hydra.main (tests, notebooks)
        overrides = []
    return " ".join(["python run_irreducible.py", *map(shlex.quote, irreducible_overrides(overrides))])


def irreducible_overrides(overrides: list[str]) -> list[str]:
    """The overrides of a target run that decide its pool, as run_irreducible.py takes them. A paper
    experiment split into ``<name>_main`` (target) and ``<name>_irred`` (IL model, its own settings)
    maps to the ``_irred`` one: both describe the same pool."""
    kept = [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] in _DATA_OVERRIDE_ROOTS]
    return [
        o.removesuffix("_main") + "_irred" if o.lstrip("+").startswith("experiment=") and o.endswith("_main") else o
        for o in kept
    ]


def code_version() -> dict[str, str | None]:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        sha = done.stdout.strip() if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {"rholoss": rholoss.__version__, "git": sha}


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
    datamodule: PoolDataModule,
    task: Task,
    checkpoint_dir: Path,
    positions: Tensor | None,
    name: str,
    resumed_from: str | None = None,
) -> FittedILModel:
    """Train an IL model on ``positions`` of the datamodule's training split (None: all of it),
    keeping the checkpoint with the best value of the task's val metric, and report that value."""
    datamodule.restrict_training(positions)
    module = SupervisedModule(_model(cfg, datamodule, task), task, instantiate(cfg.optimizer))
    # A resumed run keeps its best-model checkpoints where the run it continues kept them: Lightning
    # reloads the best score only for an unchanged folder.
    best_dir = Path(resumed_from).parent if resumed_from else checkpoint_dir
    checkpoint = ModelCheckpoint(dirpath=best_dir, monitor=task.val_metric, mode=task.mode, save_top_k=1)
    val_curve = ValCurve(task.val_metric, task.mode)
    part = None if name == "holdout" else name
    trainer = _trainer(cfg, Path(cfg.paths.output_dir), [checkpoint, val_curve], part)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resumed_from)
    best = checkpoint.best_model_path or None
    val_score = float(trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0][task.val_metric])
    trained_on = len(datamodule.split(datamodule.train_split)) if positions is None else len(positions)
    log.info("IL model %s: trained on %d points, val %s %.4f", name, trained_on, task.metric_label, val_score)
    return FittedILModel(name, module, trainer, best, val_score, val_curve.points, trained_on)


def _start(cfg: DictConfig) -> Path:
    _check_accelerator(str(cfg.trainer.get("accelerator", "auto")))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OmegaConf.to_yaml(cfg, resolve=True), output_dir / "config_resolved.yaml")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    return output_dir


def _check_accelerator(accelerator: str) -> None:
    """Refuse a GPU run on a machine without one before loading any data (Lightning would say so
    only when the trainer is built, wrapped in Hydra's instantiation error)."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"trainer.accelerator={accelerator} asks for a CUDA GPU, but PyTorch sees none (torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda}). Use trainer=cpu or "
            "trainer.accelerator=auto here, or run on a machine with a GPU and a CUDA build of PyTorch."
        )


def _task(cfg: DictConfig) -> Task:
    """The task the config names (``task=``), not yet sized for the data: what it is and what it
    offers selection functions is known before any data is loaded."""
    task = instantiate(cfg.task)
    if not isinstance(task, Task):
        raise TypeError(f"task._target_={cfg.task._target_} made a {type(task).__name__}, not a rholoss.tasks.Task.")
    return task


def _datamodule(cfg: DictConfig, train_split: str, **overrides: Any) -> PoolDataModule:
    datamodule: PoolDataModule = instantiate(cfg.datamodule, train_split=train_split, **overrides)
    datamodule.prepare_data()
    datamodule.setup("fit")
    log.info("Data %s: %s", datamodule.name, datamodule.describe())
    return datamodule


def build_model(
    model_cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int | None = None, **data_kwargs: Any
) -> torch.nn.Module:
    """The model a ``model`` config describes; ``compile: true`` compiles it in place, so state-dict
    keys (checkpoints, stores) stay those of the plain model. ``data_kwargs``: the task's
    :meth:`~rholoss.tasks.Task.model_arguments` (class count or output width) and the datamodule's
    :meth:`~rholoss.data.PoolDataModule.model_kwargs` (text: vocabulary size, padding id), each
    passed only where the model's signature takes it."""
    settings = OmegaConf.to_container(model_cfg, resolve=True)
    compile_model = bool(settings.pop("compile", False))
    _check_model_settings(settings)
    if num_classes is not None:  # classification: the class count is the output width
        data_kwargs = {"num_classes": num_classes, "num_outputs": num_classes, **data_kwargs}
    taken = inspect.signature(get_object(settings["_target_"])).parameters
    data_kwargs = {key: value for key, value in data_kwargs.items() if key in taken}
    model = instantiate(settings, input_shape=input_shape, **data_kwargs)
    if compile_model:
        model.compile()
    return model


def _check_model_settings(settings: dict[str, Any]) -> None:
    """Refuse settings the model class does not take, naming them and the fix, instead of a bare
    TypeError: picking another ``model=`` on the command line keeps the experiment's model settings
    (e.g. the MLP's ``hidden_sizes``), which the other model does not know."""
    target = get_object(settings["_target_"])
    parameters = inspect.signature(target).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    unknown = sorted(set(settings) - {p.name for p in parameters} - {"_target_", "_partial_", "_convert_"})
    if unknown:
        removals = " ".join(f"~model.{key}" for key in unknown)
        raise ValueError(
            f"The model {settings['_target_']} does not take {', '.join(unknown)}. Settings of another model "
            f"(an experiment's) carry over when you choose model= on the command line: remove them with "
            f"{removals}, or use an experiment made for this model."
        )


def _model(cfg: DictConfig, datamodule: PoolDataModule, task: Task) -> torch.nn.Module:
    return build_model(cfg.model, datamodule.input_shape, **task.model_arguments(), **datamodule.model_kwargs())


def _trainer(
    cfg: DictConfig, output_dir: Path, callbacks: list[pl.Callback], part: str | None = None
) -> pl.Trainer:
    """``part`` names one of several models trained in one run (the two IL models of ``two_halves``):
    its CSV log and step checkpoints get their own subfolder instead of overwriting the other's."""
    loggers = [
        instantiate(c, **({"version": part} if part and c.get("_target_", "").endswith("CSVLogger") else {}))
        for c in (cfg.get("logger") or {}).values()
    ]
    extra = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning would refuse the bar's callback
        extra = [callback for callback in extra if not isinstance(callback, ProgressBar)]
    # Always there: without periodic checkpoints it still stops the run on a NaN or infinite loss.
    every_n_steps = cfg.get("checkpoint", {}).get("every_n_steps")
    extra.append(StepCheckpoint(output_dir / "checkpoints" / (part or ""), every_n_steps))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=callbacks + extra, default_root_dir=str(output_dir)
    )
    strategy = trainer.strategy
    if isinstance(strategy, DDPStrategy) and strategy._ddp_kwargs.get("broadcast_buffers", True):
        raise ValueError(
            f"trainer.strategy={cfg.trainer.strategy} broadcasts rank 0's module buffers at every step, which "
            "would overwrite each rank's selection statistics: use trainer=ddp (DDP with broadcast_buffers=false), "
            "e.g. python run.py trainer=ddp trainer.devices=2."
        )
    return trainer


def _resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint ``resume=`` names (or a requeued SLURM job's own), checked readable and made
    with this run's settings."""
    resume = cfg.get("resume") or requeued_run(Path(cfg.paths.output_dir))
    if not resume:
        return None
    path = resolve_resume(resume)
    earlier = path.parent.parent / "config_resolved.yaml"
    if earlier.is_file():
        before = OmegaConf.load(earlier)
        now = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        differences = [
            f"{key}: {OmegaConf.select(before, key)} -> {OmegaConf.select(now, key)}"
            for root in _RESUME_MUST_MATCH
            for key in _leaf_keys(before, now, root)
            if OmegaConf.select(before, key) != OmegaConf.select(now, key)
        ]
        if differences:
            raise CheckpointError(
                f"resume={resume}: the run was made with other settings:\n  " + "\n  ".join(differences)
                + "\nResume with the run's own overrides (see its config_resolved.yaml), or start afresh."
            )
    log.info("Resuming from %s", path)
    return str(path)


def _leaf_keys(before: DictConfig, now: DictConfig, root: str) -> list[str]:
    """Every leaf key under ``root`` in either config, as dotted paths."""
    keys: set[str] = set()
    for config in (before, now):
        node = OmegaConf.select(config, root)
        if isinstance(node, DictConfig):
            keys |= {f"{root}.{key}" for key in _flatten(OmegaConf.to_container(node))}
        else:
            keys.add(root)
    return sorted(keys)


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[str]:
    return [
        leaf
        for key, value in tree.items()
        for leaf in (_flatten(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"])
    ]


def _close_loggers(trainer: pl.Trainer) -> None:
    """End each logger's run, so that the next job of a multirun starts its own (wandb keeps one
    run per process until told otherwise)."""
    for logger in trainer.loggers:
        logger.finalize("success")
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()


def _irreducible_store(cfg: DictConfig, datamodule: PoolDataModule, task: Task) -> tuple[IrreducibleLossStore, Path]:
    if cfg.irreducible.path:
        path = Path(cfg.irreducible.path)
        if not path.is_file():
            raise StoreError(
                f"irreducible.path={path} does not exist. Make it with:\n  {irreducible_command()} "
                f"irreducible.path={shlex.quote(str(path))}"
            )
    else:
        path = find_store(Path(cfg.paths.cache_dir), datamodule.fingerprint)
        if path is None:
            raise StoreError(
                f"Selection {cfg.selection.name!r} needs irreducible losses, and the cache "
                f"{cfg.paths.cache_dir} has no IL store for this data ({datamodule.name}, pool of "
                f"{datamodule.fingerprint['pool_size']}, label_noise={datamodule.label_noise}). Make one with:\n"
                f"  {irreducible_command()}\nor point to one with irreducible.path=..."
            )
    store = IrreducibleLossStore.load(path)
    store.check_matches(datamodule.fingerprint, path)
    made_for = store.metadata.get("task", "classification")  # stores made before tasks existed
    if made_for != task.name:
        raise StoreError(
            f"The IL store {path} holds {made_for} losses, but this run's task is {task.name}: make a store with "
            f"task={task.name}:\n  {irreducible_command()}"
        )
    log.info("Using IL store %s (IL model %s %s)", path, task.val_metric, store.metadata.get(f"val_{task.metric}"))
    return store, path


def _pool_losses(model: FittedILModel, datamodule: PoolDataModule, positions: Tensor | None = None) -> Tensor:
    """The IL model's loss on every pool point (or on the points at ``positions``, in that order),
    with its best weights."""
    loader = datamodule.pool_dataloader(positions)
    predictions = model.trainer.predict(model.module, dataloaders=loader, ckpt_path=model.best_checkpoint)
    losses = torch.full((len(datamodule.split("pool")),), float("nan"))
    for index, loss in predictions:
        losses[index.cpu()] = loss.float().cpu()
    if positions is not None:
        losses = losses[positions]
    missing = int(torch.isnan(losses).sum())
    if missing:
        raise RuntimeError(f"{missing} pool points got no irreducible loss.")
    return losses


def _sum_over_ranks(trainer: pl.Trainer, module: OnlineBatchSelection) -> None:
    """Under DDP each rank counted only the points it selected: make the counts global on every rank."""
    if trainer.world_size == 1:
        return
    for name in ("selection_counts", "num_selected_corrupted", "num_selected_relevant"):
        counts = getattr(module, name)
        counts.copy_(trainer.strategy.reduce(counts.clone(), reduce_op="sum"))


def _write_results(results: dict[str, Any], output_dir: Path, trainer: pl.Trainer) -> None:
    if trainer.is_global_zero:
        atomic_write_json(results, output_dir / "results.json")

