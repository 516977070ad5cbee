"""Every config composes, instantiates and takes the documented overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from rholoss.pipelines import build_model
from rholoss.selection import list_selections
from tests.conftest import CONFIG_DIR, compose_config

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
BASE = ["paths.output_dir=/tmp/unused"]


@pytest.mark.parametrize("config_name", ["train", "train_irreducible"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_for_both_stages(config_name: str, experiment: str) -> None:
    cfg = compose_config(config_name, [*BASE, f"experiment={experiment}"])
    datamodule = instantiate(cfg.datamodule)
    assert datamodule.batch_size == (cfg.large_batch_size if config_name == "train" else cfg.batch_size)
    trainer_cfg = cfg.trainer
    assert trainer_cfg.val_check_interval == cfg.val_every_n_steps


# The experiments that reproduce the paper; the others (fmnist_noisy_mlp*, synthetic_*, code_lm_*) take
# the project's defaults or their own schedule.
PAPER_EXPERIMENTS = [
    e for e in EXPERIMENTS if e.endswith(("_irred", "_main")) and not e.startswith(("code_lm", "fmnist_noisy_mlp"))
]


@pytest.mark.parametrize("experiment", PAPER_EXPERIMENTS)
def test_the_papers_experiments_train_at_a_constant_rate(experiment: str) -> None:
    stage = "train_irreducible" if experiment.endswith("_irred") else "train"
    assert compose_config(stage, [*BASE, f"experiment={experiment}"]).scheduler._target_ == "rholoss.schedules.Constant"


def test_defaults_are_the_offline_fashion_mnist_experiment() -> None:
    cfg = compose_config("train", BASE)
    assert cfg.datamodule._target_.endswith("FashionMNISTDataModule")
    assert cfg.datamodule.label_noise == 0.1
    assert cfg.model._target_.endswith("MLP")
    assert cfg.selection.name == "reducible_loss" and cfg.selection.schedule.kind == "lr"
    assert cfg.scheduler._target_ == "rholoss.schedules.WarmupCosine" and cfg.optimizer.fused
    assert compose_config("train_irreducible", BASE).datamodule.label_noise == 0.1


def test_the_il_stage_defaults_to_fashion_mnists_own_il_recipe_on_the_same_data() -> None:
    """run_irreducible.py's default is fmnist_noisy_mlp_irred: run.py's data (so its store fits run.py's
    default), a smaller MLP trained longer at a cosine rate."""
    il, target = compose_config("train_irreducible", BASE), compose_config("train", BASE)
    assert il.model.hidden_sizes == [256, 256] and il.trainer.max_steps == 3000 and il.batch_size == 128
    assert il.scheduler._target_ == "rholoss.schedules.WarmupCosine" and il.scheduler.get("warmup", 0) == 0
    assert target.model.hidden_sizes == [512, 512, 512]
    data = {name: {**cfg.datamodule, "batch_size": None} for name, cfg in (("il", il), ("target", target))}
    assert data["il"] == data["target"]


def test_every_selection_function_has_a_config() -> None:
    """Each rule has its config; a config beyond them is a named variant of one (a schedule, settings)."""
    configs = sorted(p.stem for p in (CONFIG_DIR / "selection").glob("*.yaml"))
    assert set(list_selections()) <= set(configs)
    for name in set(configs) - set(list_selections()):
        assert compose_config("train", [f"selection={name}"]).selection.name in list_selections()


def test_documented_overrides_just_work() -> None:
    cfg = compose_config(
        "train",
        [
            *BASE,
            "datamodule.label_noise=0.2",
            "selection.percent_train=0.2",
            "seed=3",
            "trainer.max_steps=500",
            "selection=uniform",
        ],
    )
    assert (cfg.datamodule.label_noise, cfg.selection.percent_train, cfg.seed) == (0.2, 0.2, 3)
    assert (cfg.trainer.max_steps, cfg.selection.name) == (500, "uniform")


@pytest.mark.parametrize(
    ("override", "listed"),
    [
        ("selection=reducible_los", "reducible_loss"),
        ("datamodule=fmnist", "fashion_mnist"),
        ("model=resnet", "resnet18"),
    ],
)
def test_unknown_names_are_errors_that_list_the_options(override: str, listed: str) -> None:
    with pytest.raises(ConfigCompositionException, match=listed):
        compose_config("train", [*BASE, override])


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ConfigCompositionException, match="percent_trian"):
        compose_config("train", [*BASE, "selection.percent_trian=0.2"])


def test_loggers_instantiate(tmp_path: Path) -> None:
    cfg = compose_config("train", [f"paths.output_dir={tmp_path}", "logger=wandb"])
    assert set(cfg.logger) == {"csv", "wandb"}
    assert cfg.logger.wandb.mode in {"offline", "disabled", "online"}


def test_another_models_settings_are_refused_naming_the_removal() -> None:
    """experiment=synthetic_noisy_mlp sets the MLP's hidden_sizes; model=resnet18 does not take it."""
    overrides = [*BASE, "experiment=synthetic_noisy_mlp", "model=resnet18"]
    with pytest.raises(ValueError, match=r"does not take hidden_sizes.*~model\.hidden_sizes"):
        build_model(compose_config("train", overrides).model, (3, 32, 32), 10)
    model = build_model(compose_config("train", [*overrides, "~model.hidden_sizes"]).model, (3, 32, 32), 10)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.slow
def test_model_compile_compiles_in_place_and_keeps_state_dict_keys() -> None:
    plain_cfg = compose_config("train", [*BASE, "model=mlp", "model.hidden_sizes=[16]"])
    compiled_cfg = compose_config("train", [*BASE, "model=mlp", "model.hidden_sizes=[16]", "model.compile=true"])
    torch.manual_seed(0)
    plain = build_model(plain_cfg.model, (1, 4, 4), 3)
    torch.manual_seed(0)
    compiled = build_model(compiled_cfg.model, (1, 4, 4), 3)
    assert compiled._compiled_call_impl is not None and plain._compiled_call_impl is None
    assert compiled.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(5, 1, 4, 4)
    assert torch.allclose(compiled(x), plain(x), atol=1e-5)
