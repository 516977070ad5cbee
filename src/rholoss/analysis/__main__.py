"""rholoss-analysis <run or sweep folder> [--output DIR] [--targets 0.8,0.85] [--wandb]
(also python -m rholoss.analysis)

Prints the speedup table (Markdown) and writes summary.json, summary.md and the figures (PNG + PDF)
into <folder>/analysis unless --output says otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rholoss.analysis.report import analyze, log_to_wandb
from rholoss.cli import stage_command
from rholoss.loggers import require_package


def _accuracies(text: str) -> list[float]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"--targets takes accuracies in (0, 1], comma-separated; got {text!r}.")
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=stage_command("analysis"), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="a target run or sweep folder (searched recursively)")
    parser.add_argument(
        "--output", type=Path, help="where summary.json and the figures go (default: <folder>/analysis)"
    )
    parser.add_argument("--targets", type=_accuracies, help="target accuracies for steps-vs-target, e.g. 0.8,0.85")
    parser.add_argument("--no-figures", action="store_true", help="tables and summary.json only")
    parser.add_argument(
        "--wandb", action="store_true", help="also log figures and table to wandb (offline unless WANDB_MODE)"
    )
    args = parser.parse_args(argv)

    try:
        if args.wandb:  # checked before the figures are drawn
            require_package("wandb", "wandb", "--wandb")
        summary = analyze(args.folder, args.output, args.targets, figures=not args.no_figures)
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    print(summary["markdown"])
    output = args.output or args.folder / "analysis"
    print(f"\nSummary: {output / 'summary.json'}")
    for name, paths in summary["figures"].items():
        print(f"Figure {name}: {', '.join(paths)}")
    if args.wandb:
        print(f"wandb run: {log_to_wandb(summary, directory=output)}")


if __name__ == "__main__":
    main()
