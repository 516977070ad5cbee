"""The command lines of both stages and of the analysis: the console scripts ``rholoss-train``,
``rholoss-irreducible`` and ``rholoss-analysis`` (``pip install .``), ``python -m rholoss <stage>``,
and the checkout's ``run.py`` / ``run_irreducible.py``, which only call these functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import hydra
from omegaconf import DictConfig

from rholoss.configs import SEARCH_PATH

Stage = Literal["train", "irreducible", "analysis"]
# How each way of starting rholoss names each stage, so a message that tells the user what to run
# next names it the way they started this one.
_COMMANDS: dict[str, dict[Stage, str]] = {
    "console script": {"train": "rholoss-train", "irreducible": "rholoss-irreducible", "analysis": "rholoss-analysis"},
    "module": {
        "train": "python -m rholoss train",
        "irreducible": "python -m rholoss irreducible",
        "analysis": "python -m rholoss analysis",
    },
    "checkout": {
        "train": "python run.py",
        "irreducible": "python run_irreducible.py",
        "analysis": "python -m rholoss.analysis",
    },
}


def stage_command(stage: Stage) -> str:
    """The command that starts ``stage``, in the form this process was started with: the console
    script, ``python -m rholoss``, or (from a checkout, a test or a notebook) the checkout's script."""
    launched = Path(sys.argv[0])
    if launched.name.startswith("rholoss-"):
        form = "console script"
    elif launched.name == "__main__.py" and launched.parent.name == "rholoss":
        form = "module"
    else:
        form = "checkout"
    return _COMMANDS[form][stage]


@hydra.main(version_base="1.3", config_path=SEARCH_PATH, config_name="train")
def train(cfg: DictConfig) -> None:
    """Stage two: target training with online batch selection (``rholoss-train [experiment=...]``)."""
    # Imported here so --help and config errors are instant.
    from rholoss.pipelines import train as train_target
    from rholoss.sweep import run_job

    run_job(train_target, cfg)  # in a multirun, a failing job is recorded and the others go on


@hydra.main(version_base="1.3", config_path=SEARCH_PATH, config_name="train_irreducible")
def irreducible(cfg: DictConfig) -> None:
    """Stage one: the IL model and the IL store (``rholoss-irreducible [experiment=...]``)."""
    from rholoss.pipelines import train_irreducible
    from rholoss.sweep import run_job

    run_job(train_irreducible, cfg)


def analysis(argv: list[str] | None = None) -> None:
    """Tables and figures from a run or sweep folder (``rholoss-analysis FOLDER``)."""
    from rholoss.analysis.__main__ import main

    main(argv)
