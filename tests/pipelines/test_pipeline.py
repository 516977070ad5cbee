"""Both stages end to end, in-process on synthetic data (one IL store shared by the module)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from rholoss.irreducible import IrreducibleLossStore, StoreError
from rholoss.pipelines import train, train_irreducible
from rholoss.selection import get_selection, list_selections
from rholoss.selection.step import native_bf16
from rholoss.tasks import Classification
from tests.conftest import config_in, synthetic_config

RESULT_KEYS = {
    "selection",
    "seed",
    "steps",
    "large_batch_size",
    "batch_size",
    "val_curve",
    "test_acc",
    "noisy_selected_fraction",
    "wall_seconds",
    "il_store",
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("pipeline")
    return root, train_irreducible(synthetic_config(root, "train_irreducible", output="il"))


@pytest.fixture(scope="module")
def target_runs(workspace: tuple[Path, dict]) -> dict[str, dict]:
    root, _ = workspace

    def run(name: str) -> dict:
        dropout = ["model.dropout=0.1"] if get_selection(name).needs_mc_samples else []
        return train(synthetic_config(root, "train", f"selection={name}", *dropout, output=name))

    return {name: run(name) for name in list_selections(Classification())}


def test_irreducible_stage_writes_a_store_for_the_pool(workspace: tuple[Path, dict]) -> None:
    root, il = workspace
    path = Path(il["il_store"])
    assert path.is_relative_to(root / ".cache" / "irreducible")
    store = IrreducibleLossStore.load(path)
    assert len(store.losses) == il["dataset"]["pool_size"] == 1800
    assert store.fingerprint == il["dataset"]
    assert il["val_acc"] > 0.9
    assert store.metadata["val_acc"] == il["val_acc"]
    assert json.loads((root / "il" / "results.json").read_text())["il_store"] == str(path)
    assert (root / "il" / "config_resolved.yaml").is_file()


def test_irreducible_losses_are_high_on_corrupted_points(workspace: tuple[Path, dict]) -> None:
    """The IL model never saw the pool's noisy labels, so it disagrees with them."""
    _root, il = workspace
    from rholoss.data import SyntheticDataModule

    datamodule = SyntheticDataModule(label_noise=0.2, val_size=400, class_sep=1.0)
    datamodule.setup()
    losses = IrreducibleLossStore.load(Path(il["il_store"])).losses
    assert losses[datamodule.corrupted].mean() > 5 * losses[~datamodule.corrupted].mean()


@pytest.mark.parametrize("name", list_selections(Classification()))
def test_every_selection_function_trains_end_to_end(name: str, target_runs: dict[str, dict], workspace) -> None:
    root, il = workspace
    result = target_runs[name]
    assert set(result) >= RESULT_KEYS
    assert json.loads((root / name / "results.json").read_text()) == result
    assert (root / name / "csv" / "metrics.csv").is_file()
    assert result["selection"] == name
    assert (result["steps"], result["large_batch_size"], result["batch_size"]) == (100, 320, 32)
    assert [point[0] for point in result["val_curve"]] == [20, 40, 60, 80, 100]
    assert all(0.0 <= point[1] <= 1.0 for point in result["val_curve"])
    assert [point[2] for point in result["val_curve"]] == sorted(point[2] for point in result["val_curve"])
    assert 0.0 <= result["noisy_selected_fraction"] <= 1.0
    assert result["il_store"] == (il["il_store"] if get_selection(name).needs_irreducible else None)


def test_rho_loss_avoids_noisy_points_and_learns_faster(target_runs: dict[str, dict]) -> None:
    uniform, rho, loss = target_runs["uniform"], target_runs["reducible_loss"], target_runs["loss"]
    assert uniform["noisy_selected_fraction"] == pytest.approx(0.2, abs=0.03)
    assert rho["noisy_selected_fraction"] < 0.5 * uniform["noisy_selected_fraction"]
    assert loss["noisy_selected_fraction"] > uniform["noisy_selected_fraction"]
    assert rho["best_val_acc"] >= uniform["val_curve"][-1][1]


def test_noisy_selected_fraction_is_null_without_label_noise(tmp_path: Path) -> None:
    result = train(
        synthetic_config(
            tmp_path, "train", "selection=uniform", "datamodule.label_noise=0", "trainer.max_steps=5", output="run"
        )
    )
    assert result["noisy_selected_fraction"] is None


def test_missing_store_fails_before_training_with_the_command_that_makes_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"python run_irreducible\.py") as error:
        train(synthetic_config(tmp_path, "train", "selection=reducible_loss", output="run"))
    assert "no IL store for this data" in str(error.value)
    assert not (tmp_path / "run" / "results.json").exists()


def test_explicit_store_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        train(synthetic_config(tmp_path, "train", f"irreducible.path={tmp_path / 'nope.pt'}", output="run"))


def test_store_made_for_other_data_is_refused_naming_the_difference(workspace, tmp_path: Path) -> None:
    _, il = workspace
    with pytest.raises(StoreError, match=re.escape("label_noise: store has 0.2, this run has 0.3")):
        train(
            synthetic_config(
                tmp_path, "train", f"irreducible.path={il['il_store']}", "datamodule.label_noise=0.3", output="run"
            )
        )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("selection.percent_train=1.5", r"percent_train must be in \(0, 1\]"),
        ("large_batch_size=5", "at least 10"),
        ("selection.precision=8", "precision must be"),
    ],
)
def test_bad_settings_fail_before_any_output(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train(synthetic_config(tmp_path, "train", "selection=uniform", override, output="run"))
    assert not (tmp_path / "run" / "results.json").exists()


def test_bald_without_dropout_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no dropout layer: use a model with dropout \(e.g. model.dropout=0.1"):
        train(synthetic_config(tmp_path, "train", "selection=bald", output="run"))
    assert not (tmp_path / "run" / "results.json").exists()


def test_same_seed_same_results(workspace, tmp_path: Path) -> None:
    _, il = workspace
    runs = [
        train(
            synthetic_config(
                tmp_path, "train", f"irreducible.path={il['il_store']}", "trainer.max_steps=20", output=f"run{i}"
            )
        )
        for i in range(2)
    ]
    assert runs[0]["val_curve"][-1][1] == runs[1]["val_curve"][-1][1]
    assert runs[0]["test_acc"] == runs[1]["test_acc"]
    assert runs[0]["noisy_selected_fraction"] == runs[1]["noisy_selected_fraction"]


def test_selection_forward_in_bf16(workspace, tmp_path: Path) -> None:
    _, il = workspace
    result = train(
        synthetic_config(
            tmp_path,
            "train",
            f"irreducible.path={il['il_store']}",
            "selection.precision=bf16",
            "selection.model_mode=eval",
            output="run",
        )
    )
    assert result["noisy_selected_fraction"] < 0.1
    assert torch.isfinite(torch.tensor(result["test_acc"]))


def _subnormal_survives() -> bool:
    """Whether a product in the subnormal range (1e-40) comes out nonzero: false once flushed."""
    return bool(torch.tensor(1e-20) * torch.tensor(1e-20) != 0)


@pytest.mark.parametrize("flush", [True, False])
def test_both_stages_apply_flush_denormal(workspace, tmp_path: Path, flush: bool) -> None:
    _, il = workspace
    torch.set_flush_denormal(not flush)  # the opposite, so that only the run's setting can explain the result
    try:
        train(
            synthetic_config(
                tmp_path,
                "train",
                f"irreducible.path={il['il_store']}",
                f"flush_denormal={str(flush).lower()}",
                "trainer.max_steps=2",
                output="run",
            )
        )
        assert _subnormal_survives() is not flush
        torch.set_flush_denormal(not flush)
        train_irreducible(
            synthetic_config(
                tmp_path,
                "train_irreducible",
                f"flush_denormal={str(flush).lower()}",
                "trainer.max_steps=2",
                output="il",
            )
        )
        assert _subnormal_survives() is not flush
    finally:
        torch.set_flush_denormal(False)


def test_auto_precision_is_recorded_as_what_scoring_used(workspace, tmp_path: Path) -> None:
    _, il = workspace
    result = train(
        synthetic_config(tmp_path, "train", f"irreducible.path={il['il_store']}", "trainer.max_steps=2", output="run")
    )
    assert result["selection_precision"] == ("bf16" if native_bf16("cpu") else "32")
    uniform = train(synthetic_config(tmp_path, "train", "selection=uniform", "trainer.max_steps=2", output="uniform"))
    assert uniform["selection_precision"] is None  # it scores nothing


@pytest.mark.slow
def test_wandb_logger_runs_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    train(
        synthetic_config(
            tmp_path,
            "train",
            "selection=uniform",
            "logger=wandb",
            "trainer.max_steps=10",
            "val_every_n_steps=5",
            output="run",
        )
    )
    offline_runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert list(offline_runs[0].glob("*.wandb"))
    assert (tmp_path / "run" / "csv" / "metrics.csv").is_file()


DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(
    not (DEBIAN_FMNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed (.ci/setup installs it)",
)
def test_both_stages_on_a_slice_of_real_fashion_mnist(tmp_path: Path) -> None:
    overrides = [
        "datamodule.train_subset=4000",
        "datamodule.val_size=500",
        "datamodule.download=false",
        "trainer.max_steps=60",
        "val_every_n_steps=20",
    ]
    # Each stage's default experiment: fmnist_noisy_mlp_irred's IL recipe on fmnist_noisy_mlp's data.
    il = train_irreducible(config_in(tmp_path, "train_irreducible", *overrides, output="il"))
    assert il["dataset"]["pool_size"] == 1750 and il["dataset"]["dataset"] == "fashion_mnist"
    assert il["val_acc"] > 0.6
    runs = {
        name: train(config_in(tmp_path, "train", *overrides, "large_batch_size=320", f"selection={name}", output=name))
        for name in ("uniform", "reducible_loss")
    }
    assert runs["reducible_loss"]["il_store"] == il["il_store"]
    assert runs["reducible_loss"]["test_acc"] > 0.5
    assert runs["reducible_loss"]["noisy_selected_fraction"] < runs["uniform"]["noisy_selected_fraction"]


def test_progress_bar_shows_step_loss_and_val_accuracy(workspace, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    _, il = workspace
    overrides = [f"irreducible.path={il['il_store']}", "callbacks=default", "trainer.enable_progress_bar=true"]
    train(
        synthetic_config(
            tmp_path, "train", *overrides, "trainer.max_steps=40", "trainer.log_every_n_steps=10", output="run"
        )
    )
    shown = capfd.readouterr().out  # Lightning's bar writes to stdout
    assert "step=40" in shown and "train/loss=" in shown and "val/acc=" in shown


def test_progress_bar_turned_off_with_the_default_callbacks(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """callbacks=default holds the bar; trainer.enable_progress_bar=false must still just turn it off."""
    overrides = ["selection=uniform", "callbacks=default", "trainer.enable_progress_bar=false", "trainer.max_steps=20"]
    results = train(synthetic_config(tmp_path, "train", *overrides))
    assert results["steps"] == 20
    assert "step=20" not in capfd.readouterr().out


@pytest.mark.parametrize("name", ["uniform", "reducible_loss", "gradnorm_is"])
def test_selection_counts_add_up_to_every_selected_point(name: str, target_runs: dict[str, dict]) -> None:
    result = target_runs[name]
    histogram = result["selection_counts"]["histogram"]
    assert sum(points for _, points in histogram) == result["dataset"]["pool_size"]
    assert sum(times * points for times, points in histogram) == result["steps"] * result["batch_size"]
    assert result["selection_counts"]["never_selected"] == dict(map(tuple, histogram)).get(0, 0)


def test_uniform_can_draw_the_full_large_batch_or_only_what_it_trains_on(tmp_path: Path) -> None:
    runs = {
        flag: train(
            synthetic_config(
                tmp_path,
                "train",
                "selection=uniform",
                f"selection.draw_only_selected={flag}",
                "trainer.max_steps=20",
                output=f"run{flag}",
            )
        )
        for flag in (True, False)
    }
    for flag, result in runs.items():
        assert result["draw_only_selected"] is flag
        assert (result["steps"], result["batch_size"], result["large_batch_size"]) == (20, 32, 320)
        assert sum(t * n for t, n in result["selection_counts"]["histogram"]) == 20 * 32


def test_draw_only_selected_is_refused_for_content_aware_methods(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only to methods that ignore"):
        train(synthetic_config(tmp_path, "train", "selection=loss", "+selection.draw_only_selected=true", output="run"))


def test_selection_statistics_reach_the_csv_log_once_per_interval(target_runs: dict[str, dict], workspace) -> None:
    import csv

    root, _ = workspace
    rows = [r for r in csv.DictReader((root / "loss" / "csv" / "metrics.csv").open()) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == [49, 99]  # log_every_n_steps=50 over 100 steps
    for row in rows:
        assert float(row["selection/loss_selected"]) > float(row["selection/loss_not_selected"])
        assert 0.2 <= float(row["selection/top20_score_share"]) <= 1.0
        assert 0.0 <= float(row["selection/noisy_fraction"]) <= 1.0
    rho_rows = [
        r for r in csv.DictReader((root / "reducible_loss" / "csv" / "metrics.csv").open()) if r.get("train/loss")
    ]
    assert all(
        float(r["selection/reducible_loss_selected"]) > float(r["selection/reducible_loss_not_selected"])
        for r in rho_rows
    )
    assert float(rho_rows[-1]["selection/noisy_fraction"]) == pytest.approx(
        target_runs["reducible_loss"]["noisy_selected_fraction"], abs=0.02
    )
