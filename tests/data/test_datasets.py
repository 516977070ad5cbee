"""The paper's datasets, each read from tiny files written in its real on-disk format, and the
split plan for datasets with their own holdout / val sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from rholoss.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    CINIC10DataModule,
    Clothing1MDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    PoolDataModule,
    QMNISTDataModule,
    Sources,
    TensorFileDataModule,
)
from rholoss.data.cifar import CIFAR_MEAN, CIFAR_STD
from rholoss.data.clothing1m import IMAGENET_MEAN, IMAGENET_STD
from rholoss.data.mnist import MNIST_MEAN, MNIST_STD
from rholoss.data.noise import PAPER_MNIST_PAIRS
from tests.fixtures import (
    CINIC10_CLASSES,
    write_cifar,
    write_clothing1m,
    write_fashion_mnist_idx,
    write_image_folder,
    write_qmnist_test,
)

# ------------------------------------------------------------------------- separate holdout / val


class Parts(PoolDataModule):
    """Train points carry x = 1000 + i, holdout 2000 + i, val 3000 + i, test 4000 + i, so every
    split's origin can be read off its inputs."""

    name = "parts"
    num_classes = 5
    input_shape = (1,)

    def __init__(self, sizes: dict[str, int], **kwargs) -> None:
        super().__init__(**{"batch_size": 4, "val_size": 10, **kwargs})
        self.sizes = sizes

    def load_sources(self) -> Sources:
        parts = {}
        for offset, split in enumerate(("train", "holdout", "val", "test"), start=1):
            if split in self.sizes:
                x = (1000 * offset + torch.arange(self.sizes[split])).float().unsqueeze(1)
                y = torch.arange(self.sizes[split]) % 5
                parts |= {split: TensorDataset(x, y), f"{split}_targets": y}
        return Sources(**parts)


def _origins(datamodule: PoolDataModule) -> dict[str, tuple[set[int], int]]:
    """Per split: which sources its points come from (the thousands digit) and how many points."""
    result = {}
    for name in ("pool", "holdout", "val", "test"):
        split = datamodule.split(name)
        x = split.source.tensors[0][split.source_indices].flatten()
        result[name] = ({int(v) // 1000 for v in x}, len(split))
    return result


def test_own_holdout_with_val_from_holdout_keeps_the_whole_training_source_as_pool() -> None:
    datamodule = Parts({"train": 60, "holdout": 50, "test": 20}, val_from="holdout")
    datamodule.setup()
    assert _origins(datamodule) == {"pool": ({1}, 60), "holdout": ({2}, 40), "val": ({2}, 10), "test": ({4}, 20)}
    holdout, val = datamodule.split("holdout"), datamodule.split("val")
    assert not set(holdout.source_indices.tolist()) & set(val.source_indices.tolist())
    assert torch.equal(datamodule.split("pool").source_indices, torch.arange(60))
    again = Parts({"train": 60, "holdout": 50, "test": 20}, val_from="holdout")
    again.setup()
    assert torch.equal(again.split("val").source_indices, val.source_indices)  # seeded
    other = Parts({"train": 60, "holdout": 50, "test": 20}, val_from="holdout", split_seed=1)
    other.setup()
    assert not torch.equal(other.split("val").source_indices, val.source_indices)


def test_own_holdout_with_val_from_train() -> None:
    datamodule = Parts({"train": 60, "holdout": 50, "test": 20}, val_from="train")
    datamodule.setup()
    assert _origins(datamodule) == {"pool": ({1}, 50), "holdout": ({2}, 50), "val": ({1}, 10), "test": ({4}, 20)}
    pool, val = datamodule.split("pool"), datamodule.split("val")
    assert not set(pool.source_indices.tolist()) & set(val.source_indices.tolist())


def test_own_val_source_is_used_whole_and_val_size_ignored() -> None:
    datamodule = Parts({"train": 60, "holdout": 50, "val": 7, "test": 20}, val_from="holdout")
    datamodule.setup()
    assert _origins(datamodule) == {"pool": ({1}, 60), "holdout": ({2}, 50), "val": ({3}, 7), "test": ({4}, 20)}
    only_val = Parts({"train": 60, "val": 7, "test": 20}, holdout_fraction=0.5)
    only_val.setup()
    assert _origins(only_val) == {"pool": ({1}, 30), "holdout": ({1}, 30), "val": ({3}, 7), "test": ({4}, 20)}


def test_val_from_holdout_without_own_holdout_keeps_half_the_training_source_as_pool() -> None:
    """CIFAR's split: half pool, half holdout, val taken out of the holdout half."""
    datamodule = Parts({"train": 100, "test": 20}, val_from="holdout", holdout_fraction=0.5)
    datamodule.setup()
    assert _origins(datamodule) == {"pool": ({1}, 50), "holdout": ({1}, 40), "val": ({1}, 10), "test": ({4}, 20)}
    indices = [set(datamodule.split(n).source_indices.tolist()) for n in ("pool", "holdout", "val")]
    assert set().union(*indices) == set(range(100)) and sum(map(len, indices)) == 100


def test_the_existing_split_is_unchanged_by_default() -> None:
    datamodule = Parts({"train": 100, "test": 20}, holdout_fraction=0.5)
    datamodule.setup()
    assert _origins(datamodule) == {"pool": ({1}, 45), "holdout": ({1}, 45), "val": ({1}, 10), "test": ({4}, 20)}


def test_relevant_classes_filter_an_own_holdout_and_val() -> None:
    datamodule = Parts({"train": 60, "holdout": 50, "val": 20, "test": 20}, relevant_classes=[0, 1])
    datamodule.setup()
    for name in ("holdout", "val", "test"):
        assert set(datamodule.split(name).labels.tolist()) == {0, 1}
    assert set(datamodule.split("pool").labels.tolist()) == set(range(5))
    assert torch.equal(datamodule.relevant, datamodule.split("pool").labels < 2)


def test_fingerprint_records_val_from_and_the_noise() -> None:
    def fingerprint(**kwargs) -> dict:
        datamodule = Parts({"train": 100, "test": 20}, **kwargs)
        datamodule.setup()
        return datamodule.fingerprint

    base = fingerprint()
    assert (base["val_from"], base["noise_type"], base["noise_pairs"]) == ("train", "uniform", None)
    assert fingerprint(val_from="holdout")["digest"] != base["digest"]
    structured = fingerprint(noise_type="structured", label_noise=0.5, noise_pairs=[[0, 1], [2, 3]])
    assert structured["noise_pairs"] == [[0, 1], [2, 3]] and structured["digest"] != base["digest"]


def test_sources_need_targets_with_each_extra_source() -> None:
    x = TensorDataset(torch.zeros(3, 1), torch.zeros(3))
    with pytest.raises(ValueError, match="holdout and holdout_targets"):
        Sources(x, torch.zeros(3), x, torch.zeros(3), holdout=x)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"val_from": "test"}, "val_from must be"), ({"noise_type": "x"}, "noise_type must be")]
)
def test_bad_options_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Parts({"train": 10, "test": 5}, **kwargs)


# ----------------------------------------------------------------------------------- MNIST, QMNIST


def _check_digits(x: torch.Tensor, labels: torch.Tensor) -> None:
    """Inputs are the files' bytes standardised with MNIST's statistics, and each image's bright
    band sits at its label's rows (images and labels stay aligned)."""
    pixels = (x * MNIST_STD + MNIST_MEAN) * 255
    assert torch.allclose(pixels, pixels.round(), atol=1e-3) and float(pixels.max()) <= 255 + 1e-3
    band = pixels[:, 0, :, 2:26].mean(dim=2).argmax(dim=1)
    assert torch.equal((band - 4) // 2, labels)


def test_mnist_loads_from_torchvision_layout(tmp_path: Path) -> None:
    labels = write_fashion_mnist_idx(tmp_path / "MNIST" / "raw", num_train=90, num_test=30)  # same file names
    datamodule = MNISTDataModule(data_dir=str(tmp_path), download=False, val_size=10, batch_size=8)
    datamodule.setup()
    assert datamodule.describe() == {"pool": 40, "holdout": 40, "val": 10, "test": 30}
    test = datamodule.split("test")
    assert torch.equal(test.labels, torch.from_numpy(labels["test"].astype(np.int64)))
    _check_digits(test.source.tensors[0], test.labels)


@pytest.fixture(scope="module")
def qmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("qmnist")
    labels = write_fashion_mnist_idx(root / "MNIST" / "raw", num_train=200, num_test=30, seed=4)
    labels["extra"] = write_qmnist_test(root / "QMNIST" / "raw", num_extra=60)
    return root, labels


def _qmnist(root: Path, **kwargs) -> QMNISTDataModule:
    return QMNISTDataModule(data_dir=str(root), download=False, **{"val_size": 20, "batch_size": 16, **kwargs})


def test_qmnist_uses_mnist_train_as_pool_and_the_extra_digits_as_holdout(qmnist_dir) -> None:
    root, labels = qmnist_dir
    datamodule = _qmnist(root)
    datamodule.setup()
    assert datamodule.describe() == {"pool": 200, "holdout": 40, "val": 20, "test": 30}
    pool, holdout, val = (datamodule.split(n) for n in ("pool", "holdout", "val"))
    assert torch.equal(pool.labels, torch.from_numpy(labels["train"].astype(np.int64)))  # whole MNIST train, in order
    extra = torch.from_numpy(labels["extra"].astype(np.int64))
    # holdout and val are the 60 extra digits (never QMNIST's first 10k, MNIST's test digits)
    assert len(holdout.source) == 60
    assert sorted(holdout.source_indices.tolist() + val.source_indices.tolist()) == list(range(60))
    assert torch.equal(holdout.labels, extra[holdout.source_indices])
    _check_digits(holdout.source.tensors[0], extra)
    assert datamodule.fingerprint["dataset"] == "qmnist" and datamodule.fingerprint["pool_size"] == 200


def test_qmnist_structured_noise_flips_the_paper_pairs(qmnist_dir) -> None:
    root, labels = qmnist_dir
    datamodule = _qmnist(root, noise_type="structured", label_noise=0.5)
    datamodule.setup()
    clean = torch.from_numpy(labels["train"].astype(np.int64))
    pool = datamodule.split("pool")
    assert torch.equal(datamodule.corrupted, pool.labels != clean)
    for source, target in PAPER_MNIST_PAIRS:
        flipped = datamodule.corrupted & (clean == source)
        assert int(flipped.sum()) == 10 and bool((pool.labels[flipped] == target).all())  # 20 of each class
    assert int(datamodule.corrupted.sum()) == 30 and datamodule.has_noise
    # the noise is in the fingerprint, so a store made for clean or uniform-noise data is refused
    uniform = _qmnist(root, label_noise=0.5)
    uniform.setup()
    assert uniform.fingerprint["noise_type"] == "uniform" and datamodule.fingerprint["noise_type"] == "structured"
    assert uniform.fingerprint["digest"] != datamodule.fingerprint["digest"]


def test_qmnist_missing_extra_files_say_how_to_get_them(tmp_path: Path) -> None:
    write_fashion_mnist_idx(tmp_path, num_train=20, num_test=10)
    with pytest.raises(FileNotFoundError) as info:
        _qmnist(tmp_path).setup()
    message = str(info.value)
    assert "qmnist-test-images-idx3-ubyte.gz" in message and "qmnist-test-labels-idx2-int.gz" in message
    assert "facebookresearch/qmnist" in message and "download is disabled" in message
    assert str(tmp_path / "QMNIST" / "raw") in message


def test_qmnist_download_fallback_fetches_mnist_and_qmnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls = []

    def fake(name: str):
        def download(root: str, **kwargs) -> None:
            calls.append((name, kwargs))
            if name == "QMNIST":
                write_qmnist_test(Path(root) / "QMNIST" / "raw", num_extra=30)
            elif kwargs["train"]:
                write_fashion_mnist_idx(Path(root) / "MNIST" / "raw", num_train=50, num_test=20)

        return download

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake("MNIST"))
    monkeypatch.setattr(torchvision.datasets, "QMNIST", fake("QMNIST"))
    datamodule = QMNISTDataModule(data_dir=str(tmp_path), download=True, val_size=10, batch_size=8)
    datamodule.setup()
    assert datamodule.describe() == {"pool": 50, "holdout": 20, "val": 10, "test": 20}
    assert [name for name, _ in calls] == ["MNIST", "MNIST", "QMNIST"] and calls[2][1]["what"] == "test"


def test_qmnist_file_that_is_too_short_is_a_clear_error(tmp_path: Path) -> None:
    from tests.fixtures import write_idx

    write_fashion_mnist_idx(tmp_path, num_train=20, num_test=10)
    write_idx(tmp_path / "qmnist-test-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "qmnist-test-labels-idx2-int.gz", np.zeros((5, 8), np.int32))
    with pytest.raises(ValueError, match="not QMNIST's test label file: expected more than 10000 rows"):
        _qmnist(tmp_path, val_size=2, batch_size=2).setup()


# ------------------------------------------------------------------------------------- CIFAR


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    root = tmp_path_factory.mktemp("cifar")
    return root, {"cifar10": write_cifar(root, "cifar10"), "cifar100": write_cifar(root, "cifar100", num_train=300)}


def _check_cifar_inputs(x: torch.Tensor, labels: torch.Tensor) -> None:
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    pixels = (x * std + mean) * 255
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)
    # the fixture's 255 band is in channel label % 3, rows 3 (label % 10) + 1.. : channel order and layout survive
    for image, label in zip(pixels, labels.tolist(), strict=True):
        row = 3 * (label % 10) + 1
        assert float(image[label % 3, row, 0]) == pytest.approx(255, abs=1e-3)
        assert float(image[(label + 1) % 3, row, 0]) <= 40 + 1e-3 and float(image[label % 3, row, 31]) <= 40 + 1e-3
        if label >= 10:  # CIFAR-100's tens digit: a bright column block in every channel
            assert float(image[(label + 1) % 3, 0, 3 * (label // 10)]) == pytest.approx(255, abs=1e-3)


@pytest.mark.parametrize(("module", "dataset"), [(CIFAR10DataModule, "cifar10"), (CIFAR100DataModule, "cifar100")])
def test_cifar_reads_the_pickle_batches(cifar_dir, module: type[CIFAR10DataModule], dataset: str) -> None:
    root, labels = cifar_dir
    datamodule = module(data_dir=str(root), download=False, val_size=40, batch_size=32)
    datamodule.setup()
    num_train = len(labels[dataset]["train"])
    half = num_train // 2
    assert datamodule.describe() == {"pool": half, "holdout": half - 40, "val": 40, "test": 100}
    assert datamodule.input_shape == (3, 32, 32) and datamodule.num_classes == (10 if dataset == "cifar10" else 100)
    sources = datamodule.load_sources()
    assert sources.train.tensors[0].shape == (num_train, 3, 32, 32) and sources.train.tensors[0].dtype == torch.float32
    for split in ("train", "test"):
        expected = torch.from_numpy(labels[dataset][split].astype(np.int64))
        assert torch.equal(getattr(sources, f"{split}_targets"), expected)  # batches concatenated in order
    _check_cifar_inputs(sources.train.tensors[0], sources.train_targets)
    pool = datamodule.split("pool")
    index, x, y = next(iter(datamodule.train_dataloader()))
    assert x.shape == (32, 3, 32, 32) and torch.equal(y.cpu(), pool.labels[index.cpu()])


def test_cifar_split_is_seeded_and_the_halves_are_disjoint(cifar_dir) -> None:
    root, _ = cifar_dir
    splits = []
    for seed in (0, 0, 1):
        datamodule = CIFAR10DataModule(data_dir=str(root), download=False, val_size=40, split_seed=seed, batch_size=32)
        datamodule.setup()
        splits.append({n: datamodule.split(n).source_indices for n in ("pool", "holdout", "val")})
    assert all(torch.equal(splits[0][n], splits[1][n]) for n in splits[0])
    assert not torch.equal(splits[0]["pool"], splits[2]["pool"])
    everything = torch.cat(list(splits[0].values()))
    assert torch.equal(everything.sort().values, torch.arange(400))


def test_cifar_missing_files_name_them_and_the_download(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10", num_train=50, num_test=10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError) as info:
        CIFAR10DataModule(data_dir=str(tmp_path), download=False).setup()
    message = str(info.value)
    assert "data_batch_3" in message and "data_batch_2" not in message
    assert (
        "cifar-10-python.tar.gz" in message and "download is disabled" in message and "datamodule.data_dir" in message
    )
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python/train.*cifar-100-python\.tar\.gz"):
        CIFAR100DataModule(data_dir=str(tmp_path), download=False).setup()


def test_cifar_offline_download_failure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(root: str, train: bool, download: bool) -> None:
        raise RuntimeError("simulated: no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(FileNotFoundError, match=r"the download failed \(simulated: no network\)"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=True).setup()


def test_cifar_corrupt_pickle_is_a_clear_error(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10", num_train=50, num_test=10)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:200])
    with pytest.raises(ValueError, match="test_batch is truncated or not a CIFAR pickle"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=False, val_size=5).setup()


# ------------------------------------------------------------------------ CINIC-10, image folders


@pytest.fixture(scope="module")
def cinic_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("cinic") / "CINIC-10"
    return root, write_image_folder(root, {"train": 60, "valid": 50, "test": 40}, CINIC10_CLASSES)


def _cinic(root: Path, **kwargs) -> CINIC10DataModule:
    return CINIC10DataModule(data_dir=str(root), **{"val_size": 10, "batch_size": 16, **kwargs})


def test_cinic10_uses_the_three_folders_and_caches_the_decoded_images(
    cinic_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, labels = cinic_dir
    datamodule = _cinic(root)
    datamodule.setup()
    assert datamodule.describe() == {"pool": 60, "holdout": 40, "val": 10, "test": 40}
    assert datamodule.num_classes == 10 and datamodule.input_shape == (3, 32, 32)
    pool = datamodule.split("pool")
    assert torch.equal(pool.labels, torch.from_numpy(labels["train"]))
    assert torch.equal(datamodule.split("test").labels, torch.from_numpy(labels["test"]))
    caches = sorted(p.name for p in root.glob(".*.images.npy"))
    assert [name.split(".")[1] for name in caches] == ["test", "train", "valid"]
    # the second run reads the cache and never decodes
    import rholoss.data.image_folder as image_folder

    monkeypatch.setattr(image_folder, "decode_images", lambda paths: pytest.fail("decoded again despite the cache"))
    again = _cinic(root)
    again.setup()
    assert torch.equal(again.split("pool").source.tensors[0], pool.source.tensors[0])


def test_cinic10_inputs_are_the_png_pixels_normalised(cinic_dir) -> None:
    root, _labels = cinic_dir
    datamodule = _cinic(root, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    sources = datamodule.load_sources()
    _check_cifar_inputs(sources.train.tensors[0], sources.train_targets)


def test_cinic10_relevance_keeps_five_classes_out_of_the_pool(cinic_dir) -> None:
    from hydra.utils import instantiate

    from tests.conftest import compose_config

    root, _labels = cinic_dir
    cfg = compose_config("train", ["paths.output_dir=/tmp/unused", "experiment=cinic10_relevance_resnet18_main"])
    assert list(cfg.datamodule.relevant_classes) == [0, 1, 2, 3, 4]
    datamodule = instantiate(cfg.datamodule, data_dir=str(root), val_size=10, batch_size=16)
    datamodule.setup()
    for name in ("holdout", "val", "test"):
        assert set(datamodule.split(name).labels.tolist()) <= {0, 1, 2, 3, 4}
    assert len(datamodule.split("test")) == 20 and set(datamodule.split("pool").labels.tolist()) == set(range(10))
    assert float(datamodule.relevant.float().mean()) == 0.5


def test_image_folder_cache_follows_the_file_list(tmp_path: Path) -> None:
    write_image_folder(tmp_path, {"train": 20, "test": 10}, ["a", "b"])
    ImageFolderDataModule(data_dir=str(tmp_path), val_size=4, batch_size=4).setup()
    from PIL import Image

    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "train" / "b" / "zzz.png")
    datamodule = ImageFolderDataModule(data_dir=str(tmp_path), val_size=4, batch_size=4)
    sources = datamodule.load_sources()
    assert len(sources.train_targets) == 21 and int(sources.train_targets[-1]) == 1
    assert len(list(tmp_path.glob(".train.*.images.npy"))) == 2


def test_image_folder_with_own_holdout_and_computed_statistics(tmp_path: Path) -> None:
    labels = write_image_folder(tmp_path, {"train": 30, "holdout": 12, "val": 6, "test": 9}, ["cat", "dog", "emu"])
    datamodule = ImageFolderDataModule(data_dir=str(tmp_path), batch_size=4, cache=False)
    datamodule.setup()
    assert datamodule.describe() == {"pool": 30, "holdout": 12, "val": 6, "test": 9}
    assert datamodule.num_classes == 3 and datamodule.input_shape == (3, 32, 32)
    assert torch.equal(datamodule.split("holdout").labels, torch.from_numpy(labels["holdout"]))
    x = datamodule.split("pool").source.tensors[0]
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)  # standardised with its own statistics
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    assert not list(tmp_path.glob(".*.npy"))  # cache=False writes nothing


def test_image_folder_missing_folders_and_mixed_sizes_are_clear_errors(tmp_path: Path) -> None:
    write_image_folder(tmp_path, {"train": 6}, ["a", "b"])
    with pytest.raises(FileNotFoundError, match=r"train/, test/ .*test is missing.*<split>/<class name>/<image file>"):
        ImageFolderDataModule(data_dir=str(tmp_path)).setup()
    with pytest.raises(FileNotFoundError, match=r"train/, valid/, test/.*datashare\.ed\.ac\.uk"):
        CINIC10DataModule(data_dir=str(tmp_path / "nowhere")).setup()
    write_image_folder(tmp_path, {"test": 4}, ["a", "b"], size=40)
    with pytest.raises(ValueError, match=r"the test images are 40x40 but the train images 32x32.*resize them first"):
        ImageFolderDataModule(data_dir=str(tmp_path), cache=False).load_sources()
    from PIL import Image

    Image.new("RGB", (40, 40)).save(tmp_path / "train" / "b" / "odd.png")
    with pytest.raises(ValueError, match=r"odd\.png is 40x40 but .*00000\.png is 32x32.*resize them first"):
        ImageFolderDataModule(data_dir=str(tmp_path), cache=False).load_sources()


# ------------------------------------------------------------------------------------- Clothing-1M


@pytest.fixture(scope="module")
def clothing_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("clothing1m")
    return root, write_clothing1m(root)


def test_clothing1m_splits_follow_the_annotation_files(clothing_dir) -> None:
    root, lists = clothing_dir
    datamodule = Clothing1MDataModule(data_dir=str(root), batch_size=8, eval_batch_size=10, num_workers=0)
    datamodule.setup()
    assert datamodule.describe() == {"pool": 40, "holdout": 20, "val": 14, "test": 14}
    for name, key in (("pool", "train"), ("holdout", "holdout"), ("val", "val"), ("test", "test")):
        assert datamodule.split(name).labels.tolist() == [label for _, label in lists[key]]
    # the pool's labels are the noisy ones even where the clean file has another label for the image
    assert datamodule.split("pool").labels[0] == lists["train"][0][1]


def test_clothing1m_scores_the_pool_without_augmentation(clothing_dir) -> None:
    root, lists = clothing_dir
    datamodule = Clothing1MDataModule(data_dir=str(root), batch_size=8, eval_batch_size=10, num_workers=0)
    datamodule.setup()
    index, x, _y = next(iter(datamodule.pool_dataloader()))
    assert index.tolist() == list(range(10)) and x.shape == (10, 3, 224, 224)
    # a plain image of grey level 10 * label comes out as that level, ImageNet-normalised
    level = torch.tensor([10.0 * label / 255 for _, label in lists["train"][:10]]).view(-1, 1)
    expected = (level - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x.mean(dim=(2, 3)), expected, atol=0.05)
    assert datamodule.split("pool").transform is datamodule.eval_transform
    train = datamodule.train_dataloader()
    assert train.dataset.transform is datamodule.train_transform
    assert "RandomCrop" in repr(datamodule.train_transform) and "RandomCrop" not in repr(datamodule.eval_transform)
    assert datamodule.train_augmentation() is None  # augmented per image, not again on the device
    _, train_x, _ = next(iter(train))
    assert train_x.shape == (8, 3, 224, 224)
    # the IL model (holdout) and target training without augment see the central crop
    for kwargs in ({"train_split": "holdout"}, {"augment": False}):
        plain = Clothing1MDataModule(data_dir=str(root), batch_size=8, num_workers=0, **kwargs)
        plain.setup()
        assert plain.train_dataloader().dataset.transform is plain.eval_transform


def test_clothing1m_finds_an_annotations_folder(tmp_path: Path) -> None:
    write_clothing1m(tmp_path, {"train": 8, "holdout": 4, "val": 2, "test": 2}, annotations_dir="annotations")
    datamodule = Clothing1MDataModule(data_dir=str(tmp_path), batch_size=4, num_workers=0)
    datamodule.setup()
    assert datamodule.describe() == {"pool": 8, "holdout": 4, "val": 2, "test": 2}


def test_clothing1m_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"noisy_label_kv\.txt.*clean_test_key_list\.txt.*on request"):
        Clothing1MDataModule(data_dir=str(tmp_path)).setup()
    lists = write_clothing1m(tmp_path, {"train": 8, "holdout": 4, "val": 2, "test": 2})
    (tmp_path / lists["val"][0][0]).unlink()
    with pytest.raises(FileNotFoundError, match=r"clean_val_key_list\.txt lists 2 images but .* is not there"):
        Clothing1MDataModule(data_dir=str(tmp_path)).setup()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / lists["val"][0][0])
    with open(tmp_path / "clean_test_key_list.txt", "a") as handle:
        handle.write("images/unknown.jpg\n")
    with pytest.raises(
        ValueError, match=r"1 images without a label in clean_label_kv\.txt \(first: images/unknown\.jpg\)"
    ):
        Clothing1MDataModule(data_dir=str(tmp_path)).load_sources()


# ------------------------------------------------------------------------------------- tensor file


def test_tensor_file_with_and_without_a_holdout(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    data = {
        "x_train": torch.randn(80, 2, 3, generator=generator),
        "y_train": torch.arange(80) % 4,
        "x_test": torch.randn(20, 2, 3, generator=generator),
        "y_test": torch.arange(20) % 3,
    }
    torch.save(data, tmp_path / "plain.pt")
    plain = TensorFileDataModule(path=str(tmp_path / "plain.pt"), val_size=10, batch_size=8)
    plain.setup()
    assert plain.describe() == {"pool": 35, "holdout": 35, "val": 10, "test": 20}
    assert plain.num_classes == 4 and plain.input_shape == (2, 3)
    pool = plain.split("pool")
    assert torch.equal(pool.source.tensors[0][pool.source_indices], data["x_train"][pool.source_indices])
    torch.save({**data, "x_holdout": torch.randn(30, 2, 3), "y_holdout": torch.arange(30) % 4}, tmp_path / "ho.pt")
    holdout = TensorFileDataModule(
        path=str(tmp_path / "ho.pt"), val_size=10, batch_size=8, val_from="holdout", num_classes=6
    )
    holdout.setup()
    assert holdout.describe() == {"pool": 80, "holdout": 20, "val": 10, "test": 20} and holdout.num_classes == 6


def test_tensor_file_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist.*torch\.save"):
        TensorFileDataModule(path=str(tmp_path / "none.pt")).setup()
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    torch.save({"x_train": x, "y_train": y, "x_holdout": torch.zeros(2, 2)}, tmp_path / "a.pt")
    with pytest.raises(ValueError, match=r"lacks x_test, y_test, x_holdout or y_holdout"):
        TensorFileDataModule(path=str(tmp_path / "a.pt")).setup()
    torch.save({"x_train": x, "y_train": torch.zeros(3), "x_test": x, "y_test": y}, tmp_path / "b.pt")
    with pytest.raises(ValueError, match="y_train must be a 1-d integer tensor"):
        TensorFileDataModule(path=str(tmp_path / "b.pt")).setup()
    torch.save({"x_train": x, "y_train": torch.tensor([0, 1, 2, 5]), "x_test": x, "y_test": y}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2, found 0\.\.5"):
        TensorFileDataModule(path=str(tmp_path / "c.pt"), num_classes=3).setup()
