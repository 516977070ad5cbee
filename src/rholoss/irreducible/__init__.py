"""Irreducible losses: the store format and where stores live."""

from rholoss.irreducible.store import IrreducibleLossStore, StoreError, find_store, store_path

__all__ = ["IrreducibleLossStore", "StoreError", "find_store", "store_path"]
