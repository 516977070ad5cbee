"""``python -m rholoss.irreducible export STORE OUT.parquet``: an IL store as a table any tool reads.

Reading one back needs no command: ``irreducible.path=il.parquet`` joins a table ``(id, il)`` with the
pool by sample id.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rholoss.irreducible.exchange import export_store


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rholoss.irreducible", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser(
        "export", help="write a store as parquet (per point) or .npy + parquet index (per token)"
    )
    export.add_argument("store", type=Path)
    export.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    for path in export_store(args.store, args.out):
        print(path)


if __name__ == "__main__":
    main()
