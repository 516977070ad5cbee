"""The irreducible loss store: one file per (pool, IL model) holding the IL of every pool point.

Written atomically (temp file in the same folder, then rename) so a crash never leaves a file
that loads; checked on load so a truncated, corrupted or foreign file fails with a clear message.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rholoss.atomic import atomic_torch_save
from rholoss.data.fingerprint import fingerprint_differences

FORMAT_VERSION = 1
# What to do about any store that cannot be used.
_FIX = (
    "Point irreducible.path at a store written by run_irreducible.py, or delete this one and rerun run_irreducible.py."
)


class StoreError(RuntimeError):
    """An IL store is missing, unreadable or made for other data."""


@dataclass
class IrreducibleLossStore:
    losses: Tensor  # float32 [pool_size], by pool index
    fingerprint: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> Path:
        payload = {
            "format_version": FORMAT_VERSION,
            "losses": self.losses.detach().to("cpu", torch.float32).contiguous(),
            "fingerprint": self.fingerprint,
            "metadata": self.metadata,
        }
        return atomic_torch_save(payload, Path(path))

    @classmethod
    def load(cls, path: Path) -> IrreducibleLossStore:
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"No IL store at {path}.")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # torch's own message here advises weights_only=False, which is no fix for a file that
            # is not a store (a training checkpoint given as irreducible.path, or random bytes).
            raise StoreError(
                f"{path} is not an IL store: it holds objects other than tensors and plain values (a training "
                f"checkpoint?) or is not a torch file at all. {_FIX}"
            ) from None
        except Exception as error:
            raise StoreError(
                f"Cannot read the IL store {path} ({type(error).__name__}: {error}). The file is truncated "
                f"or not an IL store. {_FIX}"
            ) from None
        if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"{path} is not an IL store of format version {FORMAT_VERSION}. {_FIX}")
        losses = payload.get("losses")
        if not isinstance(losses, Tensor) or losses.dtype != torch.float32 or losses.ndim != 1:
            found = f"{losses.dtype} {tuple(losses.shape)}" if isinstance(losses, Tensor) else type(losses).__name__
            raise StoreError(f"{path}: losses must be a 1-D float32 tensor, got {found}. {_FIX}")
        if not isinstance(payload.get("fingerprint"), dict):
            raise StoreError(f"{path} has no fingerprint of the pool it was made for. {_FIX}")
        bad = (~torch.isfinite(losses)).sum()
        if bad:
            raise StoreError(
                f"{path}: {int(bad)} of {len(losses)} irreducible losses are NaN or infinite (a diverged IL "
                f"model?). {_FIX}"
            )
        return cls(losses, payload["fingerprint"], payload.get("metadata", {}))

    def check_matches(self, fingerprint: dict[str, Any], path: Path | str = "the IL store") -> None:
        check_fingerprint(fingerprint, self.fingerprint, path)
        if len(self.losses) != fingerprint["pool_size"]:
            raise StoreError(f"{path} holds {len(self.losses)} losses for a pool of {fingerprint['pool_size']}. {_FIX}")


class PointLossWriter:
    """Collects the IL of every pool point, batch by batch as the pool is scored, and saves the store
    (atomically) on a clean exit of its ``with`` block, once every point has one; the per-point
    counterpart of :class:`~rholoss.irreducible.token_store.TokenLossWriter`, with the same verbs."""

    def __init__(self, path: Path, fingerprint: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        self.path, self.fingerprint, self.metadata = Path(path), fingerprint, metadata or {}
        self.losses = torch.full((int(fingerprint["pool_size"]),), float("nan"))

    def write(self, index: Tensor, losses: Tensor) -> None:
        """The IL ``[B]`` of pool points ``index``."""
        self.losses[index.cpu()] = losses.detach().float().cpu()

    def __enter__(self) -> PointLossWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None:
            return
        missing = int(torch.isnan(self.losses).sum())
        if missing:
            raise StoreError(
                f"{missing} of {len(self.losses)} pool points got no irreducible loss: {self.path} not written."
            )
        IrreducibleLossStore(self.losses, self.fingerprint, self.metadata).save(self.path)


def check_fingerprint(expected: dict[str, Any], found: dict[str, Any], path: Path | str) -> None:
    """Refuse a store made for other data, naming every setting that differs."""
    differences = fingerprint_differences(expected, found)
    if differences:
        raise StoreError(
            f"{path} was made for other data:\n  " + "\n  ".join(differences) + "\n"
            "Make a store for this data with run_irreducible.py and the same datamodule settings."
        )


def pool_folder(cache_dir: Path, fingerprint: dict[str, Any]) -> Path:
    """Where every store for this pool lives, whatever IL model made it."""
    return Path(cache_dir) / f"{fingerprint['dataset']}-{fingerprint['digest']}"


def store_path(cache_dir: Path, fingerprint: dict[str, Any], il_config: dict[str, Any], suffix: str = ".pt") -> Path:
    """A store's place in the cache: the pool's folder, then a hash of the IL training config;
    ``suffix`` tells the per-point store (``.pt``) from the per-token one (``.tokens``)."""
    config_hash = hashlib.sha256(json.dumps(il_config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return pool_folder(cache_dir, fingerprint) / f"il-{config_hash}{suffix}"


def find_store(cache_dir: Path, fingerprint: dict[str, Any], suffix: str = ".pt") -> Path | None:
    """The newest store (of the kind ``suffix`` names) in the cache for this pool, or None."""
    stores = sorted(pool_folder(cache_dir, fingerprint).glob(f"il-*{suffix}"), key=lambda p: p.stat().st_mtime)
    return stores[-1] if stores else None
