"""Multiruns through the real run.py, in this process (Hydra's basic launcher runs the jobs one after
another in-process), then the analysis of the sweep folder; sweep and launcher configs compose."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from rholoss.analysis import analyze, load_results
from rholoss.pipelines import train_irreducible
from rholoss.selection import get_selection
from rholoss.sweep import run_job
from tests.conftest import CONFIG_DIR, QUIET, ROOT, compose_config

SYNTHETIC = ["experiment=synthetic_noisy_mlp", *QUIET]


def multirun(root: Path, sweep_dir: Path, *overrides: str) -> None:
    """``python run.py -m ...`` in this process: Lightning is imported once for all jobs."""
    argv = ["run.py", "-m", *SYNTHETIC, f"paths.root_dir={root}", f"hydra.sweep.dir={sweep_dir}", *overrides]
    saved, sys.argv = sys.argv, argv
    try:
        # As __main__, as `python run.py` runs it.
        runpy.run_path(str(ROOT / "run.py"), run_name="__main__")
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """IL stage once, then selection=uniform,reducible_loss x seed=0,1, then the analysis."""
    root = tmp_path_factory.mktemp("sweep")
    train_irreducible(
        compose_config("train_irreducible", [*SYNTHETIC, f"paths.root_dir={root}", f"paths.output_dir={root / 'il'}"])
    )
    multirun(root, root / "sweep", "selection=uniform,reducible_loss", "seed=0,1")
    return {"dir": root / "sweep", "summary": analyze(root / "sweep")}


@pytest.mark.slow
def test_every_job_lands_in_the_sweep_folder(sweep: dict[str, Any]) -> None:
    runs = load_results(sweep["dir"])
    assert sorted((r["selection"], r["seed"]) for r in runs) == [
        ("reducible_loss", 0),
        ("reducible_loss", 1),
        ("uniform", 0),
        ("uniform", 1),
    ]
    assert all(Path(r["path"]).parent == sweep["dir"] for r in runs)


@pytest.mark.slow
def test_speedup_table_matches_the_runs(sweep: dict[str, Any]) -> None:
    runs, summary = load_results(sweep["dir"]), sweep["summary"]
    curves = {name: [r["val_curve"] for r in runs if r["selection"] == name] for name in ("uniform", "reducible_loss")}
    # Independently: the seed-mean curve of each method, uniform's best, the first step reaching it.
    mean = {name: np.mean([[p[1] for p in c] for c in cs], axis=0) for name, cs in curves.items()}
    steps = [p[0] for p in curves["uniform"][0]]
    target = mean["uniform"].max()
    first = {
        name: next((s for s, a in zip(steps, m, strict=True) if a >= target - 1e-9), None) for name, m in mean.items()
    }
    assert summary["target"] == pytest.approx(target)
    uniform, rho = summary["methods"]["uniform"], summary["methods"]["reducible_loss"]
    assert uniform["to_target"]["curve_steps"] == first["uniform"] and uniform["speedup"] == 1.0
    assert rho["to_target"]["curve_steps"] == first["reducible_loss"]
    if first["reducible_loss"] is None:
        assert rho["speedup"] is None and "| reducible_loss | 2 | never | never |" in summary["markdown"]
    else:
        assert rho["speedup"] == pytest.approx(first["uniform"] / first["reducible_loss"])
        assert f"| {rho['speedup']:.2f}x |" in summary["markdown"]
    # RHO-LOSS avoids the corrupted points that uniform draws at the noise rate (20%).
    assert uniform["noisy_selected_fraction"]["mean"] == pytest.approx(0.2, abs=0.05)
    assert rho["noisy_selected_fraction"]["max"] < uniform["noisy_selected_fraction"]["min"]
    test_accs = sorted(r["test_acc"] for r in runs if r["selection"] == "uniform")
    assert [uniform["test"]["min"], uniform["test"]["max"]] == pytest.approx(test_accs)
    assert summary["failed"] == []


@pytest.mark.slow
def test_analysis_files(sweep: dict[str, Any]) -> None:
    folder = sweep["dir"] / "analysis"
    written = json.loads((folder / "summary.json").read_text())
    assert written["methods"]["reducible_loss"]["speedup"] == sweep["summary"]["methods"]["reducible_loss"]["speedup"]
    assert (folder / "summary.md").read_text().strip() == sweep["summary"]["markdown"]
    figures = sweep["summary"]["figures"]
    # Uniform has no scores, RHO-LOSS logs its score concentration: all four figures are drawn.
    assert set(figures) == {"accuracy_vs_steps", "steps_vs_target", "noisy_selected", "score_concentration"}
    for png, pdf in figures.values():
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(png).stat().st_size > 10_000
        assert Path(pdf).read_bytes()[:5] == b"%PDF-"


@pytest.mark.slow
def test_a_failing_job_does_not_lose_the_others(tmp_path: Path) -> None:
    # No IL store in this root: the reducible_loss job fails, the uniform jobs around it finish.
    with pytest.raises(SystemExit) as exit_info:
        multirun(tmp_path, tmp_path / "sweep", "selection=uniform,reducible_loss", "seed=0", "trainer.max_steps=20")
    assert exit_info.value.code == 1
    records = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/results.json")}
    assert len(records) == 2
    failed = next(r for r in records.values() if r.get("status") == "failed")
    assert failed["selection"] == "reducible_loss" and failed["seed"] == 0
    assert failed["error"].startswith("StoreError:") and "python run_irreducible.py" in failed["error"]
    assert [r["selection"] for r in load_results(tmp_path / "sweep")] == ["uniform"]
    summary = analyze(tmp_path / "sweep", figures=False)
    assert [(f["selection"], f["seed"]) for f in summary["failed"]] == [("reducible_loss", 0)]
    assert "Failed jobs:" in summary["markdown"] and "StoreError" in summary["markdown"]


def test_a_single_run_raises() -> None:
    def broken(cfg: DictConfig) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):  # no multirun: nothing to protect, fail loudly
        run_job(broken, OmegaConf.create({"stage": "target"}))


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIG_DIR / "sweep").glob("*.yaml")))
def test_sweep_configs_name_real_choices(name: str) -> None:
    cfg = compose_config("train", [f"sweep={name}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert "selection" in params and len(params) >= 2
    for selection in params.selection.split(","):
        get_selection(selection)  # raises on a name that is not registered
        assert (CONFIG_DIR / "selection" / f"{selection}.yaml").is_file()
    # The swept keys exist: one job's overrides compose.
    compose_config("train", [f"{key}={str(values).split(',')[-1]}" for key, values in params.items()])


def test_hparams_grid_is_the_papers() -> None:
    params = compose_config("train", ["sweep=hparams"], return_hydra_config=True).hydra.sweeper.params
    assert params["large_batch_size"] == "1600,3200,9600"  # n_b = 160/320/960 at percent_train 0.1
    assert [float(v) for v in params["optimizer.lr"].split(",")] == [1e-4, 1e-3, 1e-2]
    assert [float(v) for v in params["optimizer.weight_decay"].split(",")] == [1e-3, 1e-2, 1e-1]
    assert compose_config("train", [])["selection"]["percent_train"] == 0.1


@pytest.mark.parametrize(
    ("launcher", "plugin", "target"),
    [
        ("local_parallel", "hydra_plugins.hydra_joblib_launcher", "JoblibLauncher"),
        ("slurm_example", "hydra_plugins.hydra_submitit_launcher", "SlurmLauncher"),
    ],
)
def test_launcher_configs_compose(launcher: str, plugin: str, target: str) -> None:
    pytest.importorskip(plugin, reason=f"the launcher plugin is an optional extra ({plugin})")
    cfg = compose_config(
        "train",
        [f"hydra/launcher={launcher}", "hydra.launcher.partition=gpu"]
        if launcher == "slurm_example"
        else [f"hydra/launcher={launcher}"],
        return_hydra_config=True,
    )
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "local_parallel":
        assert cfg.hydra.launcher.n_jobs == 2
    else:
        assert cfg.hydra.launcher.partition == "gpu" and cfg.hydra.launcher.gpus_per_node == 1
