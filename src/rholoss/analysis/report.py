"""A run or sweep folder in, the paper's table and figures out: what ``python -m rholoss.analysis`` does."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rholoss.analysis.plots import draw_all
from rholoss.analysis.summary import speedup_markdown, summarize, targets_markdown
from rholoss.analysis.tables import load_results
from rholoss.atomic import atomic_write_json, atomic_write_text
from rholoss.loggers import require_package
from rholoss.sweep import failed_jobs


def analyze(
    folder: Path, output: Path | None = None, targets: Sequence[float] | None = None, figures: bool = True
) -> dict[str, Any]:
    """Read every target run under ``folder``; write ``summary.json``, ``summary.md`` and the
    figures into ``output`` (default ``<folder>/analysis``); return the summary, its Markdown
    under ``markdown`` and the figure files under ``figures``."""
    folder = Path(folder)
    output = Path(output) if output is not None else folder / "analysis"
    runs = load_results(folder)
    if not runs:
        raise FileNotFoundError(
            f"No target run's results.json under {folder}: point to a run.py run or sweep folder "
            "(outputs/target/multirun/<date> by default)."
        )
    summary = summarize(runs, targets)
    summary["folder"] = str(folder)
    summary["failed"] = [{k: f.get(k) for k in ("path", "selection", "seed", "error")} for f in failed_jobs(folder)]
    sections = [speedup_markdown(summary), "Steps to each target value (mean over seeds):", targets_markdown(summary)]
    if summary["failed"]:
        sections.append("Failed jobs:\n" + "\n".join(f"- {f['path']}: {f['error']}" for f in summary["failed"]))
    summary["markdown"] = "\n\n".join(sections)
    summary["figures"] = draw_all(summary, output) if figures else {}
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(summary, output / "summary.json")
    atomic_write_text(summary["markdown"] + "\n", output / "summary.md")
    return summary


def log_to_wandb(summary: dict[str, Any], project: str = "rholoss", directory: Path | None = None) -> Path:
    """Log the figures and the speedup table as one wandb run (job type ``analysis``), offline unless
    ``WANDB_MODE`` says otherwise; return the run's folder (``wandb sync`` it later when offline)."""
    require_package("wandb", "wandb", "Logging the analysis to W&B")
    import wandb

    directory = Path(directory or Path(summary["folder"]) / "analysis")
    run = wandb.init(
        project=project,
        job_type="analysis",
        name=f"analysis-{Path(summary['folder']).name}",
        dir=str(directory),
        mode=os.environ.get("WANDB_MODE", "offline"),  # type: ignore[arg-type]  # a plain str: wandb checks it
        config={
            "folder": summary["folder"],
            "metric": summary["metric"],
            "mode": summary["mode"],
            "target": summary["target"],
        },
    )
    columns: list[str | int] = ["method", "seeds", "steps_to_target", "speedup", "wall_clock_speedup", "test_mean"]
    rows = [
        [name, len(m["seeds"]), m["to_target"]["curve_steps"], m["speedup"], m["wall_clock_speedup"], m["test"]["mean"]]
        for name, m in summary["methods"].items()
    ]
    images = {f"figures/{name}": wandb.Image(paths[0]) for name, paths in summary["figures"].items()}
    run.log({"speedup_table": wandb.Table(columns=columns, data=rows), **images})
    run_dir = Path(run.dir).parent
    run.finish()
    return run_dir
