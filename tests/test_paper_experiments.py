"""The paper's experiment configs: each IL/target pair reads the same data (so run.py finds the
store run_irreducible.py wrote), and both stages run end to end on a tiny CIFAR-10 fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rholoss.irreducible import IrreducibleLossStore
from rholoss.pipelines import train, train_irreducible
from tests.conftest import CONFIG_DIR, QUIET, compose_config
from tests.fixtures import write_cifar

# Pairs whose target model differs from the IL model: Clothing-1M's target is a ResNet-50 (the release's
# c1m_resnet50_main) and its IL model a ResNet-18; the small-CNN IL model serves CIFAR-10's ResNet-18 target.
TARGET_OF = {"clothing1m_resnet18_irred": "clothing1m_resnet50_main", "cifar10_smallcnn_irred": "cifar10_resnet18_main"}
PAIRS = [
    (irred.stem, TARGET_OF.get(irred.stem, irred.stem.replace("_irred", "_main")))
    for irred in sorted((CONFIG_DIR / "experiment").glob("*_irred.yaml"))
]


def _data_settings(config_name: str, experiment: str) -> dict:
    cfg = compose_config(config_name, ["paths.output_dir=/tmp/unused", f"experiment={experiment}"])
    settings = OmegaConf.to_container(cfg.datamodule, resolve=True)
    settings.pop("batch_size")  # n_B for the target, the IL model's own batch for the holdout
    return settings


@pytest.mark.parametrize(("irred", "main"), PAIRS)
def test_each_pair_reads_the_same_data(irred: str, main: str) -> None:
    assert _data_settings("train_irreducible", irred) == _data_settings("train", main)


def test_the_paper_experiments_are_all_there() -> None:
    names = {p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml")}
    for dataset in ("qmnist_mlp", "cifar10_resnet18", "cifar100_resnet18", "cinic10_resnet18", "cinic10_relevance_resnet18"):
        assert {f"{dataset}_irred", f"{dataset}_main"} <= names
    assert "clothing1m_resnet18_irred" in names


def test_paper_hyperparameters() -> None:
    def cfg(config_name: str, experiment: str):
        return compose_config(config_name, ["paths.output_dir=/tmp/unused", f"experiment={experiment}"])

    for experiment in ("cifar10_resnet18_main", "cifar100_resnet18_main", "qmnist_mlp_main"):
        main = cfg("train", experiment)
        assert (main.large_batch_size, main.selection.percent_train, main.optimizer.lr) == (320, 0.1, 0.001)
        assert main.optimizer._target_ == "torch.optim.AdamW"
    assert cfg("train", "cinic10_resnet18_main").large_batch_size == 640
    assert cfg("train_irreducible", "clothing1m_resnet18_irred").batch_size == 64
    assert cfg("train", "cifar10_resnet18_main").datamodule.val_from == "holdout"


TINY = ["datamodule.download=false", "datamodule.val_size=40", "datamodule.label_noise=0.2", "model=small_cnn"]


@pytest.mark.slow
def test_both_stages_on_a_tiny_cifar10(tmp_path: Path) -> None:
    write_cifar(tmp_path / "data", "cifar10", num_train=400, num_test=100)
    common = [*QUIET, f"paths.root_dir={tmp_path}", *TINY]
    il = train_irreducible(
        compose_config(
            "train_irreducible",
            [*common, "experiment=cifar10_resnet18_irred", "batch_size=32", "trainer.max_steps=40",
             "val_every_n_steps=20", f"paths.output_dir={tmp_path / 'il'}"],
        )
    )
    assert il["dataset"]["dataset"] == "cifar10" and il["dataset"]["pool_size"] == 200
    assert il["val_acc"] > 0.5  # the fixture's classes are easy: the IL model learns them from 160 images
    assert len(IrreducibleLossStore.load(Path(il["il_store"])).losses) == 200
    runs = {
        name: train(
            compose_config(
                "train",
                [*common, "experiment=cifar10_resnet18_main", f"selection={name}", "large_batch_size=100",
                 "trainer.max_steps=20", "val_every_n_steps=10", f"paths.output_dir={tmp_path / name}"],
            )
        )
        for name in ("uniform", "reducible_loss")
    }
    rho = runs["reducible_loss"]
    assert rho["il_store"] == il["il_store"]  # found in the cache: the pair shares its data settings
    assert (rho["steps"], rho["large_batch_size"], rho["batch_size"]) == (20, 100, 10)
    assert rho["noisy_selected_fraction"] < runs["uniform"]["noisy_selected_fraction"]
