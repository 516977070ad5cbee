"""Image folders decoded per image in DataLoader workers (``datamodule.decode=lazy``): the same inputs
as the in-memory path, images of any size resized, the automatic choice, and both stages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rholoss.data import ImageFolderDataModule
from rholoss.pipelines import train, train_irreducible
from tests.conftest import config_in
from tests.fixtures import write_image_folder

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ["ant", "bee", "cat", "dog"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    write_image_folder(root, {"train": 400, "test": 80}, CLASSES)
    return root


def make(root: Path, **settings) -> ImageFolderDataModule:
    datamodule = ImageFolderDataModule(
        data_dir=str(root), **{"val_size": 40, "batch_size": 32, "cache": False, **settings}
    )
    datamodule.setup()
    return datamodule


def test_lazy_decoding_serves_the_in_memory_inputs(folder: Path) -> None:
    # Statistics from all 400 training images either way (the lazy sample holds up to 1,024).
    memory = make(folder, decode="memory")
    lazy = make(folder, decode="lazy", on_device=False, num_workers=2, eval_batch_size=100)
    assert lazy.describe() == memory.describe() and lazy.input_shape == memory.input_shape == (3, 32, 32)
    assert lazy.fingerprint == memory.fingerprint  # the same pool: an IL store of one serves the other
    x, y = memory.split_tensors("pool", torch.device("cpu"))
    for index, inputs, labels in lazy.pool_dataloader():
        assert torch.allclose(inputs, x[index], atol=1e-4) and torch.equal(labels, y[index])


def test_images_of_mixed_sizes_are_resized_and_statistics_estimated(tmp_path: Path) -> None:
    write_image_folder(tmp_path, {"train": 60, "test": 20}, CLASSES, size=48)
    write_image_folder(tmp_path / "more", {"train": 20}, CLASSES, size=32)
    for path in (tmp_path / "more" / "train").rglob("*.png"):
        path.rename(tmp_path / "train" / path.parent.name / f"small-{path.name}")
    with pytest.raises(ValueError, match=r"several sizes .*set datamodule\.image_size"):
        make(tmp_path, decode="lazy", val_size=8)
    datamodule = make(tmp_path, decode="lazy", val_size=8, image_size=[24, 20])
    assert datamodule.input_shape == (3, 24, 20)
    _, x, _ = next(iter(datamodule.train_dataloader()))
    assert x.shape == (32, 3, 24, 20)
    assert x.mean().abs() < 0.3 and 0.6 < x.std() < 1.4  # standardised with a sample's statistics
    in_memory = make(tmp_path, decode="memory", val_size=8, image_size=24)  # the in-memory path resizes too
    assert in_memory.input_shape == (3, 24, 24)


def test_auto_goes_lazy_only_above_the_memory_limit(folder: Path) -> None:
    small = make(folder, on_device=True)
    assert small.on_device and isinstance(small.split("pool").source, torch.utils.data.TensorDataset)
    large = make(folder, on_device=True, memory_limit_gb=1e-4)  # 480 images of 32x32 are 1.4 MB
    assert not large.on_device and not isinstance(large.split("pool").source, torch.utils.data.TensorDataset)
    assert next(iter(large.train_dataloader()))[1].shape == (32, 3, 32, 32)


def test_lazy_with_on_device_and_unknown_modes_are_clear_errors(folder: Path) -> None:
    with pytest.raises(ValueError, match=r"decode=lazy .* set datamodule\.on_device=false"):
        ImageFolderDataModule(data_dir=str(folder), decode="lazy", on_device=True)
    with pytest.raises(ValueError, match=r"decode must be one of auto, memory, lazy"):
        ImageFolderDataModule(data_dir=str(folder), decode="stream")


@pytest.mark.slow
def test_a_lazy_folder_of_pngs_trains_both_stages(folder: Path, tmp_path: Path) -> None:
    data = [
        "experiment=synthetic_noisy_mlp",
        "datamodule=image_folder",
        f"datamodule.data_dir={folder}",
        "datamodule.decode=lazy",
        "datamodule.on_device=false",
        "datamodule.num_workers=2",
        "datamodule.augment=true",
        "datamodule.val_size=40",
        "datamodule.label_noise=0.1",
        "datamodule.cache=false",
    ]
    il = train_irreducible(config_in(tmp_path, "train_irreducible", *data, "trainer.max_steps=40", output="il"))
    assert il["val_acc"] > 0.9  # the classes light up different rows: easy once decoded right
    result = train(
        config_in(
            tmp_path, "train", *data, "large_batch_size=64", "trainer.max_steps=8", "val_every_n_steps=4", output="run"
        )
    )
    assert result["il_store"] == il["il_store"] and result["steps"] == 8
