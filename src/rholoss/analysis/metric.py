"""Which validation metric a set of runs was measured by, and how to read and show it.

Runs record ``metric`` (``val/acc``, ``val/mse``, ``val/loss``) and ``mode`` (``max`` when higher is
better, ``min`` when lower is) in ``results.json``; runs made before tasks existed are accuracy
runs. Every table and figure reads targets, "reached" and "best" through one :class:`Metric`, so
a metric to minimise works exactly as accuracy does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# Tolerance for "reached": the baseline always reaches its own best mean value despite rounding.
_TOLERANCE = 1e-9
_NAMES = {"acc": "accuracy", "mse": "MSE", "loss": "loss"}


@dataclass(frozen=True)
class Metric:
    name: str = "val/acc"
    mode: str = "max"

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"A metric's mode is 'max' or 'min', got {self.mode!r} for {self.name}.")

    @property
    def short(self) -> str:
        """``acc`` for ``val/acc``: the suffix of ``best_val_<short>`` and ``test_<short>`` in results."""
        return self.name.split("/", 1)[-1]

    @property
    def is_fraction(self) -> bool:
        """Accuracy-like: a share in [0, 1], shown as a percentage."""
        return self.short == "acc"

    @property
    def label(self) -> str:
        """``accuracy`` / ``MSE`` / the short name, for headers and axes."""
        return _NAMES.get(self.short, self.short)

    @property
    def axis_label(self) -> str:
        return f"validation {self.label}" + (" (%)" if self.is_fraction else "")

    def reached(self, value: float, target: float) -> bool:
        return value >= target - _TOLERANCE if self.mode == "max" else value <= target + _TOLERANCE

    def best(self, values: Iterable[float]) -> float:
        return max(values) if self.mode == "max" else min(values)

    def format(self, value: float | None) -> str:
        if value is None:
            return "–"
        return f"{100 * value:.1f}%" if self.is_fraction else f"{value:.4g}"

    def scaled(self, values: Any) -> Any:
        """Values as plotted: percentages for accuracy, as they are otherwise."""
        import numpy as np

        return np.multiply(values, 100) if self.is_fraction else np.asarray(values, dtype=float)


# The default metric (validation accuracy, higher is better): runs made before tasks existed, and the
# default argument of the helpers that read curves (one shared frozen instance).
ACCURACY = Metric()


def metric_of(runs: Sequence[dict[str, Any]]) -> Metric:
    """The one metric ``runs`` share; an error naming them when they were measured differently."""
    metrics = {Metric(run.get("metric", "val/acc"), run.get("mode", "max")) for run in runs}
    if len(metrics) > 1:
        found = ", ".join(sorted(f"{m.name} ({m.mode})" for m in metrics))
        raise ValueError(f"These runs were measured by different metrics ({found}): analyse each task's runs apart.")
    return metrics.pop() if metrics else ACCURACY
