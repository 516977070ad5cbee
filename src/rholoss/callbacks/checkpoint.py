"""Periodic training checkpoints that a run resumes from exactly, and a stop on a non-finite loss.

Lightning's checkpoint holds the model, optimizer, LR schedulers, loops (step, epoch, batch position)
and every stateful callback. This callback adds what an exact resume also needs: the RNG states at
the moment of saving (uniform and sampled selection, dropout and augmentation draw from them), put
back right before the next training step. The data loaders continue mid-epoch from the restored step
(:meth:`rholoss.data.EpochPermutation.start_after`).

A stop signal (SIGTERM, SIGUSR1, SIGUSR2: :mod:`rholoss.callbacks.preemption`) during training saves
``last.ckpt`` at the end of the current step, logs where it is and how to continue, and ends the
process with status 128 + the signal's number (143 for SIGTERM).
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytorch_lightning as pl
import torch

from rholoss.callbacks.preemption import StopSignals

log = logging.getLogger(__name__)

LAST = "last.ckpt"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class CheckpointError(RuntimeError):
    """A checkpoint to resume from is missing, unreadable or made by another configuration."""


class StepCheckpoint(pl.Callback):
    """Every ``every_n_steps`` optimizer steps and at the end of training, write ``dirpath/last.ckpt``
    atomically (a temp file renamed over it: a kill mid-write leaves the previous checkpoint);
    ``every_n_steps=None`` writes no periodic checkpoints but still stops on a non-finite loss.

    It also watches the training loss: each step's loss tensor is kept (no device work or host sync
    per step) and the kept ones are checked every ``log_every_n_steps`` steps and before every save,
    so ``last.ckpt`` always holds finite weights. On a non-finite loss it saves the state at failure as
    ``failed-step<N>.ckpt`` and stops with :class:`NonFiniteLossError` naming the first bad step.
    """

    def __init__(self, dirpath: Path | str, every_n_steps: int | None) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(
                "checkpoint.every_n_steps must be at least 1, or null for no periodic checkpoints; "
                f"got {every_n_steps}."
            )
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self._rng_to_restore: dict[str, Any] | None = None
        self._losses: list[torch.Tensor] = []
        self._loss_steps: list[int] = []
        self.stop_signals = StopSignals()

    @property
    def last_path(self) -> Path:
        return self.dirpath / LAST

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Applied at the next training step: Lightning and the loaders may draw in between.
        self._rng_to_restore = state_dict["rng"]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.stop_signals.remember_outer()  # before Lightning puts in its own

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stop_signals.install()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.stop_signals.uninstall()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._rng_to_restore is not None:
            _set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._watch(loss.detach(), trainer.global_step)
        step = trainer.global_step
        save_now = self.every_n_steps is not None and step % self.every_n_steps == 0
        at_interval = step % trainer.log_every_n_steps == 0  # type: ignore[attr-defined]  # set on the Trainer by a Lightning connector: mypy cannot see it
        if save_now or at_interval:
            self._stop_if_non_finite(trainer)
        if save_now:
            self.save(trainer, self.last_path)
        if self._stop_requested(trainer, at_interval):
            self._stop(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stop_signals.uninstall()
        if self._stop_requested(trainer, at_interval=True):  # a signal after the last step's check
            self._stop(trainer)
        # The final state too, so a finished run can be extended (resume= with more trainer.max_steps).
        self._stop_if_non_finite(trainer)
        if self.every_n_steps is not None and trainer.global_step % self.every_n_steps:
            self.save(trainer, self.last_path)

    def save(self, trainer: pl.Trainer, path: Path) -> None:
        """Write a checkpoint atomically; every rank calls it, rank 0 writes."""
        tmp = path.with_name(f".{path.name}.tmp")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, path)
        trainer.strategy.barrier("rholoss_checkpoint")

    def _stop_requested(self, trainer: pl.Trainer, at_interval: bool) -> bool:
        """Whether a stop signal arrived. Under DDP the ranks agree at the logging intervals (one
        collective then, none per step), so that all of them save and stop at the same step."""
        if trainer.world_size == 1:
            return self.stop_signals.received is not None
        if not at_interval:
            return False
        flag = torch.tensor(float(self.stop_signals.received is not None), device=trainer.strategy.root_device)
        return bool(trainer.strategy.reduce(flag, reduce_op="max") > 0)

    def _stop(self, trainer: pl.Trainer) -> None:
        """Save the state at this step and end the process (see the module's docstring)."""
        self._stop_if_non_finite(trainer)
        self.save(trainer, self.last_path)
        folder = self.dirpath.parent if self.dirpath.name == "checkpoints" else self.last_path
        name = self.stop_signals.received.name if self.stop_signals.received else "another rank's stop signal"
        log.warning(
            "Interrupted by %s at step %d: the state is saved in %s. Continue with resume=%s",
            name,
            trainer.global_step,
            self.last_path,
            folder,
        )
        self.stop_signals.hand_over()

    def _watch(self, loss: torch.Tensor, step: int) -> None:
        """Keep the step's loss (1-based step, as global_step after it) for the next check."""
        self._losses.append(loss)
        self._loss_steps.append(step)

    def _stop_if_non_finite(self, trainer: pl.Trainer) -> None:
        if not self._losses:
            return
        losses = torch.stack(self._losses)
        bad = ~torch.isfinite(losses)
        steps = torch.tensor(self._loss_steps, device=losses.device)
        first_bad = torch.where(bad.any(), steps[bad.int().argmax()], -1)
        self._losses, self._loss_steps = [], []
        first = int(trainer.strategy.reduce(first_bad.float(), reduce_op="max"))
        if first < 0:
            return
        failed = self.dirpath / f"failed-step{trainer.global_step}.ckpt"
        self.save(trainer, failed)
        resume = f"resume={self.last_path}" if self.last_path.is_file() else "(no earlier checkpoint was saved)"
        raise NonFiniteLossError(
            f"The training loss became NaN or infinite at step {first} (stopped at step {trainer.global_step}). "
            f"The state at the stop is saved in {failed}; the last finite checkpoint: {resume}. "
            "Lower optimizer.lr (or check the data for NaN inputs) and resume or rerun."
        )


def resolve_resume(resume: str | Path) -> Path:
    """The checkpoint that ``resume=`` names: a checkpoint file, or a run folder (its last checkpoint).

    The file is read once here so that a truncated or foreign file fails with this message rather
    than deep inside Lightning.
    """
    path = Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / LAST
    if not path.is_file():
        raise CheckpointError(
            f"resume={resume}: no checkpoint at {path}. Give a run folder that holds checkpoints/{LAST} "
            "(runs save one every checkpoint.every_n_steps steps) or a .ckpt file."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CheckpointError(
            f"Cannot read the checkpoint {path} ({type(error).__name__}: {error}). It is truncated or not a "
            "checkpoint: resume from another one, or start the run afresh without resume=."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "loops" not in checkpoint:
        raise CheckpointError(f"{path} is not a training checkpoint of this project (no model or loop state).")
    return path


def requeued_run(run_dir: Path) -> Path | None:
    """``run_dir`` when this process is a requeued SLURM job (SLURM sets ``SLURM_RESTART_COUNT``) and
    the run saved ``checkpoints/last.ckpt`` before: a requeued job runs the same command in the same
    folder, so it continues from there instead of starting afresh."""
    if int(os.environ.get("SLURM_RESTART_COUNT") or 0) < 1:
        return None
    return run_dir if (run_dir / "checkpoints" / LAST).is_file() else None


def _rng_state() -> dict[str, Any]:
    # Tensors and plain values only, so the checkpoint loads with torch.load(weights_only=True).
    legacy = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())  # the legacy tuple (the default)
    name, keys, position, has_gauss, cached = legacy
    numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached]
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
