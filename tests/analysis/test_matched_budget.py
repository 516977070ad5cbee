"""The matched-budget comparison: the test curve a run records, and the per-budget table built from runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rholoss.analysis.matched_budget import (
    across_budgets_markdown,
    budget_markdown,
    run_record,
    summarize_across_budgets,
    summarize_budget,
)
from rholoss.analysis.plots import metric_vs_seconds
from rholoss.callbacks.test_curve import FILE as TEST_CURVE_FILE
from rholoss.pipelines import train
from tests.conftest import synthetic_config

TEST_CURVE = "+callbacks.test_curve._target_=rholoss.callbacks.TestCurve"


def test_a_run_records_its_test_metric_after_every_validation(tmp_path: Path) -> None:
    results = train(
        synthetic_config(
            tmp_path,
            "train",
            "selection=uniform",
            "scheduler=cosine",
            "trainer.max_steps=30",
            "val_every_n_steps=10",
            TEST_CURVE,
        )
    )
    curve = json.loads((tmp_path / "run" / "test_curve.json").read_text())
    assert curve["metric"] == "test/acc" and curve["mode"] == "max"
    assert [p[0] for p in curve["points"]] == [p[0] for p in results["val_curve"]] == [10, 20, 30]
    # The last point is the final weights' test accuracy, as the run's own test pass measures it.
    assert curve["points"][-1][1] == pytest.approx(results["test_acc"])
    seconds = [p[2] for p in curve["points"]]
    assert seconds == sorted(seconds) and seconds[-1] < results["wall_seconds"]
    # Its clock leaves its own passes out: each point's seconds are below the val curve's, by what they took.
    assert all(t <= v[2] for t, v in zip(seconds, results["val_curve"], strict=True))
    assert curve["test_seconds"] > 0


def record(method: str, seed: int, curve: list[list[float]], train_seconds: float, uses_il: bool) -> dict:
    return {
        "method": method,
        "seed": seed,
        "metric": "test/acc",
        "mode": "max",
        "curve": curve,
        "steps": curve[-1][0],
        "final": curve[-1][1],
        "train_seconds": train_seconds,
        "uses_il": uses_il,
    }


def test_the_budget_table_compares_every_method_with_the_baselines_final_value() -> None:
    runs = [
        record("rho", 0, [[100, 0.90, 1.5], [200, 0.87, 3.0]], 3.0, True),
        record("base", 1, [[100, 0.82, 1.1], [200, 0.88, 2.2]], 2.2, False),
        record("rho", 1, [[100, 0.85, 1.6], [200, 0.86, 3.2]], 3.2, True),
        record("base", 0, [[100, 0.80, 1.0], [200, 0.90, 2.0]], 2.0, False),
        record("slow", 0, [[100, 0.5, 1.0], [200, 0.6, 2.0]], 2.0, False),
    ]
    summary = summarize_budget(runs, "base", il_seconds=10.0, il_shared_by=4)
    assert list(summary["methods"]) == ["base", "rho", "slow"]  # the baseline first
    assert summary["target"] == pytest.approx(0.89)  # the baseline's mean final value
    base, rho, slow = (summary["methods"][name] for name in ("base", "rho", "slow"))
    assert base["seeds"] == [0, 1] and base["final"] == pytest.approx({"mean": 0.89, "min": 0.88, "max": 0.90})
    assert base["seconds_il"] == base["seconds"] == pytest.approx(2.1)  # no IL stage to count
    assert base["reached"] == 1 and base["steps_to_target"] == 200
    assert rho["best"] == pytest.approx({"mean": 0.88, "min": 0.86, "max": 0.90})  # each seed's best
    assert rho["final"]["mean"] == pytest.approx(0.865)
    assert rho["seconds"] == pytest.approx(3.1) and rho["seconds_per_step"] == pytest.approx(3.1 / 200)
    assert rho["seconds_il"] == pytest.approx(13.1) and rho["seconds_il_amortised"] == pytest.approx(5.6)
    assert rho["reached"] == 1 and rho["steps_to_target"] == 100 and rho["seconds_to_target_il"] == pytest.approx(11.5)
    assert slow["reached"] == 0 and slow["steps_to_target"] is None
    # Half the baseline's steps: it ties at twice the step cost, and may spend 0.5 s on an IL stage (2.0 - 1.5).
    assert rho["break_even_step_cost"] == pytest.approx(2.0) and rho["il_allowance_seconds"] == pytest.approx(0.5)
    assert slow["break_even_step_cost"] is None and slow["il_allowance_seconds"] is None
    assert rho["curve"]["steps"] == [100, 200] and rho["curve"]["mean"] == pytest.approx([0.875, 0.865])
    table = budget_markdown(summary).splitlines()
    assert "steps to baseline's final (89.0%)" in table[0]
    assert table[2].startswith(
        "| **base** (baseline) | 89.0% (88.0%–90.0%) | 89.0% (88.0%–90.0%) | 2.1 | 1.00x | 2.1 | 2.1 | 200 (1/2 seeds) | 2.0 "
        "| 1.00x | 0.0 |"
    )
    assert (
        table[3]
        == "| rho | 88.0% (86.0%–90.0%) | 86.5% (86.0%–87.0%) | 3.1 | 1.48x | 13.1 | 5.6 | 100 (1/2 seeds) | 11.5 "
        "| 2.00x | 0.5 |"
    )
    assert table[4].endswith("| never | never | never | never |")


def test_every_budget_is_set_against_the_strongest_baseline() -> None:
    runs = {
        100: [
            record("base", 0, [[50, 0.70, 0.5], [100, 0.80, 1.0]], 1.0, False),
            record("rho", 0, [[50, 0.85, 1.0], [100, 0.91, 2.0]], 2.0, True),
        ],
        200: [
            record("base", 0, [[100, 0.85, 1.0], [200, 0.90, 2.0]], 2.0, False),
            record("rho", 0, [[100, 0.90, 2.0], [200, 0.93, 4.0]], 4.0, True),
        ],
        # Trained longer, the baseline ends lower (it memorises noisy labels): not the one to beat.
        400: [
            record("base", 0, [[200, 0.89, 2.0], [400, 0.86, 4.0]], 4.0, False),
            record("rho", 0, [[200, 0.92, 4.0], [400, 0.88, 8.0]], 8.0, True),
        ],
    }
    summaries = {budget: summarize_budget(r, "base", il_seconds=10.0, il_shared_by=2) for budget, r in runs.items()}
    # Within its own budget the short baseline's final (0.80) is the target; across budgets, the best (0.90 at 200).
    assert summaries[100]["target"] == pytest.approx(0.80)
    across = summarize_across_budgets(summaries, runs)
    assert across["budget"] == 200 and across["target"] == pytest.approx(0.90)
    rows = {(row["method"], row["budget"]): row for row in across["rows"]}
    assert list(rows) == [(m, b) for b in (100, 200, 400) for m in ("base", "rho")]
    assert rows["base", 400]["reached"] == 0  # 0.89 at its best, never 0.90
    assert rows["base", 100]["reached"] == 0 and rows["base", 100]["seconds_to_target_il"] is None
    for budget in (100, 200):  # both reach it at step 100, 2 s in, the IL stage's 10 s counted
        assert rows["rho", budget]["steps_to_target"] == 100
        assert rows["rho", budget]["seconds_to_target_il"] == pytest.approx(12.0)
    assert rows["base", 200]["seconds_to_target_il"] == pytest.approx(2.0)
    table = across_budgets_markdown(across).splitlines()
    assert "steps to the strongest baseline's final (200 steps, 90.0%)" in table[0]
    assert table[2] == "| base (baseline) | 100 | 80.0% | 1.0 | never | never |"
    assert table[3] == "| rho | 100 | 91.0% | 12.0 | 100 | 12.0 |"


def test_of_baselines_that_end_level_the_smaller_budget_is_the_strongest() -> None:
    runs = {
        budget: [record("base", 0, [[budget, 0.9, 1.0]], 1.0, False), record("rho", 0, [[budget, 0.9, 2.0]], 2.0, True)]
        for budget in (300, 100, 200)
    }
    summaries = {budget: summarize_budget(r, "base", il_seconds=1.0, il_shared_by=1) for budget, r in runs.items()}
    assert summarize_across_budgets(summaries, runs)["budget"] == 100


def test_the_figure_has_a_panel_per_budget(tmp_path: Path) -> None:
    runs = [record("base", 0, [[1, 0.5, 1.0], [2, 0.7, 2.0]], 2.0, False), record("rho", 0, [[1, 0.6, 1.5]], 1.5, True)]
    summary = summarize_budget(runs, "base", il_seconds=3.0, il_shared_by=1)
    for panels in ({"a": summary}, {"a": summary, "b": summary}):
        paths = metric_vs_seconds(panels, tmp_path, f"figure{len(panels)}")
        assert [p.name for p in paths] == [f"figure{len(panels)}.png", f"figure{len(panels)}.pdf"]
        assert all(p.stat().st_size > 1000 for p in paths)


def test_a_comparison_without_its_baseline_is_refused() -> None:
    with pytest.raises(ValueError, match=r"No runs of the baseline 'base'"):
        summarize_budget([record("rho", 0, [[1, 0.5, 1.0]], 1.0, True)], "base", 1.0, 1)


def test_a_run_without_a_test_pass_is_refused_with_what_to_change(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"seed": 0, "steps": 20, "wall_seconds": 1.0}))
    (tmp_path / TEST_CURVE_FILE).write_text(
        json.dumps({"metric": "test/acc", "mode": "max", "points": [], "test_seconds": 0})
    )
    with pytest.raises(ValueError, match=r"without a test pass.*val_every_n_steps"):
        run_record(tmp_path, "uniform/cosine", uses_il=False)


def test_a_method_of_the_benchmark_carries_its_own_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """``matched_budget.py --methods "<selection>/<scheduler> key=value ..."``: a variant of a method, its
    overrides for its runs alone, in a run folder Hydra can take as paths.output_dir."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "benchmarks"))
    import matched_budget

    overrides, needs_il = matched_budget.method_overrides(
        "reducible_loss/cosine large_batch_size=320 selection.percent_train=0.2"
    )
    assert overrides == [
        "selection=reducible_loss",
        "scheduler=cosine",
        "large_batch_size=320",
        "selection.percent_train=0.2",
    ]
    assert needs_il
    assert matched_budget.method_overrides("uniform/cosine+holdout") == (
        ["selection=uniform", "scheduler=cosine", "datamodule.pool_includes_holdout=true"],
        False,
    )
    folder = matched_budget.run_folder("reducible_loss_proxy/cosine model.hidden_sizes=[64,64]")
    assert folder == "reducible_loss_proxy-cosine-model.hidden_sizes-64-64-" and "=" not in folder
    with pytest.raises(ValueError, match="cannot score the holdout"):
        matched_budget.method_overrides("reducible_loss/cosine+holdout large_batch_size=320")
