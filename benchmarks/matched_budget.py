"""Matched budgets against the strongest cheap baseline: for each budget (optimizer steps), uniform
selection with its learning rate decayed to zero at exactly that budget, trained on every labelled point
(pool plus holdout), is the baseline; every other method trains for the same number of steps with its
own schedule. All runs go through the real pipelines (both stages, the configs run.py composes).

    python benchmarks/matched_budget.py [--noise 0.0 0.1 0.3] [--budgets 1500 6000] [--seeds 0 1 2]
        [--methods reducible_loss/cosine reducible_loss_proxy/cosine reducible_loss_paper/constant]
        [--all-points] [--il-overrides trainer.max_steps=1000] [overrides ...]
    python benchmarks/matched_budget.py --experiment code_lm_main --noise-key datamodule.token_noise \\
        --noise 0.2 --budgets 600 --seeds 0 1 2 --baseline uniform/warmup_cosine+holdout \\
        --methods token_reducible_loss/warmup_cosine reducible_loss/warmup_cosine

A method is ``<selection>/<scheduler>``, ``+holdout`` added for training on pool plus holdout
(content-blind methods only: an IL model trained on the holdout cannot score it), then, separated by
spaces in the same argument, any Hydra overrides of that method's runs alone (a variant:
``"reducible_loss/cosine large_batch_size=320 selection.percent_train=0.2"``). ``--all-points`` trains
every method on pool plus holdout, as the baseline, with IL from two models trained on its halves. Per
noise level the IL stage runs once (its settings: train_irreducible.yaml, the experiment's own IL recipe
``<experiment>_irred`` where there is one (``code_lm_irred`` for ``code_lm_main``) or ``--il-experiment``,
and ``--il-overrides``, e.g. a smaller, cheaper IL model) and serves every method that needs it, at every
budget and seed. Per budget the script prints a Markdown table: best and final test value (mean and
range over seeds), training wall-clock alone and per step against the baseline's, with the IL stage
counted and with it amortised over the runs sharing the store, and the steps and seconds (IL counted)
to reach the baseline's mean final test value, with the step cost at which a method would tie there and
the seconds its IL stage may take. With several budgets, one more table sets every method at every
budget against the strongest baseline's final (the budget whose baseline ends best): a method that
learns faster may reach it at a smaller budget, its own schedule decayed there, in less time. Test
values come from a test pass after every validation, whose time is left out of every clock. Writes
benchmarks/results/matched_budget.json and one figure per noise level,
benchmarks/figures/matched_budget_<experiment>_noise<level>.png (metric vs wall-clock).
"""

from __future__ import annotations

import argparse
import logging
import re
import warnings
from pathlib import Path
from typing import Any

from rholoss.analysis.matched_budget import (
    across_budgets_markdown,
    budget_markdown,
    run_record,
    summarize_across_budgets,
    summarize_budget,
)
from rholoss.analysis.plots import metric_vs_seconds
from rholoss.atomic import atomic_write_json
from rholoss.configs import compose_config
from rholoss.pipelines import irreducible_experiment, train, train_irreducible
from rholoss.selection import get_selection
from time_to_accuracy import config

HERE = Path(__file__).resolve().parent
BASELINE = "uniform/cosine+holdout"
METHODS = ("reducible_loss/cosine", "reducible_loss_proxy/cosine", "reducible_loss_paper/constant")
# --all-points: every run trains on pool plus holdout (the IL stage then scores it in two halves).
ALL_POINTS = ["datamodule.pool_includes_holdout=true"]
# Every run: the test curve, and no periodic checkpoints (their writing is not training).
RUN = ["+callbacks.test_curve._target_=rholoss.callbacks.TestCurve", "checkpoint.every_n_steps=null"]


def method_overrides(method: str) -> tuple[list[str], bool]:
    """The overrides of ``<selection>/<scheduler>[+holdout] [override ...]``, and whether it needs an IL
    store."""
    name, *variant = method.split()
    spec, _, extra = name.partition("+")
    selection, slash, scheduler = spec.partition("/")
    if not slash or extra not in ("", "holdout"):
        raise ValueError(f"A method is <selection>/<scheduler>[+holdout], e.g. reducible_loss/cosine; got {method!r}.")
    # A selection config may be a named variant of a rule (reducible_loss_annealed): the rule it names.
    needs_il = get_selection(str(compose_config("train", [f"selection={selection}"]).selection.name)).needs_irreducible
    if extra and needs_il:
        raise ValueError(
            f"{method}: an IL model trained on the holdout cannot score the holdout; +holdout is for methods "
            "that need no IL model (uniform)."
        )
    overrides = [f"selection={selection}", f"scheduler={scheduler}"]
    return overrides + (["datamodule.pool_includes_holdout=true"] if extra else []) + variant, needs_il


def run_folder(method: str) -> str:
    """A method's run folder name: its spec with what a path should not hold replaced."""
    return re.sub(r"[^\w.+-]+", "-", method)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="fmnist_noisy_mlp")
    parser.add_argument(
        "--il-experiment",
        help="the IL stage's experiment (default: the experiment's own IL recipe, <name>_irred, if any)",
    )
    parser.add_argument("--noise-key", default="datamodule.label_noise", help="what --noise sets (token_noise)")
    parser.add_argument("--baseline", default=BASELINE, help="uniform/warmup_cosine+holdout for language models")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.1, 0.3], help="values of --noise-key")
    parser.add_argument("--budgets", type=int, nargs="+", default=[1500, 6000], help="trainer.max_steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="besides the baseline")
    parser.add_argument("--root", type=Path, default=HERE / "results" / "matched_budget")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "matched_budget.json")
    parser.add_argument("--figures", type=Path, default=HERE / "figures")
    parser.add_argument(
        "--all-points",
        action="store_true",
        help="every method trains on pool plus holdout, as the baseline, scored by two IL models trained on "
        "halves of it (irreducible.strategy=two_halves)",
    )
    parser.add_argument(
        "--il-overrides",
        nargs="+",
        default=[],
        metavar="OVERRIDE",
        help="Hydra overrides for the IL stage alone (its model, steps, batch size)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both stages (not trainer.max_steps)")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)  # keep the tables readable
    warnings.filterwarnings("ignore")
    baseline = args.baseline
    methods = [baseline, *(m for m in args.methods if m != baseline)]
    specs = {method: method_overrides(method) for method in methods}

    report: dict[str, Any] = {
        "experiment": args.experiment,
        "overrides": args.overrides,
        "il_overrides": args.il_overrides,
        "all_points": args.all_points,
        "noise": {},
    }
    for noise in args.noise:
        common = [f"{args.noise_key}={noise}", *(ALL_POINTS if args.all_points else []), *args.overrides]
        target = [f"experiment={args.experiment}", *common]
        il_common = [
            f"experiment={args.il_experiment or irreducible_experiment(args.experiment)}",
            *common,
            *args.il_overrides,
        ]
        if args.all_points:
            il_common.append("irreducible.strategy=two_halves")
        folder = args.root / f"noise{noise}"
        il = train_irreducible(config("train_irreducible", folder, "il", il_common))
        il_runs = sum(needs_il for _, needs_il in specs.values()) * len(args.budgets) * len(args.seeds)
        summaries, records = {}, {}
        for budget in args.budgets:
            runs = records[budget] = []
            for seed in args.seeds:  # methods alternate within a seed, so drifts in machine load hit all alike
                for method, (overrides, needs_il) in specs.items():
                    output = f"budget{budget}/{run_folder(method)}-seed{seed}"
                    run = [*target, *RUN, *overrides, f"trainer.max_steps={budget}", f"seed={seed}"]
                    train(config("train", folder, output, run))
                    runs.append(run_record(folder / output, method, needs_il))
            summaries[budget] = summarize_budget(runs, baseline, il["wall_seconds"], il_runs)
            _print_budget(baseline, args.experiment, noise, budget, il, il_runs, summaries[budget])
        across = None
        if len(summaries) > 1:
            across = summarize_across_budgets(summaries, records)
            print(
                f"\n### {args.experiment}, noise {noise:.0%}: every budget against the strongest baseline "
                f"({across['budget']} steps)\n"
            )
            print(across_budgets_markdown(across))
        name = f"matched_budget_{args.experiment}_noise{noise}"
        panels = {f"{noise:.0%} noise, {budget} steps": summary for budget, summary in summaries.items()}
        figures = metric_vs_seconds(panels, args.figures, name)
        report["noise"][str(noise)] = {
            "il_stage": {"wall_seconds": il["wall_seconds"], "val_metric": _il_metric(il), "shared_by": il_runs},
            "budgets": {str(budget): summary for budget, summary in summaries.items()},
            "across_budgets": across,
            "figures": [str(path) for path in figures],
        }
        atomic_write_json(report, args.output)  # after each noise level: a long run keeps what it has
    print(f"\nResults: {args.output}; figures in {args.figures}")


def _il_metric(il: dict[str, Any]) -> tuple[str, float] | None:
    """The IL model's validation metric in its results (val_acc, val_loss, ...)."""
    return next(((k, v) for k, v in il.items() if k.startswith("val_") and isinstance(v, float)), None)


def _print_budget(
    baseline: str, experiment: str, noise: float, budget: int, il: dict[str, Any], il_runs: int, summary: dict[str, Any]
) -> None:
    seeds = len(next(iter(summary["methods"].values()))["seeds"])
    metric = _il_metric(il)
    quality = f" ({metric[0].replace('_', ' ')} {metric[1]:.4f})" if metric else ""
    print(
        f"\n### {experiment}, noise {noise:.0%}, {budget} steps ({seeds} seed{'s' if seeds > 1 else ''})\n\n"
        f"Baseline: {baseline} (uniform, its learning rate decayed to zero at {budget} steps, pool plus holdout). "
        f"IL stage {il['wall_seconds']:.1f} s{quality}, amortised over the {il_runs} runs here that use it.\n"
    )
    print(budget_markdown(summary))


if __name__ == "__main__":
    main()
