"""Language models on the interpreter's standard-library source with 20% token noise: steps (and tokens)
to uniform's best val loss, the share of noise tokens trained on, and each method's step cost, through
the real pipeline (experiments code_lm_irred / code_lm_main).

    python benchmarks/language_models.py [--seeds 0 1 2] [--methods uniform token_reducible_loss reducible_loss]
                                         [overrides ...]

The IL stage runs once first. Target runs alternate methods per seed, so drifts in machine load hit all
alike. Step cost: the median step time of each run (validation left out; ``median_step_seconds`` in its
results), as a ratio to uniform's on the same seed; for sequence-level selection also against its floor,
a uniform step plus one inference forward pass over the n_B windows it scores. Prints Markdown tables,
writes the JSON and the val-loss-vs-steps figure under benchmarks/results/language_models/.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

from hydra.utils import instantiate

from rholoss.analysis import markdown_table, speedup_markdown, summarize
from rholoss.analysis.plots import accuracy_vs_steps
from rholoss.atomic import atomic_write_json
from rholoss.models.factory import build_model_for
from rholoss.pipelines import train, train_irreducible
from rholoss.selection.step import selection_forward
from rholoss.tasks import LanguageModeling
from time_to_accuracy import config

RESULTS = Path(__file__).parent / "results" / "language_models"


def forward_seconds(cfg: Any, repeats: int = 7) -> float:
    """Median seconds of one inference forward pass over n_B windows: what sequence-level selection adds."""
    datamodule = instantiate(cfg.datamodule)
    datamodule.setup()
    task = LanguageModeling().fit_to(datamodule)
    model = build_model_for(cfg.model, datamodule, task)
    _, x, _ = next(iter(datamodule.train_dataloader()))
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        selection_forward(model, x)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["uniform", "token_reducible_loss", "reducible_loss"])
    parser.add_argument("--root", type=Path, default=RESULTS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both stages, e.g. trainer.max_steps=300")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    started = time.perf_counter()
    il = train_irreducible(config("train_irreducible", args.root, "il", ["experiment=code_lm_irred", *args.overrides]))
    runs = [
        train(
            config(
                "train",
                args.root,
                f"runs/{method}-{seed}",
                ["experiment=code_lm_main", f"selection={method}", f"seed={seed}", *args.overrides],
            )
        )
        for seed in args.seeds
        for method in args.methods
    ]
    total_seconds = time.perf_counter() - started
    for run, (seed, method) in zip(runs, [(s, m) for s in args.seeds for m in args.methods], strict=True):
        run["path"] = str(args.root / "runs" / f"{method}-{seed}")
    summary = summarize(runs)

    cost = {r["seed"]: {} for r in runs}
    for run in runs:
        cost[run["seed"]][run["selection"]] = run["median_step_seconds"]
    scored = config("train", args.root, "forward", ["experiment=code_lm_main", *args.overrides])
    forward = forward_seconds(scored)
    rows = []
    for method in args.methods:
        ratios = [cost[s][method] / cost[s]["uniform"] for s in args.seeds]
        floor = [(cost[s]["uniform"] + forward) for s in args.seeds]
        methods = summary["methods"][method]
        tokens = statistics.mean(r["tokens_trained"] / r["steps"] for r in runs if r["selection"] == method)
        steps = methods["to_target"]["curve_steps"]
        rows.append(
            {
                "method": method,
                "median_step_seconds": statistics.median(cost[s][method] for s in args.seeds),
                "step_cost_vs_uniform": statistics.median(ratios),
                "step_cost_vs_floor": None
                if method != "reducible_loss"
                else statistics.median(cost[s][method] / f for s, f in zip(args.seeds, floor, strict=True)),
                "steps_to_target": steps,
                "tokens_to_target": None if steps is None else round(steps * tokens),
                "noisy_selected_fraction": methods["noisy_selected_fraction"],
            }
        )
    output = {
        "il_stage": {"wall_seconds": il["wall_seconds"], "val_loss": il["val_loss"], "steps": il["steps"]},
        "forward_seconds_over_n_B": forward,
        "total_seconds": round(total_seconds, 1),
        "summary": {k: v for k, v in summary.items() if k != "methods"},
        "rows": rows,
        "runs": [
            {
                k: r[k]
                for k in (
                    "selection",
                    "seed",
                    "val_curve",
                    "test_loss",
                    "tokens_trained",
                    "noisy_selected_fraction",
                    "median_step_seconds",
                    "wall_seconds",
                )
            }
            for r in runs
        ],
    }
    atomic_write_json(output, args.root / "language_models.json")
    figure = accuracy_vs_steps(summary, args.root)

    print(
        f"IL stage {il['wall_seconds']:.0f} s (val loss {il['val_loss']:.3f}); IL + {len(runs)} target runs: "
        f"{total_seconds:.0f} s\n"
    )
    print(speedup_markdown(summary), "\n")
    print(
        markdown_table(
            [
                "method",
                "median step (ms)",
                "step cost vs uniform",
                "vs floor (uniform + forward over n_B)",
                "steps to target",
                "tokens to target",
                "noise tokens trained on",
            ],
            [
                [
                    r["method"],
                    f"{1000 * r['median_step_seconds']:.1f}",
                    f"{r['step_cost_vs_uniform']:.3f}x",
                    "–" if r["step_cost_vs_floor"] is None else f"{r['step_cost_vs_floor']:.3f}x",
                    "never" if r["steps_to_target"] is None else r["steps_to_target"],
                    "never" if r["tokens_to_target"] is None else f"{r['tokens_to_target']:,}",
                    f"{r['noisy_selected_fraction']['mean']:.3f}",
                ]
                for r in rows
            ],
        )
    )
    print(f"\nforward over n_B windows: {1000 * forward:.0f} ms; figure: {figure[0]}")


if __name__ == "__main__":
    main()
