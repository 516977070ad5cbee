"""Irreducible losses: the store formats (per point, per token), where stores live, and one source
interface over both (:class:`IrreducibleLosses`) for the methods that read them."""

from rholoss.irreducible.source import IrreducibleLosses, irreducible_losses, open_irreducible, store_writer
from rholoss.irreducible.store import IrreducibleLossStore, PointLossWriter, StoreError, find_store, store_path
from rholoss.irreducible.token_store import TokenLossStore, TokenLossWriter

__all__ = [
    "IrreducibleLossStore",
    "IrreducibleLosses",
    "PointLossWriter",
    "StoreError",
    "TokenLossStore",
    "TokenLossWriter",
    "find_store",
    "irreducible_losses",
    "open_irreducible",
    "store_path",
    "store_writer",
]
