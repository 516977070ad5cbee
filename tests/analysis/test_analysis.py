"""rholoss.analysis on hand-written results.json files: the numbers, the table, the CLI, wandb."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rholoss.analysis import analyze, mean_curve, read_logged, summarize
from rholoss.analysis.__main__ import main
from rholoss.sweep import FAILED

# Accuracy at steps 100..400 per (method, seed); seconds are 0.5 per step (loss: 1.0).
CURVES = {
    ("uniform", 0): [0.50, 0.60, 0.70, 0.80],
    ("uniform", 1): [0.50, 0.62, 0.72, 0.78],  # uniform's mean: .50 .61 .71 .79 -> target 0.79 at 400
    ("reducible_loss", 0): [0.70, 0.80, 0.85, 0.86],
    ("reducible_loss", 1): [0.60, 0.78, 0.84, 0.86],  # mean .65 .79: target at 200, speedup 2
    ("loss", 0): [0.40, 0.50, 0.60, 0.70],
    ("loss", 1): [0.40, 0.50, 0.60, 0.84],  # mean (.77 at best) never reaches 0.79; seed 1 does
}


def run_record(method: str, seed: int, folder: Path) -> dict[str, Any]:
    per_step = 1.0 if method == "loss" else 0.5
    curve = [[100 * (i + 1), acc, per_step * 100 * (i + 1)] for i, acc in enumerate(CURVES[method, seed])]
    return {
        "stage": "target",
        "selection": method,
        "seed": seed,
        "val_curve": curve,
        "best_val_acc": max(CURVES[method, seed]),
        "test_acc": CURVES[method, seed][-1] - 0.01,
        "noisy_selected_fraction": {"uniform": 0.1, "loss": 0.5}.get(method, 0.02),
        "relevant_selected_fraction": None,
        "path": str(folder / f"{method}-{seed}"),
    }


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    for method, seed in CURVES:
        job = tmp_path / f"{method}-{seed}"
        job.mkdir()
        record = run_record(method, seed, tmp_path)
        (job / "results.json").write_text(json.dumps({k: v for k, v in record.items() if k != "path"}))
        (job / "csv").mkdir()
        share = "" if method == "uniform" else "0.5"
        (job / "csv" / "metrics.csv").write_text(
            f"epoch,selection/top20_score_share,step,val/acc\n0,{share},49,\n0,,99,0.5\n0,{share and '0.7'},99,\n"
        )
    failed = tmp_path / "loss-2"
    failed.mkdir()
    (failed / "results.json").write_text(json.dumps({"status": FAILED, "selection": "loss", "seed": 2, "error": "OOM"}))
    return tmp_path


def test_speedup_in_the_papers_form(tmp_path: Path) -> None:
    summary = summarize([run_record(m, s, tmp_path) for m, s in CURVES])
    assert summary["target"] == pytest.approx(0.79)
    assert list(summary["methods"]) == ["uniform", "loss", "reducible_loss"]  # baseline first
    uniform, rho, loss = (summary["methods"][n] for n in ("uniform", "reducible_loss", "loss"))
    assert uniform["to_target"]["curve_steps"] == 400 and uniform["speedup"] == 1.0
    assert rho["to_target"]["curve_steps"] == 200 and rho["speedup"] == pytest.approx(2.0)
    assert rho["wall_clock_speedup"] == pytest.approx(2.0)
    # Per seed: uniform seed 1 never reaches its mean's best (0.78 < 0.79), so no mean/min/max.
    assert uniform["to_target"]["steps"] == {"mean": None, "min": None, "max": None, "reached": 1, "seeds": 2}
    assert rho["to_target"]["steps"] == {"mean": 250.0, "min": 200.0, "max": 300.0, "reached": 2, "seeds": 2}
    assert loss["speedup"] is None and loss["to_target"]["steps"]["reached"] == 1
    assert loss["noisy_selected_fraction"]["mean"] == 0.5 and rho["relevant_selected_fraction"] is None
    assert rho["test"]["min"] == pytest.approx(0.85) and rho["test"]["max"] == pytest.approx(0.85)
    # Targets from uniform's first mean accuracy to its best; steps on each method's mean curve.
    assert summary["targets"][0] == pytest.approx(0.5) and summary["targets"][-1] == pytest.approx(0.79)
    assert rho["steps_to_targets"][0]["curve_steps"] == 100


def test_explicit_targets_and_curve_bands(tmp_path: Path) -> None:
    runs = [run_record(m, s, tmp_path) for m, s in CURVES]
    summary = summarize(runs, targets=[0.6, 0.85])
    loss_reach = [t["curve_steps"] for t in summary["methods"]["loss"]["steps_to_targets"]]
    assert loss_reach == [300, None]
    seconds = summary["methods"]["loss"]["steps_to_targets"][0]["seconds"]
    assert (seconds["mean"], seconds["min"], seconds["max"]) == (300.0, 300.0, 300.0)
    curve = mean_curve([r for r in runs if r["selection"] == "uniform"])
    assert curve["steps"] == [100, 200, 300, 400]
    assert curve["min"] == pytest.approx([0.5, 0.6, 0.7, 0.78]) and curve["max"] == pytest.approx(
        [0.5, 0.62, 0.72, 0.8]
    )


def test_clear_errors(tmp_path: Path) -> None:
    runs = [run_record(m, s, tmp_path) for m, s in CURVES if m != "uniform"]
    with pytest.raises(ValueError, match="add selection=uniform"):
        summarize(runs)
    odd = run_record("uniform", 1, tmp_path)
    odd["val_curve"] = [[150, 0.5, 1.0]]
    with pytest.raises(ValueError, match="share no validation step"):
        mean_curve([run_record("uniform", 0, tmp_path), odd])
    with pytest.raises(FileNotFoundError, match="No target run"):
        analyze(tmp_path)


def test_read_logged(sweep_dir: Path) -> None:
    assert read_logged(sweep_dir / "loss-0", "selection/top20_score_share") == [(49, 0.5), (99, 0.7)]
    assert read_logged(sweep_dir / "uniform-0", "selection/top20_score_share") == []
    assert read_logged(sweep_dir / "nowhere", "val/acc") == []


def test_command_line(sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(sweep_dir), "--targets", "0.6,0.79"])
    printed = capsys.readouterr().out
    assert "| reducible_loss | 2 | 200 | 2.00x | 250 [200, 300] | 125.0 [100.0, 150.0] | 2.00x |" in printed
    assert "| loss | 2 | never | never | never (1/2 seeds) |" in printed
    assert "| 60.0% | 200 | 300 | 100 |" in printed  # columns: uniform, loss, reducible_loss
    assert "loss-2: OOM" in printed
    summary = json.loads((sweep_dir / "analysis" / "summary.json").read_text())
    assert summary["targets"] == [0.6, 0.79] and summary["failed"][0]["seed"] == 2
    assert set(summary["figures"]) == {"accuracy_vs_steps", "steps_vs_target", "noisy_selected", "score_concentration"}
    assert all(Path(p).stat().st_size > 5_000 for paths in summary["figures"].values() for p in paths)


def test_command_line_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="No target run"):
        main([str(tmp_path)])
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--targets", "85"])  # percent, not a fraction


@pytest.mark.slow
def test_wandb_logging_offline(sweep_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    main([str(sweep_dir), "--output", str(sweep_dir / "report"), "--wandb"])
    runs = list((sweep_dir / "report" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    media = list(runs[0].rglob("*.png"))
    assert len(media) == 4  # the four figures, as wandb images
