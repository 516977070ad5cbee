"""rholoss: prioritized training with RHO-LOSS and the selection functions it is compared with."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rholoss")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
