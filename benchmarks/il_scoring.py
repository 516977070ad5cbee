"""IL scoring throughput with 1 and W processes side by side: points per second of stage one's pool
scoring alone, the IL model trained once.

    python benchmarks/il_scoring.py [--processes 2] [--repeats 3] [overrides ...]

The IL stage runs once on one process (training and scoring). Then the same trained run is resumed,
alternately on 1 process and on W DDP processes (gloo on CPU, one thread each; ``--accelerator gpu`` for
one GPU per process), into a fresh cache each time: training is already finished, so each run only
scores the pool, shard by shard (``irreducible.shard_size``). Its ``scoring_seconds`` are timed by the
pipeline. Prints a Markdown table (median over repeats) and writes benchmarks/results/il_scoring.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["trainer.enable_progress_bar=false", "callbacks=none"]


def irreducible(root: Path, output: str, *overrides: str, threads: int) -> dict:
    env = {**os.environ, "RHOLOSS_ROOT": str(root), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(
        [sys.executable, "-m", "rholoss", "irreducible", *QUIET, *overrides, f"hydra.run.dir={root / output}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"run_irreducible failed:\n{done.stderr[-3000:]}")
    return json.loads((root / output / "results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--root", type=Path, default=Path(__file__).parent / "results" / "il_scoring")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "il_scoring.json")
    parser.add_argument("overrides", nargs="*", default=["experiment=fmnist_noisy_mlp", "irreducible.shard_size=5000"])
    args = parser.parse_args()
    base = [*args.overrides, "checkpoint.every_n_steps=100000000"]
    trained = irreducible(args.root, "trained", *base, f"trainer.accelerator={args.accelerator}", threads=1)
    pool = sum(trained["scored_by_rank"])
    layouts = {1: [f"trainer.accelerator={args.accelerator}", "trainer.devices=1"]}
    layouts[args.processes] = [
        "trainer=ddp",
        f"trainer.accelerator={args.accelerator}",
        f"trainer.devices={args.processes}",
    ]
    seconds: dict[int, list[float]] = {n: [] for n in layouts}
    for repeat in range(args.repeats):
        for processes, trainer in layouts.items():  # A/B interleaved: load drifts hit both alike
            name = f"p{processes}-r{repeat}"
            result = irreducible(
                args.root,
                name,
                *base,
                *trainer,
                f"resume={args.root / 'trained'}",
                f"paths.cache_dir={args.root / 'cache' / name}",
                threads=1,
            )
            assert sum(result["scored_by_rank"]) == pool and result["resumed_points"] == 0
            seconds[processes].append(result["scoring_seconds"])
    one = statistics.median(seconds[1])
    print(f"\nIL scoring of a pool of {pool} points ({' '.join(args.overrides)}), median of {args.repeats}:\n")
    print("| processes | scoring s | points/s | speed-up |")
    print("|---|---|---|---|")
    for processes, values in seconds.items():
        median = statistics.median(values)
        print(f"| {processes} | {median:.2f} | {pool / median:.0f} | {one / median:.2f}x |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"pool": pool, "seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
