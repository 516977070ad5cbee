"""Tasks beyond classification: the task objects, target noise for real values, regression through
both stages, the refusal of class-logit methods, and the analysis of runs whose metric is minimised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import rholoss.pipelines.target as target_stage
from rholoss.analysis import analyze, method_table, summarize
from rholoss.data import SyntheticRegressionDataModule
from rholoss.data.noise import apply_label_noise
from rholoss.irreducible import IrreducibleLossStore, StoreError
from rholoss.pipelines import train, train_irreducible
from rholoss.selection import get_selection, list_selections
from rholoss.tasks import Classification, Regression, TaskMismatchError
from tests.conftest import config_in

LOSS_BASED = ["uniform", "reducible_loss", "reducible_loss_sampled", "loss", "loss_stale", "irreducible_loss"]


def regression_config(root: Path, config_name: str, *overrides: str, output: str = "run"):
    return config_in(root, config_name, "experiment=synthetic_noisy_regression", *overrides, output=output)


def test_regression_loss_and_metric() -> None:
    task = Regression(1)
    outputs, targets = torch.tensor([[1.0], [2.0], [0.0]]), torch.tensor([0.0, 2.0, -3.0])
    assert task.point_loss(outputs, targets).tolist() == pytest.approx([1.0, 0.0, 9.0])
    assert task.point_loss(outputs.squeeze(1), targets).tolist() == pytest.approx([1.0, 0.0, 9.0])
    two_dims = Regression(2).point_loss(torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 0.0]]))
    assert two_dims.tolist() == pytest.approx([5.0])  # mean over target dimensions
    metric = task.new_metric()
    task.update_metric(metric, outputs, targets)
    assert float(metric.compute()) == pytest.approx(10 / 3)
    assert (task.val_metric, task.mode, task.class_logits) == ("val/mse", "min", False)
    with pytest.raises(ValueError, match="gives 2 values per point but the targets have 1"):
        task.point_loss(torch.zeros(3, 2), targets)
    assert task.better(0.1, 0.2) and Classification(3).better(0.9, 0.8)


def test_tasks_refuse_data_that_does_not_fit() -> None:
    regression_data = SyntheticRegressionDataModule(num_train=200, num_test=50)
    regression_data.setup()
    assert Regression().fit_to(regression_data).num_outputs == 1
    with pytest.raises(TaskMismatchError, match=r"task=classification needs class labels.*use task=regression"):
        Classification().fit_to(regression_data)
    from rholoss.data import SyntheticDataModule

    class_data = SyntheticDataModule(num_train=200, num_test=50)
    class_data.setup()
    assert Classification().fit_to(class_data).num_classes == 4
    with pytest.raises(TaskMismatchError, match=r"task=regression needs real-valued targets.*use task=classification"):
        Regression().fit_to(class_data)


def test_target_noise_draws_other_points_targets() -> None:
    targets = torch.arange(100, dtype=torch.float32) / 10
    noisy = apply_label_noise(targets, "uniform", 0.3, num_classes=0, pairs=None, seed=5)
    assert int(noisy.corrupted.sum()) == 30
    assert torch.equal(noisy.labels[~noisy.corrupted], targets[~noisy.corrupted])
    changed = noisy.labels[noisy.corrupted]
    assert bool((changed != targets[noisy.corrupted]).all())  # never its own target
    assert bool(torch.isin(changed, targets).all())  # drawn from the pool's targets
    again = apply_label_noise(targets, "uniform", 0.3, num_classes=0, pairs=None, seed=5)
    assert torch.equal(again.labels, noisy.labels)
    with pytest.raises(ValueError, match="noise_type='structured' flips classes"):
        apply_label_noise(targets, "structured", 0.3, num_classes=0, pairs=None, seed=5)


def test_regression_pool_keeps_float_targets_and_records_noise() -> None:
    dm = SyntheticRegressionDataModule(num_train=400, num_test=50, label_noise=0.25)
    dm.setup()
    pool = dm.split("pool")
    assert pool.labels.dtype == torch.float32
    assert abs(float(dm.corrupted.float().mean()) - 0.25) < 0.01
    _, _, y = next(iter(dm.val_dataloader()))
    assert y.dtype == torch.float32


def test_class_logit_methods_are_refused_before_any_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded before the refusal")

    monkeypatch.setattr(target_stage, "datamodule_of", no_data)
    for name in ("entropy", "bald", "gradnorm", "gradnorm_is", "svp"):
        with pytest.raises(TaskMismatchError, match=rf"'{name}' needs class logits.*Methods for regression: ") as error:
            train(regression_config(tmp_path, "train", f"selection={name}"))
        assert all(method in str(error.value) for method in LOSS_BASED)
    assert not (tmp_path / "run").exists()  # refused before the run folder was made
    assert sorted(list_selections(Regression())) == sorted(LOSS_BASED)


@pytest.fixture(scope="module")
def regression_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict[str, dict]]:
    root = tmp_path_factory.mktemp("regression")
    il = train_irreducible(regression_config(root, "train_irreducible", output="il"))
    # At a constant rate (the paper's protocol) RHO-LOSS selects all the way: the filtering measured below.
    runs = {
        name: train(regression_config(root, "train", f"selection={name}", "scheduler=constant", output=f"runs/{name}"))
        for name in ("uniform", "reducible_loss")
    }
    return root, il, runs


@pytest.mark.slow
def test_regression_both_stages(regression_runs: tuple[Path, dict, dict[str, dict]]) -> None:
    _root, il, runs = regression_runs
    store = IrreducibleLossStore.load(Path(il["il_store"]))
    assert (il["metric"], il["mode"], store.metadata["task"]) == ("val/mse", "min", "regression")
    assert store.metadata["val_mse"] == il["val_mse"] < 0.1  # the IL model learns f from clean holdout data
    uniform, rho = runs["uniform"], runs["reducible_loss"]
    for result in (uniform, rho):
        assert (result["task"], result["metric"], result["mode"]) == ("regression", "val/mse", "min")
        assert result["best_val_mse"] == min(point[1] for point in result["val_curve"])
        assert result["test_mse"] > 0
    # RHO-LOSS trains on clearly fewer corrupted targets (20% of the pool) and reaches a lower error.
    assert uniform["noisy_selected_fraction"] == pytest.approx(0.2, abs=0.01)
    assert rho["noisy_selected_fraction"] < 0.8 * uniform["noisy_selected_fraction"]
    assert rho["best_val_mse"] < uniform["best_val_mse"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [m for m in LOSS_BASED if m not in ("uniform", "reducible_loss")])
def test_every_loss_based_method_trains_on_regression(regression_runs, name: str) -> None:
    root, _, _ = regression_runs
    result = train(
        regression_config(root, "train", f"selection={name}", "trainer.max_steps=20", output=f"extra/{name}")
    )
    assert result["steps"] == 20 and result["metric"] == "val/mse"
    assert get_selection(name).applies_to(Regression())


@pytest.mark.slow
def test_a_store_of_another_task_is_refused(regression_runs, tmp_path: Path) -> None:
    root, il, _ = regression_runs
    store = IrreducibleLossStore.load(Path(il["il_store"]))
    store.metadata["task"] = "classification"
    foreign = tmp_path / "classification-store.pt"
    store.save(foreign)
    cfg = regression_config(root, "train", f"irreducible.path={foreign}", output="foreign")
    with pytest.raises(StoreError, match="holds classification losses, but this run's task is regression"):
        train(cfg)


@pytest.mark.slow
def test_analysis_of_regression_runs(regression_runs) -> None:
    root, _, runs = regression_runs
    table = method_table([{**r, "path": str(root / "runs" / n)} for n, r in runs.items()])
    assert "test mse" in table and "steps to uniform's final val mse" in table
    summary = analyze(root / "runs")
    assert (summary["metric"], summary["mode"]) == ("val/mse", "min")
    assert summary["target"] == pytest.approx(min(summary["methods"]["uniform"]["curve"]["mean"]))
    assert "validation MSE, the lowest of uniform" in summary["markdown"]
    assert {"accuracy_vs_steps", "steps_vs_target", "noisy_selected"} <= set(summary["figures"])


def min_metric_run(method: str, curve: list[float], folder: Path) -> dict:
    points = [[100 * (i + 1), value, 0.5 * 100 * (i + 1)] for i, value in enumerate(curve)]
    return {
        "stage": "target",
        "selection": method,
        "seed": 0,
        "metric": "val/mse",
        "mode": "min",
        "val_curve": points,
        "best_val_mse": min(curve),
        "test_mse": curve[-1],
        "noisy_selected_fraction": None,
        "relevant_selected_fraction": None,
        "path": str(folder / method),
    }


def test_summary_for_a_metric_to_minimise(tmp_path: Path) -> None:
    runs = [
        min_metric_run("uniform", [0.9, 0.6, 0.4, 0.3], tmp_path),  # target: its lowest, 0.3 at step 400
        min_metric_run("reducible_loss", [0.7, 0.3, 0.2, 0.2], tmp_path),  # reaches 0.3 at step 200
        min_metric_run("loss", [0.9, 0.8, 0.8, 0.7], tmp_path),  # never
    ]
    summary = summarize(runs)
    assert summary["target"] == pytest.approx(0.3) and summary["mode"] == "min"
    methods = summary["methods"]
    assert methods["uniform"]["to_target"]["curve_steps"] == 400
    assert methods["reducible_loss"]["to_target"]["curve_steps"] == 200 and methods["reducible_loss"]["speedup"] == 2.0
    assert methods["loss"]["speedup"] is None
    assert methods["reducible_loss"]["best_val"]["mean"] == pytest.approx(0.2)
    assert summary["targets"][0] == pytest.approx(0.9) and summary["targets"][-1] == pytest.approx(0.3)
    table = method_table(runs)
    assert "| reducible_loss | 0 | 0.2000 | 0.2000 | 200 |" in table  # steps to uniform's final 0.3
    with pytest.raises(ValueError, match="different metrics"):
        summarize([*runs, {**runs[0], "metric": "val/acc", "mode": "max"}])


def test_figures_for_a_metric_to_minimise(tmp_path: Path) -> None:
    for method, curve in (("uniform", [0.9, 0.5, 0.3]), ("reducible_loss", [0.6, 0.3, 0.25])):
        (tmp_path / method).mkdir()
        record = min_metric_run(method, curve, tmp_path)
        (tmp_path / method / "results.json").write_text(json.dumps({k: v for k, v in record.items() if k != "path"}))
    summary = analyze(tmp_path)
    assert set(summary["figures"]) >= {"accuracy_vs_steps", "steps_vs_target"}
    assert "target mse" in summary["markdown"] and "0.3" in summary["markdown"]
    import matplotlib.figure

    from rholoss.analysis.plots import accuracy_vs_steps, steps_vs_target

    labels = []
    original = matplotlib.figure.Figure.savefig

    def record_labels(figure, *args, **kwargs):
        labels.append(figure.axes[0].get_ylabel() + " | " + figure.axes[0].get_xlabel())
        return original(figure, *args, **kwargs)

    matplotlib.figure.Figure.savefig = record_labels
    try:
        accuracy_vs_steps(summary, tmp_path / "figures")
        steps_vs_target(summary, tmp_path / "figures")
    finally:
        matplotlib.figure.Figure.savefig = original
    assert labels[0] == "validation MSE | steps"
    assert labels[-1] == "steps required | target validation MSE"
