"""Irreducible losses: the store formats (per point, per token) and where stores live."""

from rholoss.irreducible.store import IrreducibleLossStore, StoreError, find_store, store_path
from rholoss.irreducible.token_store import TokenLossStore, TokenLossWriter

__all__ = ["IrreducibleLossStore", "StoreError", "TokenLossStore", "TokenLossWriter", "find_store", "store_path"]
