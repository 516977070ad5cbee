"""One rank of the two-process Trainer run of tests/integrations/test_transformers.py (started by torch.distributed.run):
the gradient-accumulation test's data and model, token-level selection, each rank's masks and final
weights saved to ``<out>/rank<r>.pt``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from tests.integrations.test_transformers import token_run


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    trainer, model = token_run(out, batch=4, accumulation=1)
    payload = {"recorded": trainer.recorded, "params": [p.detach() for p in model.parameters()]}  # type: ignore[attr-defined]
    torch.save({**payload, "results": trainer.selection_results()}, out / f"rank{trainer.accelerator.process_index}.pt")


if __name__ == "__main__":
    main()
