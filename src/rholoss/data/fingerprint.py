"""A cheap identity for a training pool, so an IL store is never applied to other data.

It hashes the pool's source indices and final (noisy) labels, which are already in memory, and
keeps the human-readable settings beside the digest so a mismatch can say what differs.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor


def pool_fingerprint(dataset: str, source_indices: Tensor, labels: Tensor, **settings: Any) -> dict[str, Any]:
    digest = hashlib.sha256()
    for tensor in (source_indices, labels):
        # Real-valued targets (regression) are hashed as float32; labels and indices as int64.
        dtype = torch.float32 if tensor.is_floating_point() else torch.int64
        digest.update(tensor.to(dtype).contiguous().numpy().tobytes())
    return {"dataset": dataset, "pool_size": len(source_indices), **settings, "digest": digest.hexdigest()[:16]}


def fingerprint_differences(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Human-readable lines for every field that differs, settings first."""
    keys = [k for k in {**expected, **found} if k != "digest"]
    lines = [
        f"{key}: store has {found.get(key)!r}, this run has {expected.get(key)!r}"
        for key in keys
        if expected.get(key) != found.get(key)
    ]
    if not lines and expected.get("digest") != found.get("digest"):
        lines.append(
            "same settings but different pool contents (digest "
            f"{found.get('digest')} vs {expected.get('digest')}): the dataset files changed"
        )
    return lines
