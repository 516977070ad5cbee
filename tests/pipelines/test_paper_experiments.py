"""The paper's experiment configs: each IL/target pair reads the same data (so run.py finds the
store run_irreducible.py wrote), and every pair runs both stages on tiny fixture data in its real format."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rholoss.irreducible import IrreducibleLossStore
from rholoss.pipelines import train, train_irreducible
from tests.conftest import CONFIG_DIR, compose_config, config_in
from tests.fixtures import (
    CINIC10_CLASSES,
    write_cifar,
    write_clothing1m,
    write_fashion_mnist_idx,
    write_image_folder,
    write_qmnist_test,
)

# IL experiments whose target is named differently: Clothing-1M's target is a ResNet-50 (the release's
# c1m_resnet50_main) and its IL model a ResNet-18; the small-CNN IL model and the two-halves IL models (no
# holdout data) serve CIFAR-10's ResNet-18 target; the project's own Fashion-MNIST IL recipe serves
# run.py's default experiment.
TARGET_OF = {
    "fmnist_noisy_mlp_irred": "fmnist_noisy_mlp",
    "clothing1m_resnet18_irred": "clothing1m_resnet50_main",
    "cifar10_smallcnn_irred": "cifar10_resnet18_main",
    "cifar10_resnet18_two_halves_irred": "cifar10_resnet18_main",
}
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
    for dataset in (
        "qmnist_mlp",
        "cifar10_resnet18",
        "cifar100_resnet18",
        "cinic10_resnet18",
        "cinic10_relevance_resnet18",
    ):
        assert {f"{dataset}_irred", f"{dataset}_main"} <= names
    assert "clothing1m_resnet18_irred" in names
    for variant in (
        "qmnist_mlp_noise_uniform",
        "qmnist_mlp_noise_structured",
        "cifar10_resnet18_noise_uniform",
        "cifar10_resnet18_noise_structured",
        "cifar100_resnet18_noise_uniform",
        "cinic10_resnet18_noise_uniform",
    ):
        assert {f"{variant}_irred", f"{variant}_main"} <= names
    assert {"cifar10_smallcnn_irred", "cifar10_resnet18_two_halves_irred"} <= names


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


def test_noise_and_il_variants_change_only_what_they_name() -> None:
    """The variants inherit their base experiment (Hydra defaults), so they differ from it only in the
    noise (10% uniform, or the confused pairs flipped with probability 0.5, paper Sec. 5.1) or, for the
    two-halves IL models, in the strategy and the per-model step budget."""

    def cfg(config_name: str, experiment: str) -> dict:
        composed = compose_config(config_name, ["paths.output_dir=/tmp/unused", f"experiment={experiment}"])
        return OmegaConf.to_container(composed, resolve=True)

    noise = {
        "noise_uniform": {"noise_type": "uniform", "label_noise": 0.1, "noise_pairs": None},
        "noise_structured": {"noise_type": "structured", "label_noise": 0.5},
    }
    for variant, stage in ((v, s) for v in noise for s in ("irred", "main")):
        for base in ("qmnist_mlp", "cifar10_resnet18"):
            config_name = "train_irreducible" if stage == "irred" else "train"
            varied, plain = cfg(config_name, f"{base}_{variant}_{stage}"), cfg(config_name, f"{base}_{stage}")
            assert {k: varied["datamodule"][k] for k in noise[variant]} == noise[variant]
            for key in noise[variant]:
                varied["datamodule"][key] = plain["datamodule"][key]
            varied["datamodule"]["noise_pairs"] = plain["datamodule"]["noise_pairs"]
            assert varied == plain
    assert cfg("train", "qmnist_mlp_noise_structured_main")["datamodule"]["noise_pairs"] is None  # the MNIST pairs
    assert cfg("train", "cifar10_resnet18_noise_structured_main")["datamodule"]["noise_pairs"] == [
        [3, 5],
        [5, 3],
        [1, 9],
        [9, 1],  # cat <-> dog, automobile <-> truck
    ]
    halves = cfg("train_irreducible", "cifar10_resnet18_two_halves_irred")
    changed = (halves["irreducible"]["strategy"], halves["trainer"]["max_steps"], halves["val_every_n_steps"])
    assert changed == ("two_halves", 4000, 40)
    halves["irreducible"]["strategy"], halves["trainer"]["max_steps"], halves["val_every_n_steps"] = "holdout", 6300, 63
    halves["trainer"]["val_check_interval"] = 63
    assert halves == cfg("train_irreducible", "cifar10_resnet18_irred")


TINY = ["datamodule.download=false", "datamodule.val_size=40", "datamodule.label_noise=0.2", "model=small_cnn"]


@pytest.mark.slow
def test_both_stages_on_a_tiny_cifar10(tmp_path: Path) -> None:
    write_cifar(tmp_path / "data", "cifar10", num_train=400, num_test=100)
    il = train_irreducible(
        config_in(
            tmp_path,
            "train_irreducible",
            *TINY,
            "experiment=cifar10_resnet18_irred",
            "batch_size=32",
            "trainer.max_steps=40",
            "val_every_n_steps=20",
            output="il",
        )
    )
    assert il["dataset"]["dataset"] == "cifar10" and il["dataset"]["pool_size"] == 200
    assert il["val_acc"] > 0.5  # the fixture's classes are easy: the IL model learns them from 160 images
    assert len(IrreducibleLossStore.load(Path(il["il_store"])).losses) == 200
    runs = {
        name: train(
            config_in(
                tmp_path,
                "train",
                *TINY,
                "experiment=cifar10_resnet18_main",
                f"selection={name}",
                "large_batch_size=100",
                "trainer.max_steps=20",
                "val_every_n_steps=10",
                output=name,
            )
        )
        for name in ("uniform", "reducible_loss")
    }
    rho = runs["reducible_loss"]
    assert rho["il_store"] == il["il_store"]  # found in the cache: the pair shares its data settings
    assert (rho["steps"], rho["large_batch_size"], rho["batch_size"]) == (20, 100, 10)
    assert rho["noisy_selected_fraction"] < runs["uniform"]["noisy_selected_fraction"]


# --- every pair, both stages, on fixture data in each dataset's real on-disk format ----------------------

# Pool sizes the fixture below gives: CIFAR half of the training files, MNIST's training digits, CINIC-10's
# train folder, Clothing-1M's noisy list. Small, since the ResNets run as configured (~35 ms per image on CPU).
FIXTURE_POOL = {"qmnist": 40, "cifar10": 20, "cifar100": 20, "cinic10": 20, "clothing1m": 10}
# What a dataset's config needs to read the fixture: small val splits and no download attempt. Clothing-1M
# has its own clean val list and reads through DataLoader workers (none here).
FIXTURE_OVERRIDES = {
    "qmnist": ["datamodule.download=false", "datamodule.val_size=4"],
    "cifar10": ["datamodule.download=false", "datamodule.val_size=4"],
    "cifar100": ["datamodule.download=false", "datamodule.val_size=4"],
    "cinic10": ["datamodule.val_size=4"],
    "clothing1m": ["datamodule.num_workers=0"],
}
IMAGE_PAIRS = [pair for pair in PAIRS if pair[0].split("_")[0] in FIXTURE_POOL]
# The only model overrides, (IL stage, target stage): Clothing-1M's ResNet-50 target trains from scratch
# (the fixture holds no ImageNet weights). The noise variants differ from their base pairs only in the
# noise; the base pairs run here with their own ResNet-18, the variants with the small CNN (saves ~40 s
# on a 2-core CPU).
MODEL_OVERRIDES = {
    "clothing1m_resnet18_irred": ([], ["model.pretrained_path=null"]),
    **{irred: (["model=small_cnn"], ["model=small_cnn"]) for irred, _ in IMAGE_PAIRS if "_noise_" in irred},
}


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data_dir holding every image dataset of the paper experiments, tiny, where their configs look."""
    data = tmp_path_factory.mktemp("paper_data")
    write_fashion_mnist_idx(data / "MNIST" / "raw", num_train=FIXTURE_POOL["qmnist"], num_test=10)
    write_qmnist_test(data / "QMNIST" / "raw", num_extra=20)
    write_cifar(data, "cifar10", num_train=2 * FIXTURE_POOL["cifar10"], num_test=10)
    write_cifar(data, "cifar100", num_train=2 * FIXTURE_POOL["cifar100"], num_test=10)
    write_image_folder(data / "CINIC-10", {"train": FIXTURE_POOL["cinic10"], "valid": 20, "test": 10}, CINIC10_CLASSES)
    write_clothing1m(data / "clothing1m", {"train": FIXTURE_POOL["clothing1m"], "holdout": 4, "val": 2, "test": 2})
    return data


def test_the_image_pairs_are_all_run() -> None:
    # All but the text pairs (cola, sst2: tests/data/test_text.py runs cola), the code language model
    # (tests/pipelines/test_language_models.py runs it) and Fashion-MNIST's own IL recipe
    # (tests/pipelines/test_pipeline.py runs both stages on real Fashion-MNIST).
    assert len(IMAGE_PAIRS) == len(PAIRS) - 4


@pytest.mark.slow
@pytest.mark.parametrize(("irred", "main"), IMAGE_PAIRS)
def test_each_pair_runs_both_stages_on_fixture_data(paper_data: Path, tmp_path: Path, irred: str, main: str) -> None:
    """Each experiment as configured (its model, data, noise, IL strategy), only shrunk in steps and
    batch sizes: two IL steps write a store that the target experiment finds and trains on for two steps."""
    dataset = irred.split("_")[0]
    common = [f"paths.data_dir={paper_data}", *FIXTURE_OVERRIDES[dataset], "trainer.max_steps=2", "val_every_n_steps=2"]
    il_models, target_models = MODEL_OVERRIDES.get(irred, ([], []))
    il = train_irreducible(
        config_in(
            tmp_path, "train_irreducible", *common, f"experiment={irred}", *il_models, "batch_size=4", output="il"
        )
    )
    target = train(
        config_in(
            tmp_path,
            "train",
            *common,
            f"experiment={main}",
            *target_models,
            "selection=reducible_loss",
            "large_batch_size=10",
            output="main",
        )
    )
    pool_size = FIXTURE_POOL[dataset]
    assert il["dataset"]["pool_size"] == pool_size
    assert len(IrreducibleLossStore.load(Path(il["il_store"])).losses) == pool_size
    assert il["steps"] == (4 if il["strategy"] == "two_halves" else 2)  # two steps per IL model
    assert target["il_store"] == il["il_store"]  # found in the cache: same pool, same fingerprint
    assert (target["steps"], target["large_batch_size"], target["batch_size"]) == (2, 10, 1)
    assert target["dataset"] == il["dataset"]
    settings = compose_config("train", ["paths.output_dir=/tmp/unused", f"experiment={main}"]).datamodule
    noise = {key: settings[key] for key in ("noise_type", "label_noise", "noise_pairs") if key in settings}
    assert {key: target["dataset"][key] for key in noise} == OmegaConf.to_container(OmegaConf.create(noise))
    assert len(noise) == (0 if dataset == "clothing1m" else 3)  # Clothing-1M's labels are noisy as they come
