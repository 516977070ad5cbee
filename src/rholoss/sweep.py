"""Sweeps that survive their failures: one failing job of a multirun is recorded, not fatal.

Hydra's launchers stop a multirun at the first exception (the basic launcher) or lose the results
of the jobs still running (joblib). :func:`run_job` catches a job's exception in a multirun and
writes a ``results.json`` with ``status: failed`` and the error in the job's folder, so the other
jobs run and the analysis can say which job failed and why. :class:`SweepSummary` then reports the
failures at the end and makes the sweep exit with status 1, so scripts and CI still notice them.
A single run (no ``-m``) raises as usual.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from rholoss.atomic import atomic_write_json

log = logging.getLogger(__name__)

FAILED = "failed"


def run_job(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """``task(cfg)``; in a multirun, an exception is recorded in the job's ``results.json`` and
    logged instead of stopping the sweep (the job then returns None)."""
    if not _in_multirun():
        return task(cfg)
    try:
        return task(cfg)
    except Exception as error:  # any job error is recorded, the sweep goes on
        output_dir = Path(HydraConfig.get().runtime.output_dir)
        record_failure(output_dir, cfg, error)
        log.exception("Job failed (recorded in %s); the sweep goes on.", output_dir / "results.json")
        _end_wandb_run()
        return None


def record_failure(output_dir: Path, cfg: DictConfig, error: BaseException) -> Path:
    """Write the failed job's ``results.json``: what it was (stage, selection, seed, overrides) and
    the error with its traceback."""
    selection = cfg.get("selection")
    record = {
        "status": FAILED,
        "stage": cfg.get("stage"),
        "selection": selection.get("name") if selection is not None else None,
        "seed": cfg.get("seed"),
        "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)),
    }
    return atomic_write_json(record, Path(output_dir) / "results.json")


def failed_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """The failure records under ``sweep_dir``, each with the job folder as ``path``."""
    failures = []
    for path in sorted(Path(sweep_dir).rglob("results.json")):
        record = json.loads(path.read_text())
        if record.get("status") == FAILED:
            failures.append({**record, "path": str(path.parent)})
    return failures


class SweepSummary(Callback):
    """At the end of a multirun: log how many jobs failed and why, then exit with status 1 if any
    did (after every job has run). Configured in ``configs/hydra/default.yaml``."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failures = failed_jobs(Path(config.hydra.sweep.dir))
        if not failures:
            return
        lines = [f"  {f['path']}: {f['error'].splitlines()[0]}" for f in failures]
        log.error("%d job(s) of the sweep failed (the others finished):\n%s", len(failures), "\n".join(lines))
        # SystemExit, not an exception: Hydra turns a callback's exception into a warning.
        raise SystemExit(1)


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _end_wandb_run() -> None:
    """A job that failed mid-training leaves its wandb run open; the next job must start its own.
    Without wandb imported (not installed, or no wandb logger) no run is open."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.run.finish(exit_code=1)
