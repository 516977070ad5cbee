"""python -m rholoss {train,irreducible,analysis} [arguments]: the console scripts, for an
environment whose scripts folder is not on PATH."""

from __future__ import annotations

import sys

from rholoss import cli

_STAGES = {"train": cli.train, "irreducible": cli.irreducible, "analysis": cli.analysis}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in _STAGES:
        raise SystemExit(f"usage: python -m rholoss {{{','.join(_STAGES)}}} [arguments]  (-h after one for its help)")
    stage = _STAGES[sys.argv.pop(1)]
    stage()  # reads the rest of sys.argv, as its console script does


if __name__ == "__main__":
    main()
