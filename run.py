"""Target training with online batch selection: python run.py [experiment=...] [selection=...]
(the same as ``rholoss-train``; the configs are the package's, src/rholoss/configs)."""

from rholoss.cli import train

if __name__ == "__main__":
    train()
