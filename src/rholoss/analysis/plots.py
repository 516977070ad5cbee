"""The paper's figures from a :func:`rholoss.analysis.summary.summarize` summary, as PNG and PDF.

- ``accuracy_vs_steps``: validation accuracy per method, mean over seeds with a min/max band (Fig. 2/3);
- ``steps_vs_target``: steps needed to reach each target accuracy (Fig. 3);
- ``noisy_selected``: share of selected points whose label was corrupted (Fig. 1 right), label noise only;
- ``score_concentration``: share of a large batch's score held by its top 20% (Fig. 1 left), where logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rholoss.analysis.tables import read_logged
from rholoss.atomic import atomic_write

SCORE_SHARE = "selection/top20_score_share"


def _pyplot() -> Any:
    """matplotlib on the Agg backend (files only, no display needed), or a clear error."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("The figures need matplotlib: pip install 'rholoss[plot]'.") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(summary: dict[str, Any]) -> dict[str, str]:
    """One color per method, the same in every figure (a method missing from one keeps its color)."""
    return {name: f"C{i % 10}" for i, name in enumerate(summary["methods"])}


def _save(figure: Any, folder: Path, name: str) -> list[Path]:
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    figure.tight_layout()
    for path in paths:
        atomic_write(path, lambda file, fmt=path.suffix[1:]: figure.savefig(file, format=fmt, dpi=150))
    _pyplot().close(figure)
    return paths


def accuracy_vs_steps(summary: dict[str, Any], folder: Path) -> list[Path]:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    colors = _colors(summary)
    for name, method in summary["methods"].items():
        curve = method["curve"]
        axes.plot(curve["steps"], np.multiply(curve["mean"], 100), color=colors[name], label=name)
        axes.fill_between(
            curve["steps"], np.multiply(curve["min"], 100), np.multiply(curve["max"], 100),
            color=colors[name], alpha=0.2, linewidth=0,
        )
    axes.axhline(100 * summary["target_accuracy"], color="grey", linestyle="--", linewidth=1,
                 label=f"target ({summary['baseline']}'s best)")
    axes.set(xlabel="steps", ylabel="validation accuracy (%)", title="Accuracy vs steps (mean, min/max over seeds)")
    axes.legend()
    return _save(figure, folder, "accuracy_vs_steps")


def steps_vs_target(summary: dict[str, Any], folder: Path) -> list[Path]:
    """Steps on the mean curve, with error bars spanning the per-seed min/max where every seed got there."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    targets = 100 * np.asarray(summary["targets"])
    for name, method in summary["methods"].items():
        reach = method["steps_to_targets"]
        steps = np.array([np.nan if r["curve_steps"] is None else r["curve_steps"] for r in reach], dtype=float)
        low = np.array([np.nan if r["steps"]["min"] is None else r["steps"]["min"] for r in reach], dtype=float)
        high = np.array([np.nan if r["steps"]["max"] is None else r["steps"]["max"] for r in reach], dtype=float)
        # Error bars must not be negative: the mean curve's step can lie outside the per-seed range.
        errors = np.nan_to_num(np.clip([steps - low, high - steps], 0, None))
        axes.errorbar(targets, steps, yerr=errors, marker="o", markersize=3, capsize=2, color=_colors(summary)[name],
                      label=name)
    axes.set(xlabel="target validation accuracy (%)", ylabel="steps required",
             title="Steps to reach a target accuracy (missing: never)")
    axes.legend()
    return _save(figure, folder, "steps_vs_target")


def noisy_selected(summary: dict[str, Any], folder: Path) -> list[Path]:
    """Bars: mean share over seeds; whiskers: min/max. Empty list when no method saw label noise."""
    names = [n for n, m in summary["methods"].items() if m["noisy_selected_fraction"] is not None]
    if not names:
        return []
    plt = _pyplot()
    stats = [summary["methods"][n]["noisy_selected_fraction"] for n in names]
    mean = np.array([100 * s["mean"] for s in stats])
    errors = np.array([[100 * s["mean"] - 100 * s["min"] for s in stats], [100 * s["max"] - 100 * s["mean"] for s in stats]])
    figure, axes = plt.subplots(figsize=(max(4, 1.2 * len(names)), 4))
    axes.bar(names, mean, yerr=errors, capsize=4, color=[_colors(summary)[n] for n in names], alpha=0.8)
    axes.set(ylabel="selected points with corrupted labels (%)", title="Noisy points selected")
    return _save(figure, folder, "noisy_selected")


def score_concentration(summary: dict[str, Any], folder: Path) -> list[Path]:
    """Mean over seeds at the steps all seeds logged. Empty list when no run logged the share
    (uniform has no scores; runs without a CSV log have nothing to read)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    drawn = False
    for name, method in summary["methods"].items():
        logs = [dict(read_logged(Path(path), SCORE_SHARE)) for path in method["runs"]]
        steps = sorted(set.intersection(*(set(log) for log in logs))) if all(logs) else []
        if steps:
            shares = [100 * np.mean([log[s] for log in logs]) for s in steps]
            axes.plot(steps, shares, color=_colors(summary)[name], label=name)
            drawn = True
    if not drawn:
        plt.close(figure)
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
