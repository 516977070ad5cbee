"""Irreducible loss model training and IL store: python run_irreducible.py [experiment=...]
(the same as ``rholoss-irreducible``; the configs are the package's, src/rholoss/configs)."""

from rholoss.cli import irreducible

if __name__ == "__main__":
    irreducible()
