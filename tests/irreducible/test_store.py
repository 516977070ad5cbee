"""The IL store: round trip, atomic writes, clear errors on bad files, and where stores live."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from rholoss.data.fingerprint import pool_fingerprint
from rholoss.irreducible import IrreducibleLossStore, StoreError, find_store, store_path
from rholoss.irreducible.store import FORMAT_VERSION, pool_folder

RERUN = "delete this one and rerun run_irreducible.py"


def fingerprint(pool_size: int = 10, label_noise: float = 0.1, labels: torch.Tensor | None = None) -> dict:
    labels = torch.arange(pool_size) % 3 if labels is None else labels
    return pool_fingerprint(
        "synthetic", torch.arange(pool_size) * 2, labels, split_seed=0, label_noise=label_noise, relevant_classes=None
    )


def make_store(pool_size: int = 10, seed: int = 0, **metadata) -> IrreducibleLossStore:
    losses = torch.rand(pool_size, generator=torch.Generator().manual_seed(seed)) * 3
    return IrreducibleLossStore(losses, fingerprint(pool_size), {"il_model": "mlp", "val_acc": 0.875, **metadata})


def test_round_trip(tmp_path: Path) -> None:
    store = make_store()
    path = store.save(tmp_path / "nested" / "il.pt")
    assert path == tmp_path / "nested" / "il.pt" and path.is_file()
    loaded = IrreducibleLossStore.load(path)
    assert loaded.losses.dtype == torch.float32 and torch.equal(loaded.losses, store.losses)
    assert loaded.fingerprint == store.fingerprint
    assert loaded.metadata == {"il_model": "mlp", "val_acc": 0.875}
    loaded.check_matches(fingerprint(10))  # made for this pool: no error
    assert sorted(os.listdir(path.parent)) == ["il.pt"]  # no temp file left behind


def test_round_trip_stores_float32(tmp_path: Path) -> None:
    losses = torch.tensor([0.1, 2.5, 1e-8], dtype=torch.float64, requires_grad=True)
    IrreducibleLossStore(losses * 1, fingerprint(3), {}).save(tmp_path / "il.pt")
    loaded = IrreducibleLossStore.load(tmp_path / "il.pt")
    assert loaded.losses.dtype == torch.float32 and not loaded.losses.requires_grad
    assert torch.equal(loaded.losses, losses.detach().float())
    assert loaded.metadata == {}


@pytest.mark.parametrize("existing", [True, False])
def test_a_failed_write_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    path = tmp_path / "il.pt"
    old = make_store(seed=0)
    if existing:
        old.save(path)
    before = path.read_bytes() if existing else None
    real_save = torch.save

    def crash_halfway(obj, file, *args, **kwargs) -> None:
        real_save(obj, file, *args, **kwargs)  # write the whole payload ...
        file.truncate(file.tell() // 2)  # ... keep half of it, and die
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", crash_halfway)
    with pytest.raises(KeyboardInterrupt, match="killed while writing"):
        make_store(seed=1).save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == (["il.pt"] if existing else [])  # no temp file left
    if existing:
        assert path.read_bytes() == before
        assert torch.equal(IrreducibleLossStore.load(path).losses, old.losses)


def test_a_write_that_raises_early_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_store().save(tmp_path / "il.pt")

    def write_some_bytes_then_fail(obj, file, *args, **kwargs) -> None:
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", write_some_bytes_then_fail)
    with pytest.raises(OSError, match="disk full"):
        make_store(seed=2).save(tmp_path / "il.pt")
    assert os.listdir(tmp_path) == ["il.pt"]
    monkeypatch.undo()
    assert torch.equal(IrreducibleLossStore.load(tmp_path / "il.pt").losses, make_store().losses)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.0])
def test_a_truncated_file_says_to_rerun(tmp_path: Path, keep: float) -> None:
    path = make_store(pool_size=1000).save(tmp_path / "il.pt")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(StoreError, match="truncated") as info:
        IrreducibleLossStore.load(path)
    assert RERUN in str(info.value) and str(path) in str(info.value)


def test_a_missing_file_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="No IL store at"):
        IrreducibleLossStore.load(tmp_path / "absent.pt")


def test_non_store_files_are_store_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("these are not the losses you are looking for\n")
    with pytest.raises(StoreError, match=RERUN):
        IrreducibleLossStore.load(text)

    for name, payload in (
        ("tensor.pt", torch.zeros(10)),
        ("dict.pt", {"losses": torch.zeros(10)}),  # no format_version
        ("future.pt", {"format_version": FORMAT_VERSION + 1, "losses": torch.zeros(10), "fingerprint": {}}),
    ):
        torch.save(payload, tmp_path / name)
        with pytest.raises(StoreError, match=f"not an IL store of format version {FORMAT_VERSION}") as info:
            IrreducibleLossStore.load(tmp_path / name)
        assert RERUN in str(info.value)


@pytest.mark.parametrize("content", ["checkpoint", "random bytes"])
def test_files_torch_refuses_to_unpickle_are_named_not_a_store(tmp_path: Path, content: str) -> None:
    """A training checkpoint given as irreducible.path (it pickles config objects) or random bytes:
    torch's own advice (load with weights_only=False) is no fix, so the error gives ours instead."""
    path = tmp_path / "il.pt"
    if content == "checkpoint":
        torch.save({"state_dict": {}, "hyper_parameters": OmegaConf.create({"lr": 0.1})}, path)
    else:
        path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(StoreError, match=r"il.pt is not an IL store: it holds objects other than tensors") as info:
        IrreducibleLossStore.load(path)
    assert RERUN in str(info.value) and "weights_only" not in str(info.value)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"format_version": FORMAT_VERSION, "fingerprint": {}}, "losses must be a 1-D float32 tensor, got NoneType"),
        ({"format_version": FORMAT_VERSION, "losses": torch.zeros(10)}, "has no fingerprint of the pool"),
    ],
)
def test_a_store_missing_a_part_is_a_store_error(tmp_path: Path, payload: dict, message: str) -> None:
    torch.save(payload, tmp_path / "il.pt")
    with pytest.raises(StoreError, match=message) as info:
        IrreducibleLossStore.load(tmp_path / "il.pt")
    assert RERUN in str(info.value)


@pytest.mark.parametrize(
    ("losses", "found"),
    [(torch.zeros(10, dtype=torch.float64), "torch.float64 (10,)"), (torch.zeros(2, 5), "torch.float32 (2, 5)")],
)
def test_wrong_loss_tensors_are_store_errors(tmp_path: Path, losses: torch.Tensor, found: str) -> None:
    path = tmp_path / "il.pt"
    torch.save({"format_version": FORMAT_VERSION, "losses": losses, "fingerprint": fingerprint()}, path)
    with pytest.raises(StoreError, match="1-D float32") as info:
        IrreducibleLossStore.load(path)
    assert found in str(info.value)


def test_non_finite_losses_are_store_errors(tmp_path: Path) -> None:
    losses = torch.ones(10)
    losses[[1, 4]] = float("nan")
    losses[7] = float("inf")
    losses[8] = float("-inf")
    path = IrreducibleLossStore(losses, fingerprint(), {}).save(tmp_path / "il.pt")
    with pytest.raises(StoreError, match="4 of 10 irreducible losses are NaN or infinite") as info:
        IrreducibleLossStore.load(path)
    assert RERUN in str(info.value)


def test_check_matches_names_the_differing_field() -> None:
    store = make_store()
    with pytest.raises(StoreError, match=re.escape("label_noise: store has 0.1, this run has 0.3")) as info:
        store.check_matches(fingerprint(label_noise=0.3), "cache/il.pt")
    message = str(info.value)
    assert message.startswith("cache/il.pt was made for other data") and "run_irreducible.py" in message
    assert "digest" not in message  # the setting explains it; the digest line is for content-only changes

    with pytest.raises(StoreError, match="pool_size: store has 10, this run has 12"):
        store.check_matches(fingerprint(12))


def test_check_matches_reports_a_content_only_change() -> None:
    store = make_store()
    other_labels = fingerprint(labels=torch.tensor([2, 1, 0, 0, 1, 2, 0, 1, 2, 0]))
    with pytest.raises(StoreError, match="same settings but different pool contents") as info:
        store.check_matches(other_labels)
    assert store.fingerprint["digest"] in str(info.value) and other_labels["digest"] in str(info.value)


def test_check_matches_catches_a_wrong_length() -> None:
    store = IrreducibleLossStore(torch.zeros(9), fingerprint(10), {})
    with pytest.raises(StoreError, match="holds 9 losses for a pool of 10"):
        store.check_matches(fingerprint(10), "il.pt")


def test_store_path_is_per_pool_and_per_il_config(tmp_path: Path) -> None:
    fp = fingerprint()
    config = {"model": "mlp", "lr": 1e-3, "epochs": 5}
    path = store_path(tmp_path, fp, config)
    assert path.parent == pool_folder(tmp_path, fp) == tmp_path / f"synthetic-{fp['digest']}"
    assert path.name.startswith("il-") and path.suffix == ".pt"
    assert store_path(tmp_path, fp, dict(reversed(config.items()))) == path  # key order does not matter
    assert store_path(tmp_path, fp, {**config, "lr": 1e-2}) != path
    assert store_path(tmp_path, fp, {**config, "epochs": 6}).parent == path.parent
    other_pool = fingerprint(label_noise=0.2, labels=torch.arange(10) % 2)
    assert store_path(tmp_path, other_pool, config).parent != path.parent


def test_find_store_returns_the_newest_for_the_pool(tmp_path: Path) -> None:
    fp = fingerprint()
    assert find_store(tmp_path, fp) is None  # no folder yet
    pool_folder(tmp_path, fp).mkdir(parents=True)
    assert find_store(tmp_path, fp) is None  # empty folder

    old = make_store(seed=0).save(store_path(tmp_path, fp, {"model": "mlp"}))
    new = make_store(seed=1).save(store_path(tmp_path, fp, {"model": "cnn"}))
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(new, (2_000_000, 2_000_000))
    assert find_store(tmp_path, fp) == new
    os.utime(old, (3_000_000, 3_000_000))
    assert find_store(tmp_path, fp) == old

    # a leftover temp file from a crashed write and other files are not stores
    (pool_folder(tmp_path, fp) / f".{new.name}.abc123.tmp").write_bytes(b"half")
    (pool_folder(tmp_path, fp) / "notes.txt").write_text("x")
    os.utime(pool_folder(tmp_path, fp) / "notes.txt", (4_000_000, 4_000_000))
    assert find_store(tmp_path, fp) == old

    other = fingerprint(labels=torch.arange(10) % 2)
    assert find_store(tmp_path, other) is None
