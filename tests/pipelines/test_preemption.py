"""A stop signal (SIGTERM, SIGUSR1) to a running stage saves the current step and exits; resuming
ends exactly as an uninterrupted run. The signalled runs are real command lines (subprocesses)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from rholoss.callbacks import StopSignals, requeued_run
from rholoss.irreducible import IrreducibleLossStore
from rholoss.pipelines import train, train_irreducible
from tests.conftest import QUIET, ROOT, compose_config, synthetic_config
from tests.resuming import weights

# Enough steps that the signal, sent once the first periodic checkpoint exists, lands mid-training.
STEPS, EVERY = 500, 20
COMMON = [f"trainer.max_steps={STEPS}", f"checkpoint.every_n_steps={EVERY}", "val_every_n_steps=100"]


def signalled_run(script: str, root: Path, signum: signal.Signals, *overrides: str) -> tuple[int, str, int]:
    """Run ``script`` with the overrides ``synthetic_config`` gives, into ``root/killed``; send
    ``signum`` once training has saved its first checkpoint. (exit status, output, the step the
    log says it stopped at)."""
    run_dir = root / "killed"
    args = [
        *QUIET,
        "experiment=synthetic_noisy_mlp",
        f"paths.root_dir={root}",
        f"paths.output_dir={run_dir}",
        f"hydra.run.dir={run_dir}",
        *COMMON,
        *overrides,
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT / "src")}
    env.pop("SLURM_RESTART_COUNT", None)
    process = subprocess.Popen(
        [sys.executable, script, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoints" / "last.ckpt").exists():  # the marker: training has started
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the run saved no checkpoint in time"
        time.sleep(0.02)
    process.send_signal(signum)
    output = process.communicate(timeout=240)[0]
    stopped = re.search(
        rf"Interrupted by {signum.name} at step (\d+): the state is saved in (\S+)\. Continue with resume=(\S+)", output
    )
    assert stopped, output
    assert Path(stopped.group(2)) == run_dir / "checkpoints" / "last.ckpt" and Path(stopped.group(3)) == run_dir
    return process.returncode, output, int(stopped.group(1))


def saved_step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]


def same_weights(a: Path, b: Path) -> bool:
    reference, other = weights(a), weights(b)
    return reference.keys() == other.keys() and all(torch.equal(reference[name], other[name]) for name in reference)


@pytest.mark.slow
def test_sigterm_to_run_py_saves_the_step_and_the_resumed_run_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    # gradnorm_is samples and dropout masks from the global RNG: an exact match needs the RNG state too.
    overrides = ["selection=gradnorm_is", "model.dropout=0.1"]
    status, _output, step = signalled_run("run.py", tmp_path, signal.SIGTERM, *overrides)
    assert status == 128 + signal.SIGTERM
    assert (
        EVERY <= step < STEPS and saved_step(tmp_path / "killed") == step
    )  # the current step, not the last periodic one
    assert not (tmp_path / "killed" / "results.json").exists()

    full = train(synthetic_config(tmp_path, "train", *COMMON, *overrides, output="full"))
    resumed = train(
        synthetic_config(tmp_path, "train", *COMMON, *overrides, f"resume={tmp_path / 'killed'}", output="resumed")
    )
    assert resumed["steps"] == full["steps"] == STEPS
    assert same_weights(tmp_path / "full", tmp_path / "resumed")
    assert resumed["selection_counts"] == full["selection_counts"]
    assert resumed["noisy_selected_fraction"] == full["noisy_selected_fraction"]
    assert [p[:2] for p in resumed["val_curve"]] == [p[:2] for p in full["val_curve"]]
    assert resumed["test_acc"] == full["test_acc"]


@pytest.mark.slow
def test_sigusr1_to_run_irreducible_py_saves_the_step_and_the_resumed_run_writes_the_same_store(tmp_path: Path) -> None:
    overrides = ["batch_size=100", "model.dropout=0.1"]
    full = train_irreducible(synthetic_config(tmp_path, "train_irreducible", *COMMON, *overrides, output="full"))
    full_losses = IrreducibleLossStore.load(Path(full["il_store"])).losses

    status, output, step = signalled_run("run_irreducible.py", tmp_path, signal.SIGUSR1, *overrides)
    assert status == 128 + signal.SIGUSR1
    assert EVERY <= step < STEPS and saved_step(tmp_path / "killed") == step
    assert "IL store written" not in output

    resumed = train_irreducible(
        synthetic_config(
            tmp_path, "train_irreducible", *COMMON, *overrides, f"resume={tmp_path / 'killed'}", output="resumed"
        )
    )
    assert resumed["il_store"] == full["il_store"]  # same data and IL config: the same cache entry, rewritten
    assert torch.equal(IrreducibleLossStore.load(Path(resumed["il_store"])).losses, full_losses)
    assert same_weights(tmp_path / "full", tmp_path / "resumed")
    assert resumed["val_acc"] == full["val_acc"]
    assert [p[:2] for p in resumed["val_curve"]] == [p[:2] for p in full["val_curve"]]


def test_the_signal_goes_on_to_the_handler_that_was_there_before_training() -> None:
    """Under submitit, its own handler (which requeues the job) had the signal before the trainer."""
    handed: list[int] = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: handed.append(signum))
    try:
        stop = StopSignals()
        stop.remember_outer()
        stop.install()
        os.kill(os.getpid(), signal.SIGUSR2)  # recorded, not acted on: the process goes on
        assert stop.received == signal.SIGUSR2 and handed == []
        with pytest.raises(SystemExit) as exit_:
            stop.hand_over()
        assert exit_.value.code == 128 + signal.SIGUSR2 and handed == [signal.SIGUSR2]
        assert signal.getsignal(signal.SIGUSR2) is not stop._record  # uninstalled
    finally:
        signal.signal(signal.SIGUSR2, before)


def test_a_requeued_slurm_job_continues_from_its_own_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    # A constant rate: the requeued job raises its budget, which a decaying schedule would refuse.
    overrides = ["selection=uniform", "scheduler=constant", "trainer.max_steps=4", "checkpoint.every_n_steps=2"]
    train(synthetic_config(tmp_path, "train", *overrides, "trainer.max_steps=2", output="run"))
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert requeued_run(run_dir) is None  # a first run starts afresh
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert requeued_run(tmp_path / "elsewhere") is None  # requeued before its first checkpoint
    results: dict[str, Any] = train(synthetic_config(tmp_path, "train", *overrides, output="run"))
    assert results["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert results["steps"] == 4


@pytest.mark.parametrize("launcher", ["slurm_example", "slurm_ddp"])
def test_the_slurm_launchers_requeue_a_job_that_reaches_its_time_limit(launcher: str) -> None:
    """submitit requeues on its signal only up to max_num_timeout times (its default: never)."""
    cfg = compose_config(
        "train", [f"hydra/launcher={launcher}", "hydra.launcher.partition=gpu"], return_hydra_config=True
    )
    assert cfg.hydra.launcher.max_num_timeout > 0 and cfg.hydra.launcher.signal_delay_s > 0
