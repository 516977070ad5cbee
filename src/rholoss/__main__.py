"""python -m rholoss {train,irreducible,analysis} [arguments]: the console scripts, for an
environment whose scripts folder is not on PATH."""

from __future__ import annotations

import os
import sys

from rholoss import cli

_STAGES = {"train": cli.train, "irreducible": cli.irreducible, "analysis": cli.analysis}
# The stage, for the processes Lightning's DDP starts again from this module with the same arguments
# as this one (after the stage was taken off them): they inherit the environment.
_STAGE_VARIABLE = "RHOLOSS_CLI_STAGE"


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] in _STAGES:
        os.environ[_STAGE_VARIABLE] = sys.argv.pop(1)
    elif os.environ.get(_STAGE_VARIABLE) not in _STAGES:
        raise SystemExit(f"usage: python -m rholoss {{{','.join(_STAGES)}}} [arguments]  (-h after one for its help)")
    _STAGES[os.environ[_STAGE_VARIABLE]]()  # reads the rest of sys.argv, as its console script does


if __name__ == "__main__":
    main()
