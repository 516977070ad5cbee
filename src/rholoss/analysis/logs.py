"""A run's logged metrics, whichever logger wrote them: one reader per logger's on-disk format (the CSV
file, TensorBoard event files, MLflow's file store), behind :func:`read_logged`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Protocol

from rholoss.loggers import require_package

Rows = list[tuple[int, float]]


class MetricLog(Protocol):
    """One logger's record of a run, as the run folder holds it."""

    def present(self, run_dir: Path) -> bool:
        """Whether this logger wrote into ``run_dir``."""
        ...

    def read(self, run_dir: Path, name: str) -> Rows:
        """``(step, value)`` rows of metric ``name``; empty when it was never logged."""
        ...


class CSVLog:
    """``logger=csv``: ``csv/metrics.csv``, one column per metric, a row per logging step."""

    def _path(self, run_dir: Path) -> Path:
        return run_dir / "csv" / "metrics.csv"

    def present(self, run_dir: Path) -> bool:
        return self._path(run_dir).is_file()

    def read(self, run_dir: Path, name: str) -> Rows:
        with self._path(run_dir).open(newline="") as file:
            return [(int(row["step"]), float(row[name])) for row in csv.DictReader(file) if row.get(name)]


class TensorBoardLog:
    """``logger=tensorboard``: event files in ``tensorboard/``, read with TensorBoard's own reader."""

    def _folder(self, run_dir: Path) -> Path:
        return run_dir / "tensorboard"

    def present(self, run_dir: Path) -> bool:
        return any(self._folder(run_dir).glob("events.out.tfevents.*"))

    def read(self, run_dir: Path, name: str) -> Rows:
        require_package("tensorboard", "tensorboard", f"Reading the TensorBoard log in {run_dir}")
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(self._folder(run_dir)), size_guidance={"scalars": 0})  # 0: keep every value
        events.Reload()
        if name not in events.Tags()["scalars"]:
            return []
        return [(int(event.step), float(event.value)) for event in events.Scalars(name)]


class MLflowLog:
    """``logger=mlflow``: MLflow's file store in ``mlruns/``. Each metric is a text file
    ``<experiment>/<run>/metrics/<name>`` of ``timestamp value step`` lines (a ``/`` in the name
    is a subfolder), plain enough to read without MLflow installed."""

    def _metric_folders(self, run_dir: Path) -> list[Path]:
        return sorted((run_dir / "mlruns").glob("*/*/metrics"))

    def present(self, run_dir: Path) -> bool:
        return bool(self._metric_folders(run_dir))

    def read(self, run_dir: Path, name: str) -> Rows:
        rows = []
        for path in (folder / name for folder in self._metric_folders(run_dir)):
            if not path.is_file():
                continue
            for line in path.read_text().splitlines():
                _, value, step = line.split()
                rows.append((int(step), float(value)))
        return rows


# In this order: a run that has several logs (logger=wandb keeps the CSV beside it) is read from the first.
READERS: tuple[MetricLog, ...] = (CSVLog(), TensorBoardLog(), MLflowLog())


def read_logged(run_dir: Path, name: str) -> Rows:
    """``(step, value)`` rows of one logged metric from whichever log the run has, in step order;
    empty when the run has no log or never logged ``name``."""
    run_dir = Path(run_dir)
    for reader in READERS:
        if reader.present(run_dir):
            return sorted(reader.read(run_dir, name))
    return []
