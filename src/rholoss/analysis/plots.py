"""The paper's figures from a :func:`rholoss.analysis.summary.summarize` summary, as PNG and PDF.

- ``accuracy_vs_steps``: the validation metric (accuracy, MSE, loss) per method, mean over seeds with
  a min/max band (Fig. 2/3); the file keeps its name whatever the metric;
- ``steps_vs_target``: steps needed to reach each target value (Fig. 3);
- ``noisy_selected``: share of selected points whose label was corrupted (Fig. 1 right), label noise only;
- ``score_concentration``: share of a large batch's score held by its top 20% (Fig. 1 left), where logged.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from rholoss.analysis.logs import read_logged
from rholoss.analysis.summary import summary_metric
from rholoss.atomic import atomic_write

SCORE_SHARE = "selection/top20_score_share"


def _figure(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure and its axes outside pyplot: saving needs no display, and the caller's matplotlib
    backend (a notebook's inline one included) is left as it was. A clear error without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("The figures need matplotlib: pip install 'rholoss[plot]'.") from error
    figure = Figure(figsize=figsize)
    return figure, figure.subplots()


def _colors(summary: dict[str, Any]) -> dict[str, str]:
    """One color per method, the same in every figure (a method missing from one keeps its color)."""
    return {name: f"C{i % 10}" for i, name in enumerate(summary["methods"])}


def _save(figure: Any, folder: Path, name: str) -> list[Path]:
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    figure.tight_layout()
    for path in paths:
        atomic_write(path, functools.partial(figure.savefig, format=path.suffix[1:], dpi=150))
    return paths


def accuracy_vs_steps(summary: dict[str, Any], folder: Path) -> list[Path]:
    metric = summary_metric(summary)
    figure, axes = _figure((6, 4))
    colors = _colors(summary)
    for name, method in summary["methods"].items():
        curve = method["curve"]
        axes.plot(curve["steps"], metric.scaled(curve["mean"]), color=colors[name], label=name)
        axes.fill_between(
            curve["steps"],
            metric.scaled(curve["min"]),
            metric.scaled(curve["max"]),
            color=colors[name],
            alpha=0.2,
            linewidth=0,
        )
    axes.axhline(
        metric.scaled(summary["target"]),
        color="grey",
        linestyle="--",
        linewidth=1,
        label=f"target ({summary['baseline']}'s best)",
    )
    title = f"{metric.label[0].upper()}{metric.label[1:]} vs steps (mean, min/max over seeds)"
    axes.set(xlabel="steps", ylabel=metric.axis_label, title=title)
    axes.legend()
    return _save(figure, folder, "accuracy_vs_steps")


def steps_vs_target(summary: dict[str, Any], folder: Path) -> list[Path]:
    """Steps on the mean curve, with error bars spanning the per-seed min/max where every seed got there."""
    metric = summary_metric(summary)
    figure, axes = _figure((6, 4))
    targets = metric.scaled(summary["targets"])
    for name, method in summary["methods"].items():
        reach = method["steps_to_targets"]
        steps = np.array([np.nan if r["curve_steps"] is None else r["curve_steps"] for r in reach], dtype=float)
        low = np.array([np.nan if r["steps"]["min"] is None else r["steps"]["min"] for r in reach], dtype=float)
        high = np.array([np.nan if r["steps"]["max"] is None else r["steps"]["max"] for r in reach], dtype=float)
        # Error bars must not be negative: the mean curve's step can lie outside the per-seed range.
        errors = np.nan_to_num(np.clip([steps - low, high - steps], 0, None))
        axes.errorbar(
            targets, steps, yerr=errors, marker="o", markersize=3, capsize=2, color=_colors(summary)[name], label=name
        )
    if metric.mode == "min":  # left to right: from easy targets to hard ones, as for accuracy
        axes.invert_xaxis()
    axes.set(
        xlabel=f"target {metric.axis_label}",
        ylabel="steps required",
        title=f"Steps to reach a target {metric.label} (missing: never)",
    )
    axes.legend()
    return _save(figure, folder, "steps_vs_target")


def noisy_selected(summary: dict[str, Any], folder: Path) -> list[Path]:
    """Bars: mean share over seeds; whiskers: min/max. Empty list when no method saw label noise."""
    names = [n for n, m in summary["methods"].items() if m["noisy_selected_fraction"] is not None]
    if not names:
        return []
    stats = [summary["methods"][n]["noisy_selected_fraction"] for n in names]
    mean = np.array([100 * s["mean"] for s in stats])
    errors = np.array(
        [[100 * s["mean"] - 100 * s["min"] for s in stats], [100 * s["max"] - 100 * s["mean"] for s in stats]]
    )
    figure, axes = _figure((max(4, 1.2 * len(names)), 4))
    axes.bar(names, mean, yerr=errors, capsize=4, color=[_colors(summary)[n] for n in names], alpha=0.8)
    axes.set(ylabel="selected points with corrupted labels (%)", title="Noisy points selected")
    return _save(figure, folder, "noisy_selected")


def score_concentration(summary: dict[str, Any], folder: Path) -> list[Path]:
    """Mean over seeds at the steps all seeds logged. Empty list when no run logged the share
    (uniform has no scores; runs without a CSV log have nothing to read)."""
    figure, axes = _figure((6, 4))
    drawn = False
    for name, method in summary["methods"].items():
        logs = [dict(read_logged(Path(path), SCORE_SHARE)) for path in method["runs"]]
        steps = sorted(set.intersection(*(set(log) for log in logs))) if all(logs) else []
        if steps:
            shares = [100 * np.mean([log[s] for log in logs]) for s in steps]
            axes.plot(steps, shares, color=_colors(summary)[name], label=name)
            drawn = True
    if not drawn:
        return []
    axes.axhline(20, color="grey", linestyle="--", linewidth=1, label="no concentration")
    axes.set(xlabel="steps", ylabel="share of score in the top 20% (%)", title="Score concentration")
    axes.legend()
    return _save(figure, folder, "score_concentration")


def draw_all(summary: dict[str, Any], folder: Path) -> dict[str, list[str]]:
    """Every figure that the runs have data for, into ``folder``: ``{name: [png, pdf]}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures = {}
    for draw in (accuracy_vs_steps, steps_vs_target, noisy_selected, score_concentration):
        paths = draw(summary, folder)
        if paths:
            figures[draw.__name__] = [str(p) for p in paths]
    return figures
