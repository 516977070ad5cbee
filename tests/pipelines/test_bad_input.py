"""Bad input found before training, with a message that names the problem and the fix.

The rest of the bad-input checks live beside their subject: config names and keys (test_configs),
percent_train and n_B (test_selection, test_pipeline), IL store files (test_store), dataset files
(test_data), checkpoints and non-finite losses (test_resume).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rholoss.data import SyntheticDataModule
from rholoss.irreducible import IrreducibleLossStore, StoreError
from rholoss.pipelines import train, train_irreducible
from tests.conftest import synthetic_config


@pytest.fixture(scope="module")
def store_for_the_default_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store made for synthetic_noisy_mlp's pool (finite losses; their values do not matter here)."""
    datamodule = SyntheticDataModule(val_size=400, label_noise=0.2)
    datamodule.setup()
    path = tmp_path_factory.mktemp("store") / "il.pt"
    IrreducibleLossStore(torch.rand(len(datamodule.split("pool"))), datamodule.fingerprint).save(path)
    return path


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("datamodule.split_seed=1", "split_seed: store has 0, this run has 1"),
        ("datamodule.label_noise=0.1", "label_noise: store has 0.2, this run has 0.1"),
        ("datamodule.train_subset=3000", "pool_size: store has 1800, this run has 1300"),
        ("datamodule.data_seed=1", "content"),
    ],
)
def test_a_store_for_other_data_is_refused_before_training(
    store_for_the_default_pool: Path, tmp_path: Path, override: str, named: str
) -> None:
    with pytest.raises(StoreError, match=named) as error:
        train(
            synthetic_config(
                tmp_path, "train", f"irreducible.path={store_for_the_default_pool}", override, output="run"
            )
        )
    assert "Make a store for this data with run_irreducible.py" in str(error.value)
    assert not (tmp_path / "run" / "results.json").exists()


def test_the_store_is_accepted_for_its_own_pool(store_for_the_default_pool: Path, tmp_path: Path) -> None:
    result = train(
        synthetic_config(
            tmp_path, "train", f"irreducible.path={store_for_the_default_pool}", "trainer.max_steps=2", output="run"
        )
    )
    assert result["il_store"] == str(store_for_the_default_pool)


def test_a_store_for_another_dataset_is_refused(tmp_path: Path) -> None:
    datamodule = SyntheticDataModule(val_size=400, label_noise=0.2)
    datamodule.setup()
    path = tmp_path / "il.pt"
    fingerprint = {**datamodule.fingerprint, "dataset": "fashion_mnist"}
    IrreducibleLossStore(torch.rand(len(datamodule.split("pool"))), fingerprint).save(path)
    with pytest.raises(StoreError, match="dataset: store has 'fashion_mnist', this run has 'synthetic'"):
        train(synthetic_config(tmp_path, "train", f"irreducible.path={path}", output="run"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_cuda_requested_without_a_gpu(tmp_path: Path, accelerator: str) -> None:
    with pytest.raises(ValueError, match=f"trainer.accelerator={accelerator} asks for a CUDA GPU.*Use trainer=cpu"):
        train_irreducible(
            synthetic_config(tmp_path, "train_irreducible", f"trainer.accelerator={accelerator}", output="run")
        )
    assert not (tmp_path / "run").exists()  # refused before any output


@pytest.mark.parametrize("classes", ["[]", "[7]", "[-1,2]"])
def test_relevant_classes_outside_the_dataset_are_refused(tmp_path: Path, classes: str) -> None:
    with pytest.raises(
        ValueError, match=r"relevant_classes=.* must be a non-empty list of this dataset's classes, 0 to 3"
    ):
        train_irreducible(
            synthetic_config(tmp_path, "train_irreducible", f"datamodule.relevant_classes={classes}", output="run")
        )


@pytest.mark.parametrize(
    ("subset", "message"),
    [
        (401, r"The pool is empty: 401 points minus val_size=400 and holdout_fraction=0.99 leave nothing"),
        (600, r"The pool split has 2 points, fewer than one batch of 32: lower the batch size or use more data"),
    ],
)
def test_an_empty_or_too_small_pool_is_refused(tmp_path: Path, subset: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train(
            synthetic_config(
                tmp_path,
                "train",
                "selection=uniform",
                f"datamodule.train_subset={subset}",
                "datamodule.holdout_fraction=0.99",
                output="run",
            )
        )


def test_plain_ddp_is_refused_for_its_buffer_broadcast(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"trainer.strategy=ddp broadcasts rank 0's module buffers.*use trainer=ddp"):
        train(synthetic_config(tmp_path, "train", "selection=uniform", "trainer.strategy=ddp", output="run"))
    assert not (tmp_path / "run" / "results.json").exists()
