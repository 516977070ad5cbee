"""The matched-budget comparison: every method trained for the same number of steps as the baseline,
uniform selection with its learning rate decayed to zero at that budget on every labelled point.

A method's table row, over seeds: the best and the final test value (mean and range), its training
wall-clock alone, with the IL stage counted in full and with it amortised over the runs that share the
store, and the steps and seconds it takes to reach the baseline's final test value (mean over seeds).
Runs carry the test curve :class:`rholoss.callbacks.TestCurve` wrote, whose seconds leave its own test
passes out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rholoss.analysis.metric import Metric
from rholoss.analysis.summary import first_reaching, mean_curve
from rholoss.analysis.tables import markdown_table
from rholoss.callbacks.test_curve import FILE as TEST_CURVE_FILE


def run_record(run_dir: Path, method: str, uses_il: bool) -> dict[str, Any]:
    """What the comparison needs of one finished target run in ``run_dir`` (its ``results.json`` and
    ``test_curve.json``), under the name ``method``."""
    results = json.loads((Path(run_dir) / "results.json").read_text())
    path = Path(run_dir) / TEST_CURVE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no {TEST_CURVE_FILE}: run it with +callbacks.test_curve._target_=rholoss.callbacks.TestCurve."
        )
    curve = json.loads(path.read_text())
    if not curve["points"]:
        raise ValueError(
            f"{run_dir} ran {results['steps']} steps without a test pass (one follows each validation): set "
            "val_every_n_steps at most the budget."
        )
    metric = Metric(curve["metric"], curve["mode"])
    return {
        "method": method,
        "seed": results["seed"],
        "steps": results["steps"],
        "metric": metric.name,
        "mode": metric.mode,
        "curve": curve["points"],
        "final": results[f"test_{metric.short}"],
        "train_seconds": results["wall_seconds"] - curve["test_seconds"],
        "uses_il": uses_il,
        "lr_schedule": results.get("lr_schedule"),
        "pool_size": results["dataset"]["pool_size"],
        "path": str(run_dir),
    }


def metric_of_records(runs: Sequence[dict[str, Any]]) -> Metric:
    metrics = {Metric(run["metric"], run["mode"]) for run in runs}
    if len(metrics) != 1:
        raise ValueError(
            f"The runs of one comparison must share one test metric, got {sorted(m.name for m in metrics)}."
        )
    return metrics.pop()


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "min": float(min(values)), "max": float(max(values))}


def summarize_budget(
    runs: Sequence[dict[str, Any]], baseline: str, il_seconds: float, il_shared_by: int
) -> dict[str, Any]:
    """Per method (the baseline first), over its seeds: ``best`` / ``final`` test value, ``seconds``
    (training), ``seconds_per_step`` (training seconds per step: the step cost, shown against the
    baseline's), ``seconds_il`` (the IL stage's ``il_seconds`` added for methods that use it),
    ``seconds_il_amortised`` (``il_seconds / il_shared_by`` added), and the steps and seconds (IL
    counted) to reach ``target``, the baseline's mean final test value; ``reached`` seeds of ``seeds``; and
    what the method could spend and still tie the baseline there (:func:`break_even`)."""
    metric = metric_of_records(runs)
    by_method: dict[str, list[dict[str, Any]]] = {}
    for run in sorted(runs, key=lambda r: (r["method"] != baseline, r["seed"])):
        by_method.setdefault(run["method"], []).append(run)
    if baseline not in by_method:
        raise ValueError(f"No runs of the baseline {baseline!r} among {sorted(by_method)}.")
    target = float(np.mean([run["final"] for run in by_method[baseline]]))
    methods = {}
    for name, seeds in by_method.items():
        il = il_seconds if seeds[0]["uses_il"] else 0.0
        train_seconds = float(np.mean([run["train_seconds"] for run in seeds]))
        methods[name] = {
            "seeds": [run["seed"] for run in seeds],
            "best": _spread([metric.best(p[1] for p in run["curve"]) for run in seeds]),
            "final": _spread([run["final"] for run in seeds]),
            "seconds": train_seconds,
            "seconds_per_step": float(np.mean([run["train_seconds"] / run["steps"] for run in seeds])),
            "seconds_il": train_seconds + il,
            "seconds_il_amortised": train_seconds + il / max(il_shared_by, 1),
            **time_to_target(seeds, target, metric, il),
            "curve": mean_curve([{"val_curve": run["curve"], "selection": name} for run in seeds]),
            "il_seconds": il,
        }
    for method in methods.values():
        method.update(break_even(methods[baseline], method))
    return {"metric": metric.name, "mode": metric.mode, "baseline": baseline, "target": target, "methods": methods}


def time_to_target(seeds: Sequence[dict[str, Any]], target: float, metric: Metric, il: float) -> dict[str, Any]:
    """Over the seeds of one method: the mean ``steps_to_target`` and ``seconds_to_target_il`` (``il``
    added) of the seeds that reach ``target``, and how many did (``reached``)."""
    hits = [h for h in (first_reaching(run["curve"], target, metric) for run in seeds) if h is not None]
    return {
        "steps_to_target": float(np.mean([h[0] for h in hits])) if hits else None,
        "seconds_to_target_il": float(np.mean([h[1] for h in hits])) + il if hits else None,
        "reached": len(hits),
    }


def break_even(baseline: dict[str, Any], method: dict[str, Any]) -> dict[str, float | None]:
    """What a method could spend and still reach the baseline's final no later than the baseline, the two
    reasons a selection method wins or loses in wall-clock set apart: ``break_even_step_cost``, the step
    cost (against the baseline's step) at which its fewer steps take the baseline's time, the IL stage
    free (its steps saved, as a ratio, on any hardware); ``il_allowance_seconds``, the seconds an IL stage
    may take on this machine at the step cost measured (negative: it loses even with the IL stage free).
    None where either never reaches the target."""
    if not (baseline["reached"] and method["reached"]):
        return {"break_even_step_cost": None, "il_allowance_seconds": None}
    without_il = method["seconds_to_target_il"] - method["il_seconds"]
    return {
        "break_even_step_cost": baseline["steps_to_target"] / method["steps_to_target"],
        "il_allowance_seconds": baseline["seconds_to_target_il"] - baseline["il_seconds"] - without_il,
    }


def summarize_across_budgets(
    summaries: dict[int, dict[str, Any]], runs: dict[int, Sequence[dict[str, Any]]]
) -> dict[str, Any]:
    """Which budget reaches the strongest baseline's final soonest: the question a user asks ("uniform
    training gets to this accuracy at best; what is the quickest way there?"). A method that learns
    faster can reach that value at a smaller budget, its own schedule decayed there, and spend less.

    The strongest baseline is the budget whose baseline ends best (mean over seeds; the smaller budget on a
    tie), not the largest: trained long enough on noisy labels, uniform training memorises them and ends
    lower at a larger budget (Fashion-MNIST at 30% noise: 88.9% at 6,000 and 12,000 steps, 86.2% at 24,000).

    ``summaries``: :func:`summarize_budget`'s, by budget; ``runs``: the run records each was made of. Returns the
    ``budget`` and ``target`` (that baseline's mean final), and one row per method and budget: its final
    test value, whole-run seconds with the IL stage counted, and the steps and seconds (IL counted) to the
    target, over the seeds that reach it."""
    any_summary = next(iter(summaries.values()))
    metric = Metric(any_summary["metric"], any_summary["mode"])
    best = metric.best(summary["target"] for summary in summaries.values())
    strongest = min(budget for budget, summary in summaries.items() if summary["target"] == best)
    reference = summaries[strongest]
    target = reference["target"]
    rows = []
    for budget in sorted(summaries):
        for name, method in summaries[budget]["methods"].items():
            seeds = [run for run in runs[budget] if run["method"] == name]
            rows.append(
                {
                    "method": name,
                    "budget": budget,
                    "seeds": method["seeds"],
                    "final": method["final"],
                    "seconds_il": method["seconds_il"],
                    **time_to_target(seeds, target, metric, method["il_seconds"]),
                }
            )
    return {
        "metric": metric.name,
        "mode": metric.mode,
        "baseline": reference["baseline"],
        "budget": strongest,
        "target": target,
        "rows": rows,
    }


def across_budgets_markdown(summary: dict[str, Any]) -> str:
    """:func:`summarize_across_budgets` as a Markdown table, one row per method and budget."""
    metric = Metric(summary["metric"], summary["mode"])
    rows = []
    for row in summary["rows"]:
        seeds = len(row["seeds"])
        reached = "never" if not row["reached"] else f"{row['steps_to_target']:.0f}"
        if row["reached"] and row["reached"] < seeds:
            reached += f" ({row['reached']}/{seeds} seeds)"
        to_target = "never" if not row["reached"] else f"{row['seconds_to_target_il']:.1f}"
        name = row["method"] + (" (baseline)" if row["method"] == summary["baseline"] else "")
        rows.append(
            [
                name,
                str(row["budget"]),
                _spread_text(metric, row["final"]),
                f"{row['seconds_il']:.1f}",
                reached,
                to_target,
            ]
        )
    header = [
        "method",
        "budget",
        f"final test {metric.short}",
        "s, IL counted",
        f"steps to the strongest baseline's final ({summary['budget']} steps, {metric.format(summary['target'])})",
        "s to it, IL counted",
    ]
    return markdown_table(header, rows)


def _spread_text(metric: Metric, values: dict[str, float]) -> str:
    """A mean and its range over seeds (the mean alone when they agree)."""
    mean, low, high = (metric.format(values[key]) for key in ("mean", "min", "max"))
    return mean if low == high else f"{mean} ({low}–{high})"


def budget_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table, one row per method."""
    metric = Metric(summary["metric"], summary["mode"])
    short = metric.short
    rows = []
    baseline_step = summary["methods"][summary["baseline"]]["seconds_per_step"]
    for name, method in summary["methods"].items():
        seeds = len(method["seeds"])
        reached = "never" if not method["reached"] else f"{method['steps_to_target']:.0f}"
        if method["reached"] and method["reached"] < seeds:
            reached += f" ({method['reached']}/{seeds} seeds)"
        to_target = "never" if not method["reached"] else f"{method['seconds_to_target_il']:.1f}"
        rows.append(
            [
                f"**{name}** (baseline)" if name == summary["baseline"] else name,
                _spread_text(metric, method["best"]),
                _spread_text(metric, method["final"]),
                f"{method['seconds']:.1f}",
                f"{method['seconds_per_step'] / baseline_step:.2f}x",
                f"{method['seconds_il']:.1f}",
                f"{method['seconds_il_amortised']:.1f}",
                reached,
                to_target,
                "never" if method["break_even_step_cost"] is None else f"{method['break_even_step_cost']:.2f}x",
                "never" if method["il_allowance_seconds"] is None else f"{method['il_allowance_seconds']:.1f}",
            ]
        )
    header = [
        "method",
        f"best test {short}",
        f"final test {short}",
        "train s",
        "step cost",
        "s, IL counted",
        "s, IL amortised",
        f"steps to baseline's final ({metric.format(summary['target'])})",
        "s to it, IL counted",
        "break-even step cost",
        "IL allowance s",
    ]
    return markdown_table(header, rows)
