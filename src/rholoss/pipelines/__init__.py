"""The two stages, as functions of a composed Hydra config: what run_irreducible.py and run.py call.

Every check that can fail on bad input (names, sizes, data, IL store) runs before training starts,
so a mistake costs seconds, not a run. One module a stage (:mod:`~rholoss.pipelines.irreducible`,
:mod:`~rholoss.pipelines.target`), built from the same parts (:mod:`~rholoss.pipelines.parts`).
"""

from rholoss.models.factory import build_model
from rholoss.pipelines.irreducible import IL_STRATEGIES, train_irreducible
from rholoss.pipelines.parts import code_version, irreducible_command, irreducible_experiment, irreducible_overrides
from rholoss.pipelines.target import train

__all__ = [
    "IL_STRATEGIES",
    "build_model",
    "code_version",
    "irreducible_command",
    "irreducible_experiment",
    "irreducible_overrides",
    "train",
    "train_irreducible",
]
