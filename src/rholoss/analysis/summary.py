"""Per-method curves over seeds, steps to target values, and the paper's speedup table.

The paper's form (Mindermann et al. 2022, Sec. 5.2): the target is the best validation value (the
highest accuracy; the lowest MSE or loss for a metric to minimise) that uniform selection reaches,
on its curve averaged over seeds; a method's speedup is uniform's
steps to that target divided by the method's steps (on the method's seed-averaged curve), or
"never" when the method does not reach it. Per-seed steps (mean, min, max) come beside it, so a
speedup that rests on one lucky seed is visible.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from rholoss.analysis.metric import ACCURACY, Metric, metric_of
from rholoss.analysis.tables import markdown_table

BASELINE = "uniform"
NUM_TARGETS = 8


def group_by_method(runs: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs by selection name, the baseline first, then alphabetical; seeds in order."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[run["selection"]].append(run)
    order = sorted(groups, key=lambda name: (name != BASELINE, name))
    return {name: sorted(groups[name], key=lambda r: r["seed"]) for name in order}


def mean_curve(runs: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """The validation metric over seeds at the steps every seed evaluated: ``steps``, ``mean``,
    ``min``, ``max`` value and ``seconds`` (mean wall-clock since training started)."""
    by_run = [{int(p[0]): p for p in run["val_curve"]} for run in runs]
    steps = sorted(set.intersection(*(set(points) for points in by_run))) if by_run else []
    if not steps:
        names = sorted({r["selection"] for r in runs})
        raise ValueError(
            f"The runs of {names} share no validation step: give them the same val_every_n_steps "
            "(or compare methods run with the same trainer settings)."
        )
    acc = np.array([[points[s][1] for s in steps] for points in by_run])
    seconds = np.array([[points[s][2] for s in steps] for points in by_run])
    return {
        "steps": steps,
        "mean": acc.mean(0).tolist(),
        "min": acc.min(0).tolist(),
        "max": acc.max(0).tolist(),
        "seconds": seconds.mean(0).tolist(),
    }


def first_reaching(
    curve: Sequence[Sequence[float]], target: float, metric: Metric = ACCURACY
) -> tuple[int, float] | None:
    """(step, seconds) of the first point of ``[step, value, seconds]`` rows whose value reaches ``target``."""
    return next(((int(p[0]), float(p[2])) for p in curve if metric.reached(p[1], target)), None)


def _stats(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean/min/max over seeds, or ``None`` for them when a seed never got there."""
    reached = [v for v in values if v is not None]
    complete = len(reached) == len(values) and reached
    return {
        "mean": float(np.mean(reached)) if complete else None,
        "min": float(min(reached)) if complete else None,
        "max": float(max(reached)) if complete else None,
        "reached": len(reached),
        "seeds": len(values),
    }


def steps_to_target(
    runs: Sequence[dict[str, Any]], curve: dict[str, list[float]], target: float, metric: Metric = ACCURACY
) -> dict[str, Any]:
    """How long ``runs`` (one method's seeds) take to reach ``target``: on the mean curve, and per
    seed (mean, min, max of steps and of wall-clock seconds)."""
    on_mean = first_reaching(list(zip(curve["steps"], curve["mean"], curve["seconds"], strict=True)), target, metric)
    per_seed = [first_reaching(run["val_curve"], target, metric) for run in runs]
    return {
        "curve_steps": on_mean[0] if on_mean else None,
        "curve_seconds": on_mean[1] if on_mean else None,
        "steps": _stats([p[0] if p else None for p in per_seed]),
        "seconds": _stats([p[1] if p else None for p in per_seed]),
    }


def _speedup(baseline: float | None, method: float | None) -> float | None:
    return baseline / method if baseline is not None and method else None


def summarize(runs: Sequence[dict[str, Any]], targets: Sequence[float] | None = None) -> dict[str, Any]:
    """Everything the table, the figures and ``summary.json`` show, from target runs'
    ``results.json`` records. ``targets``: values of the runs' metric for steps-vs-target (default:
    evenly spaced from uniform's first to its best mean value)."""
    metric = metric_of(runs)
    groups = group_by_method(runs)
    if BASELINE not in groups:
        raise ValueError(
            f"No {BASELINE!r} runs among {sorted(groups) or 'no runs'}: the speedup table is measured against "
            f"uniform selection; add selection={BASELINE} to the sweep."
        )
    curves = {name: mean_curve(group) for name, group in groups.items()}
    baseline = curves[BASELINE]
    target = metric.best(baseline["mean"])
    if targets is None:
        targets = np.linspace(baseline["mean"][0], target, NUM_TARGETS).tolist()

    methods = {}
    base = steps_to_target(groups[BASELINE], baseline, target, metric)
    for name, group in groups.items():
        reach = steps_to_target(group, curves[name], target, metric)
        methods[name] = {
            "seeds": [r["seed"] for r in group],
            "runs": [r["path"] for r in group],
            "curve": curves[name],
            "to_target": reach,
            "speedup": _speedup(base["curve_steps"], reach["curve_steps"]),
            "wall_clock_speedup": _speedup(base["curve_seconds"], reach["curve_seconds"]),
            "test": _stats([r.get(f"test_{metric.short}") for r in group]),
            "best_val": _stats([r.get(f"best_val_{metric.short}") for r in group]),
            "noisy_selected_fraction": _optional_stats([r.get("noisy_selected_fraction") for r in group]),
            "relevant_selected_fraction": _optional_stats([r.get("relevant_selected_fraction") for r in group]),
            "steps_to_targets": [steps_to_target(group, curves[name], t, metric) for t in targets],
        }
    return {
        "baseline": BASELINE,
        "metric": metric.name,
        "mode": metric.mode,
        "target": target,
        "targets": list(targets),
        "methods": methods,
    }


def summary_metric(summary: dict[str, Any]) -> Metric:
    """The metric a :func:`summarize` summary was measured by."""
    return Metric(summary.get("metric", "val/acc"), summary.get("mode", "max"))


def _optional_stats(values: Sequence[float | None]) -> dict[str, Any] | None:
    """Stats of a quantity that only some data have (no label noise: no noisy fraction)."""
    return None if all(v is None for v in values) else _stats(values)


def _range(stats: dict[str, Any] | None, fmt: str) -> str:
    """``mean [min, max]``, or ``never (k/n seeds)`` when some seed did not get there."""
    if stats is None:
        return "–"
    if stats["mean"] is None:
        return f"never ({stats['reached']}/{stats['seeds']} seeds)" if stats["reached"] else "never"
    if stats["seeds"] == 1:
        return fmt.format(stats["mean"])
    return f"{fmt.format(stats['mean'])} [{fmt.format(stats['min'])}, {fmt.format(stats['max'])}]"


def speedup_markdown(summary: dict[str, Any]) -> str:
    """The speedup table: one row per method, ranges over seeds as ``mean [min, max]``."""
    metric = summary_metric(summary)
    rows = []
    for name, m in summary["methods"].items():
        reach = m["to_target"]
        speedup = "never" if m["speedup"] is None else f"{m['speedup']:.2f}x"
        wall = "never" if m["wall_clock_speedup"] is None else f"{m['wall_clock_speedup']:.2f}x"
        steps = "never" if reach["curve_steps"] is None else str(reach["curve_steps"])
        noisy = m["noisy_selected_fraction"]
        rows.append(
            [
                name,
                len(m["seeds"]),
                steps,
                speedup,
                _range(reach["steps"], "{:.0f}"),
                _range(reach["seconds"], "{:.1f}"),
                wall,
                _range(m["test"], "{:.4f}"),
                _range(noisy, "{:.3f}"),
            ]
        )
    header = [
        "method",
        "seeds",
        "steps to target",
        "speedup",
        "steps per seed",
        "seconds per seed",
        "wall-clock speedup",
        f"test {metric.short}",
        "noisy selected",
    ]
    best = "highest" if metric.mode == "max" else "lowest"
    title = (
        f"Target: {metric.format(summary['target'])} {metric.axis_label.removesuffix(' (%)')}, the {best} of "
        f"{summary['baseline']} (mean over seeds)."
    )
    return f"{title}\n\n{markdown_table(header, rows)}"


def targets_markdown(summary: dict[str, Any]) -> str:
    """Steps to each target value (mean curve), one column per method: the numbers of Fig. 3."""
    metric = summary_metric(summary)
    names = list(summary["methods"])
    rows = []
    for i, target in enumerate(summary["targets"]):
        cells = [summary["methods"][n]["steps_to_targets"][i]["curve_steps"] for n in names]
        rows.append([metric.format(target), *("never" if c is None else c for c in cells)])
    return markdown_table([f"target {metric.short}", *names], rows)
