"""A 10M-point pool: its IL store and noisy-label mask load in seconds and take ~40 MB (float32)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from rholoss.data.fingerprint import pool_fingerprint
from rholoss.data.noise import uniform_label_noise
from rholoss.irreducible import IrreducibleLossStore

POOL = 10_000_000


@pytest.fixture(scope="module")
def large_pool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, torch.Tensor]:
    labels = torch.randint(0, 10, (POOL,), generator=torch.Generator().manual_seed(0))
    fingerprint = pool_fingerprint("large", torch.arange(POOL), labels, split_seed=0)
    losses = torch.rand(POOL, generator=torch.Generator().manual_seed(1))
    path = IrreducibleLossStore(losses, fingerprint, {"note": "synthetic"}).save(
        tmp_path_factory.mktemp("scale") / "il.pt"
    )
    return path, fingerprint, losses


def test_a_10m_store_is_40mb_on_disk_and_in_memory_and_loads_in_seconds(large_pool) -> None:
    path, fingerprint, losses = large_pool
    started = time.perf_counter()
    store = IrreducibleLossStore.load(path)  # includes the NaN/inf check over every entry
    store.check_matches(fingerprint, path)
    seconds = time.perf_counter() - started
    assert seconds < 5.0, f"loading a 10M-entry store took {seconds:.2f} s"
    assert torch.equal(store.losses, losses)
    assert store.losses.dtype == torch.float32 and store.losses.nbytes == 4 * POOL
    assert 4 * POOL <= path.stat().st_size < 4 * POOL + 1_000_000  # the losses plus a small header


def test_a_10m_noisy_label_mask_is_made_in_seconds_and_takes_10mb() -> None:
    labels = torch.randint(0, 10, (POOL,), generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    noisy = uniform_label_noise(labels, 0.2, 10, seed=1)
    fingerprint = pool_fingerprint("large", torch.arange(POOL), noisy.labels, split_seed=0)
    seconds = time.perf_counter() - started
    assert seconds < 10.0, f"noise and fingerprint of a 10M pool took {seconds:.2f} s"
    assert noisy.corrupted.dtype == torch.bool and noisy.corrupted.nbytes == POOL
    assert int(noisy.corrupted.sum()) == 2_000_000
    assert fingerprint["pool_size"] == POOL
