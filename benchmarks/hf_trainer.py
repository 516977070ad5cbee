"""The noisy code corpus through the Hugging Face Trainer (rholoss.integrations.transformers) beside the
Lightning pipeline: same windows, same per-token IL store, same model and optimizer settings; the share
of noise among the tokens each trains on, uniform against token-level RHO (RHO-1).

    python benchmarks/hf_trainer.py [--seeds 0 1 2] [overrides ...]

Runs the IL stage once (experiment code_lm_irred), then per seed uniform and token_reducible_loss
through both paths (experiment code_lm_main: n_b = percent_train * large_batch_size windows a step).
Prints a Markdown table and writes benchmarks/results/hf_trainer.json.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import warnings
from pathlib import Path

from rholoss.analysis import markdown_table
from rholoss.atomic import atomic_write_json
from rholoss.integrations.corpus import corpus_trainer
from rholoss.pipelines import train, train_irreducible
from time_to_accuracy import config

RESULTS = Path(__file__).parent / "results"
METHODS = ("uniform", "token_reducible_loss")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=RESULTS / "hf_trainer")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both stages, e.g. trainer.max_steps=300")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    il = train_irreducible(config("train_irreducible", args.root, "il", ["experiment=code_lm_irred", *args.overrides]))
    runs = []
    for seed in args.seeds:
        for method in METHODS:
            overrides = ["experiment=code_lm_main", f"selection={method}", f"seed={seed}", *args.overrides]
            lightning = train(config("train", args.root, f"lightning/{method}-{seed}", overrides))
            cfg = config("train", args.root, f"hf/{method}-{seed}", overrides)
            hf = {**corpus_trainer(cfg, il["il_store"]).train().metrics, "selection": method, "seed": seed}
            runs.append({"selection": method, "seed": seed, "lightning": lightning, "hf": hf})
    rows = []
    for method in METHODS:
        mine = [run for run in runs if run["selection"] == method]
        rows.append(
            {
                "method": method,
                "lightning_noise_share": statistics.mean(r["lightning"]["noisy_selected_fraction"] for r in mine),
                "hf_noise_share": statistics.mean(r["hf"]["noisy_selected_fraction"] for r in mine),
                "lightning_tokens_trained": statistics.mean(r["lightning"]["tokens_trained"] for r in mine),
                "hf_tokens_trained": statistics.mean(r["hf"]["tokens_trained"] for r in mine),
            }
        )
    atomic_write_json({"rows": rows, "runs": runs}, RESULTS / "hf_trainer.json")
    print(
        markdown_table(list(rows[0]), ([f"{v:.4g}" if isinstance(v, float) else v for v in r.values()] for r in rows))
    )


if __name__ == "__main__":
    main()
