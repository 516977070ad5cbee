"""A run killed mid-epoch and resumed from its last checkpoint ends exactly as an uninterrupted run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from rholoss.callbacks import CheckpointError, NonFiniteLossError, StepCheckpoint, resolve_resume
from rholoss.pipelines import train, train_irreducible
from tests.conftest import synthetic_config
from tests.resuming import KILL_AT, kill_at, weights

# 1800 pool points in large batches of 320: 5 steps per epoch, so steps 7 and KILL_AT (10) are mid-epoch.
STEPS, EVERY = 16, 7


def kill_and_resume(root: Path, stage: Any, config: str, *overrides: str) -> tuple[dict, dict]:
    """(uninterrupted result, resumed result); the killed run's folder is ``root/killed``."""
    common = [f"trainer.max_steps={STEPS}", f"checkpoint.every_n_steps={EVERY}", "val_every_n_steps=5", *overrides]
    full = stage(synthetic_config(root, config, *common, output="full"))
    with pytest.raises(RuntimeError, match=f"killed at step {KILL_AT}"):
        stage(synthetic_config(root, config, *common, *kill_at(), output="killed"))
    resumed = stage(synthetic_config(root, config, *common, f"resume={root / 'killed'}", output="resumed"))
    return full, resumed


@pytest.mark.slow
@pytest.mark.parametrize("on_device", [True, False])
def test_killed_target_run_resumes_to_the_same_selections_and_weights(
    tmp_path: Path, selected: list[torch.Tensor], on_device: bool
) -> None:
    # gradnorm_is samples its points and dropout masks its units, both from the global RNG: the run
    # matches only if the RNG state is restored as well as the data position.
    full, resumed = kill_and_resume(
        tmp_path, train, "train", "selection=gradnorm_is", "model.dropout=0.1", f"datamodule.on_device={on_device}"
    )
    assert len(selected) == STEPS + KILL_AT + (STEPS - EVERY)
    uninterrupted, killed, after = selected[:STEPS], selected[STEPS : STEPS + EVERY], selected[STEPS + KILL_AT :]
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, killed + after, strict=True))
    reference, continued = weights(tmp_path / "full"), weights(tmp_path / "resumed")
    assert all(torch.equal(reference[name], continued[name]) for name in reference)
    assert resumed["resumed_from"] == str(tmp_path / "killed" / "checkpoints" / "last.ckpt")
    assert resumed["steps"] == full["steps"] == STEPS
    assert [p[:2] for p in resumed["val_curve"]] == [p[:2] for p in full["val_curve"]]
    assert resumed["test_acc"] == full["test_acc"]
    assert resumed["selection_counts"] == full["selection_counts"]
    assert resumed["noisy_selected_fraction"] == full["noisy_selected_fraction"]


@pytest.mark.slow
def test_killed_irreducible_run_resumes_to_the_same_store(tmp_path: Path) -> None:
    full, resumed = kill_and_resume(
        tmp_path, train_irreducible, "train_irreducible", "batch_size=100", "model.dropout=0.1"
    )
    reference, continued = weights(tmp_path / "full"), weights(tmp_path / "resumed")
    assert all(torch.equal(reference[name], continued[name]) for name in reference)
    assert resumed["val_curve"] == [[*p[:2], resumed["val_curve"][i][2]] for i, p in enumerate(full["val_curve"])]
    assert resumed["val_acc"] == full["val_acc"]
    assert resumed["il_store"] == full["il_store"]  # same data and IL config: the same cache entry
    assert Path(resumed["best_checkpoint"]).parent == tmp_path / "killed" / "checkpoints"
    assert Path(resumed["best_checkpoint"]).name == Path(full["best_checkpoint"]).name


def test_resume_refuses_other_settings_naming_them(tmp_path: Path) -> None:
    train(
        synthetic_config(
            tmp_path, "train", "selection=uniform", "trainer.max_steps=3", "checkpoint.every_n_steps=2", output="a"
        )
    )
    with pytest.raises(CheckpointError, match=r"selection.name: uniform -> loss"):
        train(synthetic_config(tmp_path, "train", "selection=loss", f"resume={tmp_path / 'a'}", output="b"))
    assert not (tmp_path / "b" / "results.json").exists()


@pytest.mark.parametrize("damage", ["missing", "truncated", "foreign"])
def test_a_bad_checkpoint_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    if damage == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}, "loops": {}}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    message = {
        "missing": "no checkpoint at",
        "truncated": "truncated or not a checkpoint",
        "foreign": "not a training checkpoint",
    }
    with pytest.raises(CheckpointError, match=message[damage]):
        train(
            synthetic_config(
                tmp_path,
                "train",
                "selection=uniform",
                f"resume={path.parent.parent if damage == 'missing' else path}",
                output="out",
            )
            if damage != "missing"
            else synthetic_config(
                tmp_path, "train", "selection=uniform", f"resume={tmp_path / 'nowhere'}", output="out"
            )
        )


@pytest.mark.parametrize(("stage", "config"), [(train, "train"), (train_irreducible, "train_irreducible")])
def test_non_finite_loss_stops_with_the_step_and_keeps_a_finite_checkpoint(
    tmp_path: Path, stage: Any, config: str
) -> None:
    selection = ["selection=uniform"] if config == "train" else []
    with pytest.raises(NonFiniteLossError, match=r"NaN or infinite at step \d+") as error:
        stage(
            synthetic_config(
                tmp_path,
                config,
                *selection,
                "optimizer.lr=1e30",
                "trainer.max_steps=200",
                "trainer.log_every_n_steps=1",
                "checkpoint.every_n_steps=1",
                output="run",
            )
        )
    folder = tmp_path / "run" / "checkpoints"
    failed = list(folder.glob("failed-step*.ckpt"))
    assert len(failed) == 1 and str(failed[0]) in str(error.value)
    assert f"resume={folder / 'last.ckpt'}" in str(error.value)
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values() if t.is_floating_point())
    assert not (tmp_path / "run" / "results.json").exists()
    assert not list((tmp_path / ".cache").rglob("il-*.pt"))  # no store from a diverged IL model


def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path: Path) -> None:
    callback = StepCheckpoint(tmp_path, every_n_steps=1)
    saved = {"state_dict": {"w": torch.ones(3)}, "loops": {}}

    def save_checkpoint(path: Path) -> None:
        torch.save(saved, path)

    trainer = SimpleNamespace(
        save_checkpoint=save_checkpoint, is_global_zero=True, strategy=SimpleNamespace(barrier=lambda name: None)
    )
    callback.save(trainer, callback.last_path)

    def killed_mid_write(path: Path) -> None:
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the job is killed while the new checkpoint is being written

    trainer.save_checkpoint = killed_mid_write
    with pytest.raises(KeyboardInterrupt):
        callback.save(trainer, callback.last_path)
    assert resolve_resume(callback.last_path) == callback.last_path  # still a whole checkpoint
    assert torch.equal(torch.load(callback.last_path, weights_only=False)["state_dict"]["w"], torch.ones(3))


def test_without_periodic_checkpoints_a_non_finite_loss_still_stops_the_run(tmp_path: Path) -> None:
    overrides = ["selection=uniform", "optimizer.lr=1e30", "trainer.max_steps=200", "trainer.log_every_n_steps=1"]
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ .*\(no earlier checkpoint was saved\)"):
        train(synthetic_config(tmp_path, "train", *overrides, "checkpoint.every_n_steps=null", output="run"))
    assert next(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()).startswith("failed-step")
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_checkpoint_every_zero_steps_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"checkpoint.every_n_steps must be at least 1, or null .*got 0"):
        train(synthetic_config(tmp_path, "train", "selection=uniform", "checkpoint.every_n_steps=0", output="run"))
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.slow
def test_same_seed_same_splits_noise_selections_and_weights(tmp_path: Path, selected: list[torch.Tensor]) -> None:
    def run(seed: int, output: str) -> dict:
        return train(
            synthetic_config(
                tmp_path,
                "train",
                "selection=gradnorm_is",
                "model.dropout=0.1",
                f"seed={seed}",
                "trainer.max_steps=6",
                "datamodule.on_device=false",
                output=output,
            )
        )

    runs = [run(0, "a"), run(0, "b"), run(1, "c")]
    a, b, c = selected[:6], selected[6:12], selected[12:]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(torch.cat(a), torch.cat(c))  # another seed is another run
    assert runs[0]["dataset"] == runs[1]["dataset"] == runs[2]["dataset"]  # splits and noise follow split_seed
    assert runs[0]["selection_counts"] == runs[1]["selection_counts"]
    assert runs[0]["test_acc"] == runs[1]["test_acc"]
    reference, again = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(reference[name], again[name]) for name in reference)
