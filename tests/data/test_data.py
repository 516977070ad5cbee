"""The data layer: IDX reader, splits, label noise, the index contract, fingerprints and DataModules."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rholoss.data import FashionMNISTDataModule, IndexedDataset, SyntheticDataModule
from rholoss.data.fashion_mnist import DEBIAN_DIR, MEAN, STD
from rholoss.data.fingerprint import fingerprint_differences, pool_fingerprint
from rholoss.data.idx import read_idx
from rholoss.data.noise import uniform_label_noise
from rholoss.data.splits import split_indices
from tests.fixtures import FASHION_MNIST_FILES, encode_idx, write_fashion_mnist_idx, write_idx

# --------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    floats = rng.standard_normal((3, 4)).astype(np.float32)
    ints = np.array([-5, 0, 70000], dtype=np.int32)
    suffix = ".gz" if gz else ""
    for name, array in (("images", images), ("labels", labels), ("floats", floats), ("ints", ints)):
        path = write_idx(tmp_path / f"{name}{suffix}", array)
        assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz  # really gzip (or really not)
        read = read_idx(path)
        assert read.shape == array.shape
        np.testing.assert_array_equal(read, array)
    assert read_idx(tmp_path / f"images{suffix}").dtype == np.uint8


def test_idx_header_is_the_documented_one() -> None:
    data = encode_idx(np.zeros((2, 3, 4), dtype=np.uint8))
    assert data[:4] == bytes([0, 0, 0x08, 3]) and int.from_bytes(data[:4], "big") == 0x00000803
    assert [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(3)] == [2, 3, 4]
    assert len(data) == 16 + 24
    assert int.from_bytes(encode_idx(np.zeros(5, dtype=np.uint8))[:4], "big") == 0x00000801


@pytest.mark.parametrize("gz", [True, False])
def test_idx_bad_magic_is_a_clear_error(tmp_path: Path, gz: bool) -> None:
    good = encode_idx(np.zeros((2, 2), dtype=np.uint8))
    for bad in (b"\x01" + good[1:], good[:2] + b"\x07" + good[3:], b"PK\x03"):
        path = tmp_path / ("bad.gz" if gz else "bad")
        path.write_bytes(gzip.compress(bad) if gz else bad)
        with pytest.raises(ValueError, match="not an IDX file"):
            read_idx(path)


def test_idx_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    data = encode_idx(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
    path = tmp_path / "short"
    path.write_bytes(data[:-7])
    with pytest.raises(ValueError, match="truncated") as info:
        read_idx(path)
    assert "60 bytes" in str(info.value) and "53 bytes" in str(info.value)
    path.write_bytes(data + b"\x00")  # extra bytes are as wrong as missing ones
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)
    path.write_bytes(data[:10])  # cut inside the header
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_idx_truncated_gzip_is_a_clear_error(tmp_path: Path) -> None:
    """A cut-off download of a .gz file: the gzip stream itself ends early."""
    data = gzip.compress(encode_idx(np.arange(2000, dtype=np.int32)))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(path)


# ------------------------------------------------------------------------------------------ splits


def test_splits_sizes_disjoint_and_covering() -> None:
    splits = split_indices(100, val_size=10, holdout_fraction=0.3, seed=0)
    assert (len(splits.val), len(splits.holdout), len(splits.pool)) == (10, 27, 63)
    everything = torch.cat([splits.pool, splits.holdout, splits.val])
    assert torch.equal(everything.sort().values, torch.arange(100))  # disjoint and covering
    for part in (splits.pool, splits.holdout, splits.val):
        assert torch.equal(part, part.sort().values)  # returned in ascending order
    no_holdout = split_indices(50, val_size=0, holdout_fraction=0.0, seed=3)
    assert len(no_holdout.val) == len(no_holdout.holdout) == 0
    assert torch.equal(no_holdout.pool, torch.arange(50))


def test_splits_are_deterministic_in_the_seed() -> None:
    a, b = split_indices(200, 20, 0.5, seed=7), split_indices(200, 20, 0.5, seed=7)
    assert all(torch.equal(x, y) for x, y in ((a.pool, b.pool), (a.holdout, b.holdout), (a.val, b.val)))
    c = split_indices(200, 20, 0.5, seed=8)
    assert not torch.equal(a.pool, c.pool) and not torch.equal(a.val, c.val)
    assert (len(c.pool), len(c.holdout), len(c.val)) == (90, 90, 20)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_size": -1}, "val_size must be in"),
        ({"val_size": 100}, "val_size must be in"),
        ({"val_size": 500}, "val_size must be in"),
        ({"holdout_fraction": 1.0}, "holdout_fraction must be in"),
        ({"holdout_fraction": -0.1}, "holdout_fraction must be in"),
    ],
)
def test_splits_reject_invalid_arguments(kwargs: dict, message: str) -> None:
    arguments = {"num_points": 100, "val_size": 10, "holdout_fraction": 0.5, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        split_indices(**arguments)


def test_splits_with_an_empty_pool_raise() -> None:
    with pytest.raises(ValueError, match="pool is empty"):
        split_indices(3, val_size=2, holdout_fraction=0.9, seed=0)


# ------------------------------------------------------------------------------------- label noise


@pytest.mark.parametrize(("n", "fraction"), [(1000, 0.3), (1000, 1.0), (37, 0.25), (10, 0.05)])
def test_label_noise_corrupts_exactly_the_recorded_points(n: int, fraction: float) -> None:
    clean = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(1))
    noisy = uniform_label_noise(clean, fraction, num_classes=10, seed=0)
    assert noisy.corrupted.dtype == torch.bool and noisy.labels.dtype == torch.long
    assert int(noisy.corrupted.sum()) == round(fraction * n)
    assert bool((noisy.labels[noisy.corrupted] != clean[noisy.corrupted]).all())
    assert torch.equal(noisy.labels[~noisy.corrupted], clean[~noisy.corrupted])
    assert bool(((noisy.labels >= 0) & (noisy.labels < 10)).all())


def test_label_noise_is_reproducible_in_the_seed() -> None:
    clean = torch.arange(500) % 5
    a, b = uniform_label_noise(clean, 0.2, 5, seed=3), uniform_label_noise(clean, 0.2, 5, seed=3)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.corrupted, b.corrupted)
    c = uniform_label_noise(clean, 0.2, 5, seed=4)
    assert not torch.equal(a.corrupted, c.corrupted)
    assert int(c.corrupted.sum()) == 100


def test_label_noise_zero_changes_nothing() -> None:
    clean = torch.arange(100) % 3
    noisy = uniform_label_noise(clean, 0.0, 3, seed=0)
    assert torch.equal(noisy.labels, clean) and not bool(noisy.corrupted.any())
    # one class is fine when nothing is corrupted
    assert torch.equal(uniform_label_noise(torch.zeros(4), 0.0, 1, seed=0).labels, torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("fraction", [-0.01, 1.5, float("nan")])
def test_label_noise_rejects_a_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"label_noise must be in \[0, 1\]"):
        uniform_label_noise(torch.zeros(10), fraction, 3, seed=0)


def test_label_noise_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="at least two classes"):
        uniform_label_noise(torch.zeros(10), 0.5, 1, seed=0)


def test_label_noise_is_uniform_over_the_other_classes() -> None:
    n, classes = 120_000, 4
    clean = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(0))
    noisy = uniform_label_noise(clean, 0.5, classes, seed=1)
    for c in range(classes):
        new = noisy.labels[noisy.corrupted & (clean == c)]
        counts = torch.bincount(new, minlength=classes).float() / len(new)
        assert counts[c] == 0
        others = counts[torch.arange(classes) != c]
        assert torch.allclose(others, torch.full_like(others, 1 / 3), atol=0.02), counts  # ~7 sigma
    # the corrupted points are spread over the pool, not bunched at one end
    halves = noisy.corrupted.view(2, -1).float().mean(dim=1)
    assert torch.allclose(halves, torch.tensor([0.5, 0.5]), atol=0.01)
    # and every class is corrupted at the same rate
    rates = torch.stack([noisy.corrupted[clean == c].float().mean() for c in range(classes)])
    assert torch.allclose(rates, torch.full_like(rates, 0.5), atol=0.02)


# ----------------------------------------------------------------------------------- index contract


def _source() -> TensorDataset:
    x = torch.arange(10, dtype=torch.float32).unsqueeze(1) * 10  # x[i] = [10 i]
    return TensorDataset(x, torch.zeros(10, dtype=torch.long))  # source labels all 0


def test_indexed_dataset_yields_position_input_and_given_label() -> None:
    dataset = IndexedDataset(_source(), torch.tensor([5, 2, 7]), torch.tensor([9, 8, 7]))
    assert len(dataset) == 3
    items = [dataset[i] for i in range(3)]
    assert [item[0] for item in items] == [0, 1, 2]
    assert [float(item[1]) for item in items] == [50.0, 20.0, 70.0]
    assert [int(item[2]) for item in items] == [9, 8, 7]  # the given labels, not the source's 0
    assert items[0][2].dtype == torch.long


def test_indexed_dataset_applies_the_transform_to_inputs_only() -> None:
    dataset = IndexedDataset(_source(), torch.tensor([3]), torch.tensor([1]), transform=lambda x: x + 1)
    index, x, y = dataset[0]
    assert index == 0 and float(x) == 31.0 and int(y) == 1


def test_indexed_dataset_batches_carry_index_tensors() -> None:
    dataset = IndexedDataset(_source(), torch.arange(9, -1, -1), torch.arange(10) % 4)
    batches = list(DataLoader(dataset, batch_size=4))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    index, x, y = batches[1]
    assert index.dtype == torch.long and torch.equal(index, torch.tensor([4, 5, 6, 7]))
    assert torch.equal(x.squeeze(1), torch.tensor([50.0, 40.0, 30.0, 20.0]))
    assert torch.equal(y, torch.tensor([0, 1, 2, 3]))


def test_indexed_dataset_needs_one_label_per_point() -> None:
    with pytest.raises(ValueError, match="one label per point: got 3 indices and 2 labels"):
        IndexedDataset(_source(), torch.tensor([0, 1, 2]), torch.tensor([0, 1]))


# ------------------------------------------------------------------------------------- fingerprint


def _fingerprint(labels: torch.Tensor | None = None, **settings) -> dict:
    labels = torch.tensor([0, 1, 2, 1]) if labels is None else labels
    return pool_fingerprint("synthetic", torch.tensor([3, 5, 8, 9]), labels, **{"label_noise": 0.1, **settings})


def test_fingerprint_is_stable_and_readable() -> None:
    a, b = _fingerprint(), _fingerprint()
    assert a == b
    assert a["dataset"] == "synthetic" and a["pool_size"] == 4 and a["label_noise"] == 0.1
    assert len(a["digest"]) == 16 and int(a["digest"], 16) >= 0
    assert fingerprint_differences(a, b) == []
    # the digest does not depend on the tensors' dtype
    assert _fingerprint(torch.tensor([0, 1, 2, 1], dtype=torch.int32))["digest"] == a["digest"]


def test_fingerprint_digest_follows_the_labels() -> None:
    clean, noisy = _fingerprint(), _fingerprint(torch.tensor([0, 1, 2, 2]))
    assert clean["digest"] != noisy["digest"]
    assert {k: v for k, v in clean.items() if k != "digest"} == {k: v for k, v in noisy.items() if k != "digest"}
    lines = fingerprint_differences(clean, noisy)
    assert len(lines) == 1 and "digest" in lines[0]
    assert clean["digest"] in lines[0] and noisy["digest"] in lines[0]


def test_fingerprint_differences_name_the_setting() -> None:
    expected, found = _fingerprint(label_noise=0.2), _fingerprint(label_noise=0.1)
    lines = fingerprint_differences(expected, found)
    assert lines == ["label_noise: store has 0.1, this run has 0.2"]  # settings only, no digest line
    lines = fingerprint_differences(_fingerprint(split_seed=1), _fingerprint(split_seed=0, label_noise=0.3))
    assert sorted(line.split(":")[0] for line in lines) == ["label_noise", "split_seed"]
    assert fingerprint_differences({"dataset": "a", "extra": 1}, {"dataset": "a"}) == [
        "extra: store has None, this run has 1"
    ]


# ---------------------------------------------------------------------------------- SyntheticDataModule


def _synthetic(**kwargs) -> SyntheticDataModule:
    arguments = {"num_train": 400, "num_test": 100, "num_features": 6, "batch_size": 32, "eval_batch_size": 64}
    return SyntheticDataModule(**{**arguments, **kwargs})


def test_synthetic_setup_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    datamodule = _synthetic()
    calls = []
    original = datamodule.load_sources
    monkeypatch.setattr(datamodule, "load_sources", lambda: calls.append(1) or original())
    datamodule.setup("fit")
    pool, fingerprint = datamodule.split("pool"), datamodule.fingerprint
    datamodule.setup("fit")
    datamodule.setup("test")
    assert len(calls) == 1
    assert datamodule.split("pool") is pool and datamodule.fingerprint == fingerprint


def test_synthetic_split_sizes() -> None:
    datamodule = _synthetic()
    with pytest.raises(RuntimeError, match="setup"):
        datamodule.split("pool")
    datamodule.setup()
    assert datamodule.describe() == {"pool": 180, "holdout": 180, "val": 40, "test": 100}  # val = num_train // 10
    assert datamodule.fingerprint["pool_size"] == 180 and datamodule.fingerprint["dataset"] == "synthetic"
    pool, holdout, val = (datamodule.split(name).source_indices for name in ("pool", "holdout", "val"))
    assert torch.equal(torch.cat([pool, holdout, val]).sort().values, torch.arange(400))
    small = _synthetic(val_size=100, holdout_fraction=0.25, train_subset=300)
    small.setup()
    assert small.describe() == {"pool": 150, "holdout": 50, "val": 100, "test": 100}


@pytest.mark.parametrize("label_noise", [0.0, 0.2])
def test_synthetic_corrupted_mask_matches_the_label_noise(label_noise: float) -> None:
    datamodule = _synthetic(label_noise=label_noise)
    datamodule.setup()
    pool = datamodule.split("pool")
    source_labels = pool.source.tensors[1][pool.source_indices]
    assert datamodule.corrupted.shape == (180,)
    assert int(datamodule.corrupted.sum()) == round(label_noise * 180)
    assert torch.equal(pool.labels != source_labels, datamodule.corrupted)
    assert datamodule.has_noise == (label_noise > 0)
    for name in ("holdout", "val", "test"):  # only the pool is noisy
        split = datamodule.split(name)
        assert torch.equal(split.labels, split.source.tensors[1][split.source_indices])


def test_synthetic_train_loader_gives_full_large_batches_of_the_pool() -> None:
    torch.manual_seed(0)
    datamodule = _synthetic(label_noise=0.1)
    datamodule.setup()
    pool = datamodule.split("pool")
    batches = list(datamodule.train_dataloader())
    assert [len(index) for index, _, _ in batches] == [32] * 5  # 180 = 5 * 32 + 20, the 20 are dropped
    seen = torch.cat([index for index, _, _ in batches])
    assert len(seen.unique()) == 160 and not torch.equal(seen, seen.sort().values)  # shuffled, no repeats
    for index, x, y in batches:
        assert index.dtype == torch.long and x.shape == (32, 6) and x.dtype == torch.float32
        assert torch.equal(y, pool.labels[index])
        assert torch.equal(x, pool.source.tensors[0][pool.source_indices[index]])


def test_synthetic_holdout_loader_keeps_the_last_partial_batch() -> None:
    datamodule = _synthetic(train_split="holdout")
    datamodule.setup()
    holdout = datamodule.split("holdout")
    batches = list(datamodule.train_dataloader())
    assert [len(index) for index, _, _ in batches] == [32] * 5 + [20]
    assert torch.equal(torch.cat([index for index, _, _ in batches]).sort().values, torch.arange(180))
    for index, _, y in batches:
        assert torch.equal(y, holdout.labels[index])


def test_synthetic_pool_loader_is_in_index_order() -> None:
    datamodule = _synthetic(label_noise=0.3)
    datamodule.setup()
    batches = list(datamodule.pool_dataloader())
    assert [len(index) for index, _, _ in batches] == [64, 64, 52]
    assert torch.equal(torch.cat([index for index, _, _ in batches]), torch.arange(180))
    assert torch.equal(torch.cat([y for _, _, y in batches]), datamodule.split("pool").labels)
    assert [len(index) for index, _, _ in datamodule.val_dataloader()] == [40]
    assert [len(index) for index, _, _ in datamodule.test_dataloader()] == [64, 36]


def test_synthetic_fingerprint_follows_the_settings() -> None:
    def fingerprint(**kwargs) -> dict:
        datamodule = _synthetic(**kwargs)
        datamodule.setup()
        return datamodule.fingerprint

    base = fingerprint()
    assert fingerprint() == base  # a fresh module with the same settings: the same pool
    other_seed, noisy = fingerprint(split_seed=1), fingerprint(label_noise=0.1)
    assert other_seed["digest"] != base["digest"] and other_seed["split_seed"] == 1
    assert noisy["digest"] != base["digest"] and noisy["label_noise"] == 0.1
    assert fingerprint_differences(base, noisy) == ["label_noise: store has 0.1, this run has 0.0"]
    # other data under the same settings: only the digest tells them apart
    other_data = fingerprint(data_seed=5)
    assert "digest" in " ".join(fingerprint_differences(base, other_data))


def test_synthetic_batch_larger_than_the_split_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="pool split has 180 points, fewer than one batch of 181"):
        _synthetic(batch_size=181).setup()
    with pytest.raises(ValueError, match="holdout split has 180 points"):
        _synthetic(batch_size=200, train_split="holdout").setup()
    _synthetic(batch_size=180).setup()  # exactly one batch is fine


def test_synthetic_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="train_split must be 'pool' or 'holdout'"):
        _synthetic(train_split="val")
    with pytest.raises(ValueError, match="batch_size must be positive"):
        _synthetic(batch_size=0)


# ------------------------------------------------------------------------------- Fashion-MNIST files


def _fashion(data_dir: Path, system_dir: Path | None = None, **kwargs) -> FashionMNISTDataModule:
    arguments = {"val_size": 20, "holdout_fraction": 0.5, "batch_size": 16, "eval_batch_size": 50}
    return FashionMNISTDataModule(
        data_dir=str(data_dir),
        system_dir=str(system_dir) if system_dir else None,
        download=False,
        **{**arguments, **kwargs},
    )


def _check_fashion_sources(datamodule: FashionMNISTDataModule, labels: dict[str, np.ndarray]) -> None:
    sources = datamodule.load_sources()
    splits = (("train", sources.train, sources.train_targets), ("test", sources.test, sources.test_targets))
    for split, source, targets in splits:
        x = source.tensors[0]
        n = len(labels[split])
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
        assert targets.dtype == torch.long and torch.equal(targets, torch.from_numpy(labels[split].astype(np.int64)))
        pixels = (x * STD + MEAN) * 255  # back to the file's bytes
        assert torch.allclose(pixels, pixels.round(), atol=1e-3)
        assert float(pixels.min()) > -1e-3 and float(pixels.max()) < 255 + 1e-3
        assert abs(float(x.min()) - (0 - MEAN) / STD) < 1e-5  # the fixture has black pixels
        # images and labels stay aligned: each image's bright band sits at its label's rows
        band = pixels[:, 0, :, 2:26].mean(dim=2).argmax(dim=1)
        assert torch.equal((band - 4) // 2, targets)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_loads_from_data_dir(tmp_path: Path, gz: bool) -> None:
    labels = write_fashion_mnist_idx(tmp_path, num_train=120, num_test=30, gz=gz)
    expected = sorted(name + (".gz" if gz else "") for name in FASHION_MNIST_FILES.values())
    assert sorted(path.name for path in tmp_path.iterdir()) == expected
    _check_fashion_sources(_fashion(tmp_path), labels)


def test_fashion_mnist_loads_from_torchvision_layout(tmp_path: Path) -> None:
    labels = write_fashion_mnist_idx(tmp_path / "FashionMNIST" / "raw", num_train=60, num_test=20, gz=False, seed=1)
    _check_fashion_sources(_fashion(tmp_path), labels)


def test_fashion_mnist_loads_from_system_dir(tmp_path: Path) -> None:
    labels = write_fashion_mnist_idx(tmp_path / "system", num_train=80, num_test=20, seed=2)
    (tmp_path / "empty").mkdir()
    _check_fashion_sources(_fashion(tmp_path / "empty", system_dir=tmp_path / "system"), labels)


def test_fashion_mnist_data_dir_comes_before_system_dir(tmp_path: Path) -> None:
    write_fashion_mnist_idx(tmp_path / "system", num_train=80, num_test=20)
    mine = write_fashion_mnist_idx(tmp_path / "mine", num_train=50, num_test=10, seed=3)
    datamodule = _fashion(tmp_path / "mine", system_dir=tmp_path / "system")
    assert datamodule.locate()["train_images"] == tmp_path / "mine" / "train-images-idx3-ubyte.gz"
    _check_fashion_sources(datamodule, mine)


def test_fashion_mnist_datamodule_serves_indexed_image_batches(tmp_path: Path) -> None:
    labels = write_fashion_mnist_idx(tmp_path, num_train=120, num_test=30)
    datamodule = _fashion(tmp_path, label_noise=0.2)
    datamodule.setup()
    assert datamodule.describe() == {"pool": 50, "holdout": 50, "val": 20, "test": 30}
    assert int(datamodule.corrupted.sum()) == 10
    assert datamodule.fingerprint["dataset"] == "fashion_mnist" and datamodule.fingerprint["pool_size"] == 50
    index, x, y = next(iter(datamodule.train_dataloader()))
    assert index.shape == (16,) and x.shape == (16, 1, 28, 28) and y.shape == (16,)
    pool = datamodule.split("pool")
    clean = torch.from_numpy(labels["train"].astype(np.int64))[pool.source_indices]
    assert torch.equal(pool.labels != clean, datamodule.corrupted)
    _, _, test_y = next(iter(datamodule.test_dataloader()))
    assert torch.equal(test_y, torch.from_numpy(labels["test"].astype(np.int64)))


def test_fashion_mnist_missing_files_say_how_to_get_them(tmp_path: Path) -> None:
    write_fashion_mnist_idx(tmp_path, num_train=20, num_test=10)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()  # three of four files is not enough
    datamodule = _fashion(tmp_path, system_dir=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as info:
        datamodule.setup()
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message and "datamodule.data_dir" in message
    assert "download is disabled" in message
    assert str(tmp_path) in message and str(tmp_path / "nowhere") in message


def test_fashion_mnist_offline_download_failure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls = []

    class Offline:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            raise RuntimeError("simulated: no network")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    datamodule = FashionMNISTDataModule(data_dir=str(tmp_path), system_dir=None, download=True, val_size=10)
    with pytest.raises(FileNotFoundError) as info:
        datamodule.load_sources()
    message = str(info.value)
    assert "the download failed (simulated: no network)" in message
    assert "apt-get install dataset-fashion-mnist" in message and "datamodule.data_dir" in message
    assert calls == [(str(tmp_path), True, True)]


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_mismatched_counts_are_a_clear_error(tmp_path: Path, split: str) -> None:
    write_fashion_mnist_idx(tmp_path, num_train=40, num_test=20)
    short = np.zeros(7, dtype=np.uint8)
    write_idx(tmp_path / f"{FASHION_MNIST_FILES[f'{split}_labels']}.gz", short)
    with pytest.raises(ValueError, match=f"Fashion-MNIST {split} files disagree: .* images but 7 labels"):
        _fashion(tmp_path).load_sources()


def test_fashion_mnist_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    write_fashion_mnist_idx(tmp_path, num_train=40, num_test=20, gz=False)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is truncated"):
        _fashion(tmp_path).load_sources()


DEBIAN_FILES = [Path(DEBIAN_DIR) / f"{name}.gz" for name in FASHION_MNIST_FILES.values()]


@pytest.mark.skipif(
    not all(path.is_file() for path in DEBIAN_FILES),
    reason="Debian's dataset-fashion-mnist is not installed (.ci/setup installs it)",
)
def test_real_debian_fashion_mnist_files() -> None:
    arrays = {key: read_idx(Path(DEBIAN_DIR) / f"{name}.gz") for key, name in FASHION_MNIST_FILES.items()}
    assert arrays["train_images"].shape == (60000, 28, 28) and arrays["train_images"].dtype == np.uint8
    assert arrays["test_images"].shape == (10000, 28, 28)
    assert np.array_equal(np.bincount(arrays["train_labels"]), np.full(10, 6000))  # 10 balanced classes
    assert np.array_equal(np.bincount(arrays["test_labels"]), np.full(10, 1000))
    # MEAN/STD are the training set's pixel statistics (exact integer sums, fast)
    images = arrays["train_images"]
    mean = float(images.sum(dtype=np.uint64)) / images.size / 255
    mean_square = float(np.square(images, dtype=np.uint16).sum(dtype=np.uint64)) / images.size / 255**2
    std = (mean_square - mean**2) ** 0.5
    assert abs(mean - MEAN) < 1e-3 and abs(std - STD) < 1e-3
    # the DataModule finds them in the default system_dir when data_dir has nothing
    located = FashionMNISTDataModule(data_dir="/nonexistent-rholoss-test-dir", download=False).locate()
    assert located["test_labels"] == Path(DEBIAN_DIR) / "t10k-labels-idx1-ubyte.gz"
