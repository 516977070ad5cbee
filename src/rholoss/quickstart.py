"""The whole pipeline in one command, offline on a CPU in a few minutes:

    python -m rholoss.quickstart

trains the IL model on the holdout split of Fashion-MNIST (10% label noise on the pool), writes the
IL store, trains the target model with each method (a Hydra multirun) and prints a table of the
results, each stage run as ``python -m rholoss <stage>`` (the console scripts' code) in its own
process, from the current folder. Extra arguments are passed to both stages as Hydra overrides.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from rholoss.analysis import load_results, method_table
from rholoss.pipelines.parts import irreducible_experiment


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("outputs/quickstart"), help="where the runs go")
    parser.add_argument("--experiment", default="fmnist_noisy_mlp")
    parser.add_argument("--methods", default="uniform,reducible_loss", help="comma-separated selection names")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both stages, e.g. seed=1")
    args = parser.parse_args(argv)

    output = args.output.resolve()
    store = output / "irreducible" / "il_store.pt"
    common = [f"irreducible.path={store}", *args.overrides]
    il_experiment = irreducible_experiment(args.experiment)  # the IL model's own recipe where it has one
    started = time.perf_counter()
    stages = [
        ["irreducible", f"experiment={il_experiment}", *common, f"hydra.run.dir={output / 'irreducible'}"],
        [
            "train",
            "-m",
            f"experiment={args.experiment}",
            *common,
            f"selection={args.methods}",
            f"hydra.sweep.dir={output / 'targets'}",
        ],
    ]
    for stage in stages:
        print("$ python -m rholoss", " ".join(stage), flush=True)
        subprocess.run([sys.executable, "-m", "rholoss", *stage], check=True)

    il = json.loads((output / "irreducible" / "results.json").read_text())
    print(f"\nIL model: val accuracy {il['val_acc']:.4f}, store {il['il_store']}")
    print(f"Runs in {output} ({time.perf_counter() - started:.0f} s in all)\n")
    print(method_table(load_results(output / "targets")))


if __name__ == "__main__":
    main()
