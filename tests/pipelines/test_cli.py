"""The real command lines, as a user types them (subprocesses: slow, so marked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rholoss.analysis import load_results, method_table
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
QUIET = ["experiment=synthetic_noisy_mlp", "trainer.enable_progress_bar=false", "callbacks=none"]


def run(script: str, *args: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RHOLOSS_ROOT": str(root), "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_two_stages_from_the_command_line(tmp_path: Path) -> None:
    missing = run("run.py", *QUIET, "datamodule.label_noise=0.3", root=tmp_path)
    assert missing.returncode != 0
    assert "python run_irreducible.py experiment=synthetic_noisy_mlp datamodule.label_noise=0.3" in missing.stderr

    il = run(
        "run_irreducible.py", *QUIET, "datamodule.label_noise=0.3", f"hydra.run.dir={tmp_path / 'il'}", root=tmp_path
    )
    assert il.returncode == 0, il.stderr
    assert "IL store written: " in il.stderr + il.stdout
    assert "IL model val accuracy" in il.stderr + il.stdout
    assert list((tmp_path / ".cache" / "irreducible").glob("synthetic-*/il-*.pt"))

    sweep = run(
        "run.py",
        "-m",
        *QUIET,
        "datamodule.label_noise=0.3",
        "selection=uniform,reducible_loss",
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        root=tmp_path,
    )
    assert sweep.returncode == 0, sweep.stderr
    results = load_results(tmp_path / "sweep")
    assert sorted((r["selection"], r["seed"]) for r in results) == [
        ("reducible_loss", 0),
        ("reducible_loss", 1),
        ("uniform", 0),
        ("uniform", 1),
    ]
    assert all((Path(r["path"]) / ".hydra" / "config.yaml").is_file() for r in results)
    table = method_table(results)
    assert table.count("| reducible_loss |") == 2 and table.count("| uniform |") == 2


def test_bad_override_is_reported_without_a_traceback(tmp_path: Path) -> None:
    result = run("run.py", *QUIET, "selection=nope", root=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'selection/nope'" in result.stderr
    assert "reducible_loss" in result.stderr
