"""rholoss as a tool: the wheel installed into a fresh venv runs both stages and the analysis from an
empty folder through its console scripts, with the configs it ships, and the TensorBoard and MLflow
loggers write logs the analysis reads. The checks that need no install run in this process."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from rholoss.analysis import load_results, read_logged
from rholoss.cli import stage_command
from rholoss.pipelines import train, train_irreducible
from tests.conftest import ROOT, synthetic_config

# Both stages tiny: a few steps, validated and logged every 5.
TINY = [
    "experiment=synthetic_noisy_mlp",
    "trainer.enable_progress_bar=false",
    "callbacks=none",
    "trainer.max_steps=10",
    "val_every_n_steps=5",
    "trainer.log_every_n_steps=5",
]


def outside_the_checkout() -> dict[str, str]:
    """This test's environment, less what points into the checkout (PYTHONPATH=src would make pip
    and the venv see the checkout's rholoss)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RHOLOSS_ROOT")}


def build_wheel(workspace: Path) -> Path:
    """The wheel of a copy of the checkout (the build leaves its folders in the copy, not here)."""
    source = workspace / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(workspace / "dist"), str(source)],
        check=True,
        capture_output=True,
        env=outside_the_checkout(),
    )
    (wheel,) = (workspace / "dist").glob("rholoss-*.whl")
    return wheel


def fresh_venv(folder: Path, wheel: Path) -> Path:
    """A venv holding only the wheel, whose dependencies (torch, Lightning, ...) it sees through a
    .pth line naming this interpreter's site-packages. A folder added that way is searched after the
    venv's own, and its own .pth files are not read, so this interpreter's editable rholoss stays out."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--python", str(python)]
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        env=outside_the_checkout(),
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        env=outside_the_checkout(),
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (Path(purelib) / "dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    return folder / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    workspace = tmp_path_factory.mktemp("install")
    scripts = fresh_venv(workspace / "venv", build_wheel(workspace))
    work = workspace / "work"  # empty: no configs, no run.py, nothing of the checkout
    work.mkdir()
    return {"scripts": scripts, "work": work, "venv": workspace / "venv"}


def command(installed: dict[str, Path], script: str, *args: str) -> subprocess.CompletedProcess:
    env = outside_the_checkout()
    env.update(WANDB_MODE="disabled", HYDRA_FULL_ERROR="0", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run(
        [str(installed["scripts"] / script), *args],
        cwd=installed["work"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_wheel_runs_both_stages_and_the_analysis_from_an_empty_folder(installed: dict[str, Path]) -> None:
    where = command(installed, "python", "-c", "import rholoss; print(rholoss.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(installed["venv"]), where.stdout + where.stderr

    il = command(installed, "rholoss-irreducible", *TINY)
    assert il.returncode == 0, il.stderr
    assert list((installed["work"] / ".cache" / "irreducible").glob("synthetic-*/il-*.pt"))
    (il_run,) = (installed["work"] / "outputs" / "irreducible" / "runs").iterdir()
    assert (il_run / "irreducible.log").is_file() and (il_run / "results.json").is_file()

    sweep = installed["work"] / "outputs" / "train" / "multirun" / "loggers"
    loggers = ["-m", "selection=uniform,reducible_loss", "logger=tensorboard,mlflow", f"hydra.sweep.dir={sweep}"]
    target = command(installed, "rholoss-train", *loggers, *TINY)
    assert target.returncode == 0, target.stderr
    runs = {(r["selection"], Path(r["path"])) for r in load_results(sweep)}
    assert len(runs) == 4
    for _, run in runs:
        # One logger per job, nothing else (TensorBoard opens a second event file for the test pass).
        tensorboard = any((run / "tensorboard").glob("events.out.tfevents.*"))
        mlflow = any((run / "mlruns").glob("*/*/metrics/val/acc"))
        assert tensorboard != mlflow, run
        assert not (run / "csv").exists()
        # What the logger wrote is what the run measured: its validation curve (which counts the steps
        # taken; Lightning's loggers number a step from 0, as the CSV does).
        curve = json.loads((run / "results.json").read_text())["val_curve"]
        logged = read_logged(run, "val/acc")
        assert [s for s, _ in logged] == [s - 1 for s, *_ in curve] and len(curve) >= 2
        assert [v for _, v in logged] == pytest.approx([v for _, v, *_ in curve], abs=1e-6)

    analysis = command(installed, "rholoss-analysis", str(sweep))
    assert analysis.returncode == 0, analysis.stderr
    assert "| reducible_loss |" in analysis.stdout and "| uniform |" in analysis.stdout
    summary = json.loads((sweep / "analysis" / "summary.json").read_text())
    # Drawn only from the logged selection scores of both reducible_loss runs: the TensorBoard and the MLflow one.
    assert "score_concentration" in summary["figures"]


@pytest.mark.slow
def test_a_missing_store_names_the_console_script_that_makes_it(installed: dict[str, Path]) -> None:
    missing = command(installed, "rholoss-train", *TINY, "datamodule.label_noise=0.3", "paths.root_dir=elsewhere")
    assert missing.returncode != 0
    assert "rholoss-irreducible experiment=synthetic_noisy_mlp datamodule.label_noise=0.3" in missing.stderr


@pytest.mark.parametrize(
    ("argv0", "expected"),
    [
        ("/venv/bin/rholoss-train", "rholoss-irreducible"),
        ("/site-packages/rholoss/__main__.py", "python -m rholoss irreducible"),
        ("run.py", "python run_irreducible.py"),
        ("/venv/bin/pytest", "python run_irreducible.py"),
    ],
)
def test_the_command_printed_is_the_form_the_user_started(
    monkeypatch: pytest.MonkeyPatch, argv0: str, expected: str
) -> None:
    monkeypatch.setattr(sys, "argv", [argv0])
    assert stage_command("irreducible") == expected


@pytest.mark.parametrize(
    ("logger", "package"), [("wandb", "wandb"), ("tensorboard", "tensorboard"), ("mlflow", "mlflow")]
)
def test_a_logger_without_its_package_names_the_extra_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logger: str, package: str
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else find_spec(name, *a))
    with pytest.raises(ModuleNotFoundError, match=rf"logger={logger} .*pip install 'rholoss\[{logger}\]'"):
        train(synthetic_config(tmp_path, "train", f"logger={logger}", output="run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_two_il_models_keep_their_own_tensorboard_logs(tmp_path: Path) -> None:
    """``irreducible.strategy=two_halves`` trains two IL models in one run: each gets its own
    TensorBoard folder, as each gets its own CSV log."""
    cfg = synthetic_config(
        tmp_path, "train_irreducible", "irreducible.strategy=two_halves", "logger=tensorboard", *TINY[3:]
    )
    train_irreducible(cfg)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = Path(cfg.paths.output_dir) / "tensorboard"
    assert not list(folder.glob("events.out.tfevents.*"))
    for half in ("half_a", "half_b"):
        events = EventAccumulator(str(folder / half))
        events.Reload()
        # Each model's own two validations and its best checkpoint's, neither mixed with the other's.
        assert [event.step for event in events.Scalars("val/acc")] == [4, 9, 10], half
