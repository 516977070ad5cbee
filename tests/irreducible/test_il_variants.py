"""IL model variants (paper Sec. 5.3): a fraction of the holdout, no holdout at all (two halves of
the pool), and one store reused by targets of other architectures and hyperparameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig

from rholoss.data import SyntheticDataModule
from rholoss.data.in_memory import in_memory_tensors
from rholoss.data.splits import pool_halves
from rholoss.irreducible import IrreducibleLossStore, store_path
from rholoss.modules import SupervisedModule
from rholoss.pipelines import build_model, train, train_irreducible
from tests.conftest import synthetic_config


@pytest.fixture(scope="module")
def two_halves(tmp_path_factory: pytest.TempPathFactory) -> tuple[DictConfig, dict]:
    root = tmp_path_factory.mktemp("two_halves")
    cfg = synthetic_config(
        root, "train_irreducible", "irreducible.strategy=two_halves", "trainer.max_steps=40", output="il"
    )
    return cfg, train_irreducible(cfg)


def il_model_losses(cfg: DictConfig, checkpoint: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each point's loss under the IL model saved in ``checkpoint``, recomputed outside the pipeline."""
    model = build_model(cfg.model, tuple(x.shape[1:]), 4)
    module = SupervisedModule(model, 4)
    module.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"])
    with torch.no_grad():
        return F.cross_entropy(module.eval()(x), y, reduction="none")


def test_two_halves_scores_every_point_with_the_model_that_did_not_see_it(two_halves) -> None:
    cfg, result = two_halves
    store = IrreducibleLossStore.load(Path(result["il_store"]))
    datamodule = instantiate(cfg.datamodule)
    datamodule.setup()
    x, y = in_memory_tensors(datamodule.split("pool"), torch.device("cpu"))
    assert len(store.losses) == len(y) == 1800 and torch.isfinite(store.losses).all()

    half_a, half_b = pool_halves(len(y), cfg.seed)
    assert [m["name"] for m in store.metadata["il_models"]] == ["half_a", "half_b"]
    assert [m["trained_on"] for m in store.metadata["il_models"]] == [len(half_a), len(half_b)] == [900, 900]
    loss_a, loss_b = (il_model_losses(cfg, m["best_checkpoint"], x, y) for m in store.metadata["il_models"])
    torch.testing.assert_close(store.losses[half_a], loss_b[half_a])
    torch.testing.assert_close(store.losses[half_b], loss_a[half_b])
    # The two models disagree, so the equalities above tell which model scored each point.
    assert (loss_a - loss_b).abs().mean() > 1e-3


def test_two_halves_store_records_the_strategy_and_both_accuracies(two_halves) -> None:
    _, result = two_halves
    metadata = IrreducibleLossStore.load(Path(result["il_store"])).metadata
    assert metadata["strategy"] == metadata["il_config"]["strategy"] == result["strategy"] == "two_halves"
    accuracies = [m["val_acc"] for m in metadata["il_models"]]
    assert all(0.5 < acc <= 1.0 for acc in accuracies)
    assert metadata["val_acc"] == pytest.approx(sum(accuracies) / 2) == result["val_acc"]
    assert result["steps"] == 80  # 40 per IL model


def test_each_il_models_curve_is_its_training_validations_alone(two_halves) -> None:
    _, result = two_halves
    for model in result["il_models"]:
        steps, seconds = ([p[i] for p in model["val_curve"]] for i in (0, 2))
        # The re-validation of the best checkpoint after training adds no point (its clock would count
        # the restored curve's seconds twice).
        assert len(steps) > 1 and steps == sorted(set(steps)) and steps[-1] == model["steps"] == 40
        assert seconds == sorted(seconds)


def test_two_halves_keeps_each_il_models_log(two_halves) -> None:
    cfg, _ = two_halves
    for half in ("half_a", "half_b"):
        log = (Path(cfg.paths.output_dir) / "csv" / half / "metrics.csv").read_text().splitlines()
        steps = {int(row.split(",")[header.index("step")]) for header in [log[0].split(",")] for row in log[1:]}
        assert max(steps) == 40  # each model's own 40 steps, neither overwritten by the other


def test_irreducible_losses_from_two_halves_flag_noisy_points(two_halves) -> None:
    cfg, result = two_halves
    datamodule = instantiate(cfg.datamodule)
    datamodule.setup()
    losses = IrreducibleLossStore.load(Path(result["il_store"])).losses
    # Trained on noisy labels too, but not on the point it scores: noisy points still stand out.
    assert losses[datamodule.corrupted].mean() > 2 * losses[~datamodule.corrupted].mean()


def test_holdout_fraction_trains_on_that_share_of_the_holdout(tmp_path: Path) -> None:
    runs = {
        fraction: train_irreducible(
            synthetic_config(tmp_path, "train_irreducible", f"irreducible.holdout_fraction={fraction}", "trainer.max_steps=5",
                      "val_every_n_steps=5", output=f"il{fraction}")
        )
        for fraction in (1.0, 0.25)
    }  # fmt: skip
    assert [runs[f]["il_models"][0]["trained_on"] for f in (1.0, 0.25)] == [1800, 450]
    assert runs[1.0]["il_store"] != runs[0.25]["il_store"]  # both stay in the cache
    assert Path(runs[1.0]["il_store"]).parent == Path(runs[0.25]["il_store"]).parent  # same pool
    assert IrreducibleLossStore.load(Path(runs[0.25]["il_store"])).metadata["il_config"]["holdout_fraction"] == 0.25


def test_strategies_never_share_a_cache_entry(two_halves) -> None:
    cfg, result = two_halves
    il_config = IrreducibleLossStore.load(Path(result["il_store"])).metadata["il_config"]
    assert Path(result["il_store"]) == store_path(Path(cfg.paths.cache_dir), result["dataset"], il_config)
    as_holdout = store_path(Path(cfg.paths.cache_dir), result["dataset"], {**il_config, "strategy": "holdout"})
    assert as_holdout.parent == Path(result["il_store"]).parent and as_holdout != Path(result["il_store"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("irreducible.strategy=halves", "strategy must be one of"),
        ("irreducible.holdout_fraction=0", r"holdout_fraction must be in \(0, 1\]"),
        (
            "irreducible.holdout_fraction=0.5 irreducible.strategy=two_halves",
            "applies to irreducible.strategy=holdout only",
        ),
        (
            "irreducible.strategy=two_halves resume=/any/run",
            "resume= continues one IL model; .* trains two: start it afresh",
        ),
    ],
)
def test_bad_il_settings_fail_before_any_output(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train_irreducible(synthetic_config(tmp_path, "train_irreducible", *override.split(), output="il"))
    assert not (tmp_path / "il").exists()


@pytest.mark.slow  # four target runs
def test_one_store_serves_targets_of_other_architectures_and_hyperparameters(two_halves) -> None:
    cfg, il = two_halves
    root = Path(cfg.paths.root_dir)
    targets = {
        "deep": ["model.hidden_sizes=[32,32]", "optimizer.lr=0.01"],
        "wide": ["model.hidden_sizes=[256]", "optimizer.weight_decay=0.1", "large_batch_size=160"],
    }
    for name, overrides in targets.items():
        runs = {
            selection: train(
                synthetic_config(
                    root, "train", f"selection={selection}", "trainer.max_steps=20", *overrides, output=name + selection
                )
            )
            for selection in ("reducible_loss", "loss")
        }
        assert runs["reducible_loss"]["il_store"] == il["il_store"]  # found in the cache, not named
        # and used: subtracting the IL keeps it from chasing the noisy points that the loss alone picks
        assert runs["reducible_loss"]["noisy_selected_fraction"] < 0.6 * runs["loss"]["noisy_selected_fraction"]


@pytest.mark.parametrize("on_device", [False, True])
def test_restricted_training_serves_exactly_those_points(on_device: bool) -> None:
    datamodule = SyntheticDataModule(
        num_train=200, val_size=20, batch_size=4, train_split="holdout", on_device=on_device
    )
    datamodule.setup()
    positions = torch.tensor([1, 4, 5, 9, 30, 31, 60, 61, 62])
    datamodule.restrict_training(positions)
    served = torch.cat([x for _, x, _ in datamodule.train_dataloader()])
    expected, _ = in_memory_tensors(datamodule.split("holdout"), torch.device("cpu"))
    assert sorted(map(tuple, served.tolist())) == sorted(map(tuple, expected[positions].tolist()))
    datamodule.restrict_training(None)
    assert sum(len(y) for *_, y in datamodule.train_dataloader()) == len(datamodule.split("holdout"))
    with pytest.raises(ValueError, match="fewer than one batch of 4"):
        datamodule.restrict_training(torch.tensor([0, 1]))
