"""The two stages, as functions of a composed Hydra config: what run_irreducible.py and run.py call.

Every check that can fail on bad input (names, sizes, data, IL store) runs before training starts,
so a mistake costs seconds, not a run.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger

import rholoss
from rholoss.atomic import atomic_write_text
from rholoss.callbacks import ValCurve
from rholoss.data import PoolDataModule
from rholoss.irreducible import IrreducibleLossStore, StoreError, find_store, store_path
from rholoss.modules import ClassifierModule, EntropyProxy, OnlineBatchSelection, max_entropy_coreset
from rholoss.selection import get_selection, selection_size

log = logging.getLogger(__name__)

# Training is counted in steps, so Lightning's advice about epochs shorter than its logging interval
# does not apply; its pytree deprecation notice is internal to Lightning.
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")

# Keys of the selection config read by the module itself; the rest go to the selection function.
_SHARED_SELECTION_KEYS = {
    "name", "percent_train", "precision", "model_mode", "mc_samples", "draw_only_selected", "stale_every",
    "coreset_fraction", "proxy_steps",
}
# Overrides that change which pool a run sees, and so which IL store it needs.
_DATA_OVERRIDE_ROOTS = ("experiment", "datamodule", "paths")


def train_irreducible(cfg: DictConfig) -> dict[str, Any]:
    """Train the IL model on the holdout split, score every pool point, write the IL store."""
    output_dir = _start(cfg)
    datamodule = _datamodule(cfg, train_split="holdout")
    module = ClassifierModule(_model(cfg, datamodule), datamodule.num_classes, instantiate(cfg.optimizer))
    checkpoint = ModelCheckpoint(dirpath=output_dir / "checkpoints", monitor="val/acc", mode="max", save_top_k=1)
    val_curve = ValCurve()
    trainer = _trainer(cfg, output_dir, [checkpoint, val_curve])

    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    best = checkpoint.best_model_path or None  # None: no validation ran, keep the final weights
    val_acc = float(trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]["val/acc"])
    losses = _pool_losses(trainer, module, datamodule, best)
    wall_seconds = time.perf_counter() - started

    il_config = {
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
        "val_acc": val_acc,
        "best_checkpoint": best,
        "created": datetime.now(timezone.utc).isoformat(),
        "code_version": code_version(),
        "run_dir": str(output_dir),
    }
    IrreducibleLossStore(losses, datamodule.fingerprint, metadata).save(path)
    _close_loggers(trainer)
    results = {
        "stage": "irreducible",
        "seed": cfg.seed,
        "il_store": str(path),
        "val_acc": val_acc,
        "val_curve": val_curve.points,
        "steps": trainer.global_step,
        "mean_irreducible_loss": float(losses.mean()),
        "wall_seconds": round(wall_seconds, 3),
        "dataset": datamodule.fingerprint,
        "code_version": metadata["code_version"],
    }
    _write_results(results, output_dir)
    log.info("IL store written: %s", path)
    log.info("IL model val accuracy (best checkpoint): %.4f", val_acc)
    return results


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the target model with online batch selection and write ``results.json``."""
    method = get_selection(cfg.selection.name)
    large_batch_size = int(cfg.datamodule.batch_size)
    batch_size = selection_size(large_batch_size, cfg.selection.percent_train)
    draw_only_selected = bool(cfg.selection.get("draw_only_selected", False))
    if draw_only_selected and (method.needs_logits or method.needs_irreducible or method.needs_mc_samples):
        raise ValueError(
            f"selection.draw_only_selected applies only to methods that ignore the points' content "
            f"(uniform), not to {method.name!r}: remove it."
        )
    output_dir = _start(cfg)
    # A content-blind method may draw just the n_b points it trains on: the same distribution of
    # steps as drawing n_B and keeping n_b, without loading the 90% it would throw away.
    datamodule = _datamodule(cfg, train_split="pool", batch_size=batch_size if draw_only_selected else large_batch_size)
    store, store_file = _irreducible_store(cfg, datamodule) if method.needs_irreducible else (None, None)
    coreset = _svp_coreset(cfg, datamodule) if method.needs_coreset else None

    module = OnlineBatchSelection(
        _model(cfg, datamodule),
        datamodule.num_classes,
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
    val_curve = ValCurve()
    trainer = _trainer(cfg, output_dir, [val_curve])

    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    wall_seconds = time.perf_counter() - started
    test_acc = float(trainer.test(module, datamodule=datamodule, verbose=False)[0]["test/acc"])
    _close_loggers(trainer)

    results = {
        "stage": "target",
        "selection": method.name,
        "seed": cfg.seed,
        "steps": trainer.global_step,
        "large_batch_size": large_batch_size,
        "batch_size": batch_size,
        "percent_train": cfg.selection.percent_train,
        "draw_only_selected": draw_only_selected,
        "stale_every": module.stale_every,
        "coreset": coreset,
        "val_curve": val_curve.points,
        "best_val_acc": val_curve.best,
        "test_acc": test_acc,
        "noisy_selected_fraction": module.noisy_selected_fraction,
        "relevant_selected_fraction": module.relevant_selected_fraction,
        "selection_counts": module.selection_count_summary(),
        "wall_seconds": round(wall_seconds, 3),
        "il_store": str(store_file) if store_file else None,
        "model": cfg.model._target_,
        "dataset": datamodule.fingerprint,
        "code_version": code_version(),
    }
    _write_results(results, output_dir)
    log.info("Results written to %s", output_dir / "results.json")
    return results


def _svp_coreset(cfg: DictConfig, datamodule: PoolDataModule) -> dict[str, Any]:
    """Selection-via-Proxy's offline stage: train a proxy (the target's architecture) on the pool for
    ``selection.proxy_steps`` steps, keep the ``coreset_fraction`` of pool points with the highest
    predictive entropy, and restrict target training to them. Returns what the results record."""
    fraction, steps = float(cfg.selection.coreset_fraction), int(cfg.selection.proxy_steps)
    if steps < 1:
        raise ValueError(f"selection.proxy_steps must be positive, got {steps}.")
    started = time.perf_counter()
    proxy = EntropyProxy(_model(cfg, datamodule), datamodule.num_classes, instantiate(cfg.optimizer))
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator, devices=1, max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(proxy, datamodule=datamodule)
    entropies = torch.empty(len(datamodule.split("pool")))
    for index, values in trainer.predict(proxy, dataloaders=datamodule.pool_dataloader()):
        entropies[index.cpu()] = values.float().cpu()
    positions = max_entropy_coreset(entropies, fraction)
    datamodule.restrict_pool(positions)
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


def _start(cfg: DictConfig) -> Path:
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OmegaConf.to_yaml(cfg, resolve=True), output_dir / "config_resolved.yaml")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    return output_dir


def _datamodule(cfg: DictConfig, train_split: str, **overrides: Any) -> PoolDataModule:
    datamodule: PoolDataModule = instantiate(cfg.datamodule, train_split=train_split, **overrides)
    datamodule.prepare_data()
    datamodule.setup("fit")
    log.info("Data %s: %s", datamodule.name, datamodule.describe())
    return datamodule


def build_model(
    model_cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int, **data_kwargs: Any
) -> torch.nn.Module:
    """The model a ``model`` config describes; ``compile: true`` compiles it in place, so state-dict
    keys (checkpoints, stores) stay those of the plain model. ``data_kwargs``: the datamodule's
    :meth:`~rholoss.data.PoolDataModule.model_kwargs` (text: vocabulary size, padding id)."""
    settings = OmegaConf.to_container(model_cfg, resolve=True)
    compile_model = bool(settings.pop("compile", False))
    model = instantiate(settings, input_shape=input_shape, num_classes=num_classes, **data_kwargs)
    if compile_model:
        model.compile()
    return model


def _model(cfg: DictConfig, datamodule: PoolDataModule) -> torch.nn.Module:
    return build_model(cfg.model, datamodule.input_shape, datamodule.num_classes, **datamodule.model_kwargs())


def _trainer(cfg: DictConfig, output_dir: Path, callbacks: list[pl.Callback]) -> pl.Trainer:
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    extra = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    return instantiate(
        cfg.trainer, logger=loggers or False, callbacks=callbacks + extra, default_root_dir=str(output_dir)
    )


def _close_loggers(trainer: pl.Trainer) -> None:
    """End each logger's run, so that the next job of a multirun starts its own (wandb keeps one
    run per process until told otherwise)."""
    for logger in trainer.loggers:
        logger.finalize("success")
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()


def _irreducible_store(cfg: DictConfig, datamodule: PoolDataModule) -> tuple[IrreducibleLossStore, Path]:
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
    log.info("Using IL store %s (IL model val acc %s)", path, store.metadata.get("val_acc"))
    return store, path


def _pool_losses(
    trainer: pl.Trainer, module: ClassifierModule, datamodule: PoolDataModule, ckpt_path: str | None
) -> torch.Tensor:
    predictions = trainer.predict(module, dataloaders=datamodule.pool_dataloader(), ckpt_path=ckpt_path)
    losses = torch.full((len(datamodule.split("pool")),), float("nan"))
    for index, loss in predictions:
        losses[index] = loss.float().cpu()
    missing = int(torch.isnan(losses).sum())
    if missing:
        raise RuntimeError(f"{missing} pool points got no irreducible loss.")
    return losses


def _write_results(results: dict[str, Any], output_dir: Path) -> None:
    atomic_write_text(json.dumps(results, indent=2) + "\n", output_dir / "results.json")

