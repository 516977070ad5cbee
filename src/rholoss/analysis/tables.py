"""Reading runs: their results.json records and validation curves (their logs: rholoss.analysis.logs)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rholoss.analysis.metric import ACCURACY, Metric, metric_of


def load_results(folder: Path) -> list[dict[str, Any]]:
    """Every finished target run's ``results.json`` under ``folder`` (IL runs and failed jobs are
    skipped), with its path."""
    runs = []
    for path in sorted(Path(folder).rglob("results.json")):
        result = json.loads(path.read_text())
        if result.get("stage") == "target":  # failure records (rholoss.sweep) have no stage
            runs.append({**result, "path": str(path.parent)})
    return runs


def steps_to_value(val_curve: Sequence[Sequence[float]], target: float, metric: Metric = ACCURACY) -> int | None:
    """First step whose validation value reaches ``target`` (at least it for accuracy, at most it for
    a metric to minimise), or None if it never does."""
    return next((int(step) for step, value, *_ in val_curve if metric.reached(value, target)), None)


def markdown_table(header: list[str], rows: Iterable[Iterable[object]]) -> str:
    """A Markdown table of ``rows`` (cells shown with ``str``) under ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: float | None, pattern: str = "{:.4f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def method_table(runs: Sequence[dict[str, Any]]) -> str:
    """A Markdown table, one row per run: final test value of the runs' metric, best val value, steps
    to reach the uniform run's final val value (the mean over uniform runs when there are several),
    share of selected points whose label was corrupted."""
    metric = metric_of(runs)
    uniform_finals = [r["val_curve"][-1][1] for r in runs if r["selection"] == "uniform" and r["val_curve"]]
    target = sum(uniform_finals) / len(uniform_finals) if uniform_finals else None
    rows = []
    for run in sorted(runs, key=lambda r: (r["selection"], r["seed"])):
        steps = steps_to_value(run["val_curve"], target, metric) if target is not None else None
        steps_text = "n/a" if target is None else ("never" if steps is None else str(steps))
        values = [p[1] for p in run["val_curve"]]
        rows.append(
            [
                run["selection"],
                run["seed"],
                _fmt(run.get(f"test_{metric.short}")),
                _fmt(metric.best(values) if values else None),
                steps_text,
                _fmt(run["noisy_selected_fraction"], "{:.3f}"),
            ]
        )
    short = metric.short
    steps_header = f"steps to uniform's final val {short} ({_fmt(target)})"
    header = ["method", "seed", f"test {short}", f"best val {short}", steps_header, "noisy selected"]
    return markdown_table(header, rows)
