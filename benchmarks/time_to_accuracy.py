"""Wall-clock and steps for uniform and reducible_loss to reach the uniform run's final validation
accuracy, per seed, through the real pipeline (the same code run.py runs).

    python benchmarks/time_to_accuracy.py [--experiment fmnist_noisy_mlp] [--seeds 0 1 2] [overrides ...]

The IL stage runs once first and is reported separately: one store serves every target run. Target
runs alternate uniform / reducible_loss per seed, so drifts in machine load hit both alike. Seconds
are those of the run's validation curve (training time since fit started, validation passes
included). Prints a Markdown table and writes benchmarks/results/time_to_accuracy.json.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rholoss.analysis import markdown_table, metric_of
from rholoss.analysis.summary import first_reaching
from rholoss.atomic import atomic_write_json
from rholoss.configs import compose_config
from rholoss.pipelines import train, train_irreducible

QUIET = ["trainer.enable_progress_bar=false", "callbacks=none"]
METHODS = ("uniform", "reducible_loss")


def config(name: str, root: Path, output: str, overrides: list[str]) -> DictConfig:
    return compose_config(name, [*QUIET, f"paths.root_dir={root}", f"paths.output_dir={root / output}", *overrides])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="fmnist_noisy_mlp")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=Path(__file__).parent / "results" / "time_to_accuracy")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "time_to_accuracy.json")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both stages, e.g. trainer.max_steps=500")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)  # keep the table readable
    warnings.filterwarnings("ignore")
    common = [f"experiment={args.experiment}", *args.overrides]

    il = train_irreducible(config("train_irreducible", args.root, "il", common))
    runs: dict[int, dict[str, dict[str, Any]]] = {}
    for seed in args.seeds:
        runs[seed] = {
            method: train(
                config("train", args.root, f"{method}-{seed}", [*common, f"selection={method}", f"seed={seed}"])
            )
            for method in METHODS
        }

    metric = metric_of([r for by_method in runs.values() for r in by_method.values()])
    rows = []
    for seed, by_method in runs.items():
        target = by_method["uniform"]["val_curve"][-1][1]
        for method, result in by_method.items():
            reached = first_reaching(result["val_curve"], target, metric)
            rows.append(
                {
                    "seed": seed,
                    "method": method,
                    "target": target,
                    "steps_to_target": reached[0] if reached else None,
                    "seconds_to_target": round(reached[1], 2) if reached else None,
                    f"best_val_{metric.short}": result[f"best_val_{metric.short}"],
                    f"test_{metric.short}": result[f"test_{metric.short}"],
                    "wall_seconds": result["wall_seconds"],
                    "steps": result["steps"],
                }
            )
    faster = {seed: _seconds(rows, seed, "reducible_loss") < _seconds(rows, seed, "uniform") for seed in args.seeds}
    summary = {
        "experiment": args.experiment,
        "overrides": args.overrides,
        "il_stage": {
            "wall_seconds": il["wall_seconds"],
            f"val_{metric.short}": il[f"val_{metric.short}"],
            "steps": il["steps"],
        },
        "rows": rows,
        "reducible_loss_faster_every_seed": all(faster.values()),
        "median_seconds_to_target": {m: statistics.median(_seconds(rows, s, m) for s in args.seeds) for m in METHODS},
    }
    atomic_write_json(summary, args.output)

    short = metric.short
    print(
        f"{args.experiment}: time to the uniform run's final val {metric.label} (same seed); IL stage "
        f"{il['wall_seconds']:.1f} s once (val {short} {il[f'val_{short}']:.4f}), not included below\n"
    )
    header = [
        "seed",
        "method",
        f"target val {short}",
        "steps to target",
        "seconds to target",
        "run seconds",
        f"test {short}",
    ]
    print(
        markdown_table(
            header,
            [
                [
                    row["seed"],
                    row["method"],
                    f"{row['target']:.4f}",
                    _show(row["steps_to_target"]),
                    _show(row["seconds_to_target"]),
                    f"{row['wall_seconds']:.1f}",
                    f"{row[f'test_{short}']:.4f}",
                ]
                for row in rows
            ],
        )
    )
    medians = summary["median_seconds_to_target"]
    print(
        f"\nmedian seconds to target: uniform {medians['uniform']:.1f}, reducible_loss "
        f"{medians['reducible_loss']:.1f}; reducible_loss faster on every seed: {summary['reducible_loss_faster_every_seed']}"
    )


def _seconds(rows: list[dict[str, Any]], seed: int, method: str) -> float:
    row = next(r for r in rows if r["seed"] == seed and r["method"] == method)
    return row["seconds_to_target"] if row["seconds_to_target"] is not None else float("inf")


def _show(value: Any) -> str:
    return "never" if value is None else str(value)


if __name__ == "__main__":
    main()
