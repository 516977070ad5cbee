"""What both stages are built from: the run folder, the task, data, model and trainer a config names,
resuming, the results file, and the stage-one command a target run's data needs."""

from __future__ import annotations

import logging
import shlex
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import Container, DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.strategies import DDPStrategy

import rholoss
from rholoss.atomic import atomic_write_json, atomic_write_text
from rholoss.callbacks import CheckpointError, StepCheckpoint, requeued_run, resolve_resume
from rholoss.cli import stage_command
from rholoss.config_dict import config_dict
from rholoss.data import SplitDataModule
from rholoss.loggers import prepare_loggers
from rholoss.models.factory import build_model_for
from rholoss.schedules import describe_schedule
from rholoss.tasks import Task

log = logging.getLogger(__name__)


# Training is counted in steps, so Lightning's advice about epochs shorter than its logging interval
# does not apply; its pytree deprecation notice is internal to Lightning.
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
# The loaders do resume mid-epoch, from the restored step (EpochPermutation.start_after).
warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
# The IL stage's pool scores carry their own indices; Lightning's writer callback needs none.
warnings.filterwarnings("ignore", message=".*Couldn't infer the batch indices.*")


# The package's experiment configs.
_EXPERIMENTS = Path(rholoss.__file__).parent / "configs" / "experiment"

# Overrides that change which pool a run sees, and so which IL store it needs.
_DATA_OVERRIDE_ROOTS = ("experiment", "task", "datamodule", "paths")


# Loggers writing into <run folder>/<name>/<version>: one version per model of a run.
_FOLDER_LOGGERS = ("CSVLogger", "TensorBoardLogger")


# Settings a resumed run must share with the run it continues (the step budget may change).
_RESUME_MUST_MATCH = ("seed", "task", "datamodule", "model", "selection", "optimizer", "scheduler", "irreducible")


def irreducible_command() -> str:
    """The stage-one command (``rholoss-irreducible`` or ``python run_irreducible.py``, as this run
    was started) that makes the IL store this run's data needs."""
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # composed without @hydra.main (tests, notebooks)
        overrides = []
    return " ".join([stage_command("irreducible"), *map(shlex.quote, irreducible_overrides(overrides))])


def irreducible_experiment(experiment: str) -> str:
    """The IL stage's experiment for a target experiment: ``<name>_main`` (a paper experiment) maps
    to ``<name>_irred``, and ``<name>`` to ``<name>_irred`` where the package has one (the IL model's
    own recipe on the same pool, as fmnist_noisy_mlp_irred); else the experiment itself."""
    if experiment.endswith("_main"):
        return experiment.removesuffix("_main") + "_irred"
    if (_EXPERIMENTS / f"{experiment}_irred.yaml").is_file():
        return f"{experiment}_irred"
    return experiment


def irreducible_overrides(overrides: list[str]) -> list[str]:
    """The overrides of a target run that decide its pool, as stage one takes them, its experiment
    the IL stage's (:func:`irreducible_experiment`): both describe the same pool."""
    kept = [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] in _DATA_OVERRIDE_ROOTS]
    return [_irreducible_override(o) for o in kept]


def _irreducible_override(override: str) -> str:
    key, _, value = override.partition("=")
    return f"{key}={irreducible_experiment(value)}" if key.lstrip("+") == "experiment" and value else override


def code_version() -> dict[str, str | None]:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        sha = done.stdout.strip() if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {"rholoss": rholoss.__version__, "git": sha}


def start_run(cfg: DictConfig) -> Path:
    _check_accelerator(str(cfg.trainer.get("accelerator", "auto")))
    prepare_loggers(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OmegaConf.to_yaml(cfg, resolve=True), output_dir / "config_resolved.yaml")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    set_flush_denormal(bool(cfg.get("flush_denormal", True)))
    return output_dir


def set_flush_denormal(flush: bool) -> None:
    """Flush subnormal floats to zero on the CPU (or stop), for the whole process: the run's setting.

    Subnormals (nonzero, below 1.2e-38 in float32) make every operation that meets them many times
    slower on x86 CPUs. AdamW's first moment of a weight whose gradient stops (the weights into a
    ReLU unit that has died, from a pixel that is always blank) decays by beta1 each step and is
    subnormal within ~800 steps: after 3,000 steps of the Fashion-MNIST MLP, a third to a half of the
    hidden layers' moments were, and a uniform step took 6.0 ms where it takes 3.7 ms flushed. Flushing
    changes only values below float32's normal range (no accuracy measured moved), and on CPUs without
    the control (torch reports it) it does nothing."""
    if not torch.set_flush_denormal(flush) and flush:
        log.info("This CPU cannot flush subnormal floats to zero; flush_denormal does nothing here.")


def _check_accelerator(accelerator: str) -> None:
    """Refuse a GPU run on a machine without one before loading any data (Lightning would say so
    only when the trainer is built, wrapped in Hydra's instantiation error)."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"trainer.accelerator={accelerator} asks for a CUDA GPU, but PyTorch sees none (torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda}). Use trainer=cpu or "
            "trainer.accelerator=auto here, or run on a machine with a GPU and a CUDA build of PyTorch."
        )


def task_of(cfg: DictConfig) -> Task:
    """The task the config names (``task=``), not yet sized for the data: what it is and what it
    offers selection functions is known before any data is loaded."""
    task = instantiate(cfg.task)
    if not isinstance(task, Task):
        raise TypeError(f"task._target_={cfg.task._target_} made a {type(task).__name__}, not a rholoss.tasks.Task.")
    return task


def datamodule_of(cfg: DictConfig, train_split: str, **overrides: Any) -> SplitDataModule:
    datamodule: SplitDataModule = instantiate(cfg.datamodule, train_split=train_split, **overrides)
    datamodule.prepare_data()
    datamodule.setup("fit")
    log.info("Data %s: %s", datamodule.name, datamodule.describe())
    return datamodule


def model_for(cfg: DictConfig, datamodule: SplitDataModule, task: Task) -> torch.nn.Module:
    return build_model_for(cfg.model, datamodule, task)


def trainer_for(cfg: DictConfig, output_dir: Path, callbacks: list[pl.Callback], part: str | None = None) -> pl.Trainer:
    """``part`` names one of several models trained in one run (the two IL models of ``two_halves``):
    its CSV or TensorBoard log and step checkpoints get their own subfolder instead of overwriting the other's."""
    loggers = [
        instantiate(c, **({"version": part} if part and c.get("_target_", "").endswith(_FOLDER_LOGGERS) else {}))
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
            f"e.g. {stage_command('train')} trainer=ddp trainer.devices=2."
        )
    return trainer


def resume_checkpoint(cfg: DictConfig) -> str | None:
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
                f"resume={resume}: the run was made with other settings:\n  "
                + "\n  ".join(differences)
                + "\nResume with the run's own overrides (see its config_resolved.yaml), or start afresh."
            )
    log.info("Resuming from %s", path)
    return str(path)


def _leaf_keys(before: Container, now: Container, root: str) -> list[str]:
    """Every leaf key under ``root`` in either config, as dotted paths."""
    keys: set[str] = set()
    for config in (before, now):
        node = OmegaConf.select(config, root)
        if isinstance(node, DictConfig):
            keys |= {f"{root}.{key}" for key in _flatten(config_dict(node, resolve=False))}
        else:
            keys.add(root)
    return sorted(keys)


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[str]:
    return [
        leaf
        for key, value in tree.items()
        for leaf in (_flatten(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"])
    ]


def close_loggers(trainer: pl.Trainer) -> None:
    """End each logger's run, so that the next job of a multirun starts its own (wandb keeps one
    run per process until told otherwise)."""
    for logger in trainer.loggers:
        logger.finalize("success")
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()


def store_suffix(task: Task) -> str:
    """Per-point stores are ``.pt`` files; per-token stores (sequences) their own format."""
    return ".tokens" if task.token_level else ".pt"


def write_results(results: dict[str, Any], output_dir: Path, trainer: pl.Trainer) -> None:
    """Write ``results.json`` (rank 0), adding to ``results`` the learning-rate schedule the trainer
    ran (both stages build theirs in the module, so it is read here, once)."""
    schedules = [describe_schedule(config.scheduler) for config in trainer.lr_scheduler_configs]
    results["lr_schedule"] = schedules[0] if schedules else None
    if trainer.is_global_zero:
        atomic_write_json(results, output_dir / "results.json")
