"""Keys nothing reads (typos added with +) are refused before any work, naming the closest key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rholoss.config_check import UnknownConfigKeyError
from rholoss.pipelines import train, train_irreducible
from tests.conftest import synthetic_config
from tests.pipelines.test_cli import run


@pytest.mark.parametrize(
    ("stage", "config", "added", "named"),
    [
        (train, "train", ["+foo=1"], r"  foo \(no similar key\)"),
        (train, "train", ["+trainer.max_step=5"], r"trainer.max_step \(did you mean trainer.max_steps\?\)"),
        (
            train,
            "train",
            ["+checkpoint.every_n_step=5"],
            r"checkpoint.every_n_step \(did you mean checkpoint.every_n_steps\?\)",
        ),
        (
            train,
            "train",
            ["+datamodule.label_nosie=0.1"],
            r"datamodule.label_nosie \(did you mean datamodule.label_noise\?\)",
        ),
        (train, "train", ["+model.dropuot=0.1"], r"model.dropuot \(did you mean model.dropout\?\)"),
        (
            train,
            "train",
            ["selection=reducible_loss_sampled", "+selection.temprature=2"],
            r"selection.temprature \(did you mean selection.temperature\?\)",
        ),
        # temperature is a key of reducible_loss_sampled, which the loss function does not take
        (
            train,
            "train",
            ["selection=loss", "++selection.temperature=2"],
            r"(?s)selection.temperature .*the selection function loss takes no options",
        ),
        (
            train_irreducible,
            "train_irreducible",
            ["+irreducible.stratgy=two_halves"],
            r"did you mean irreducible.strategy\?",
        ),
    ],
)
def test_a_key_nothing_reads_is_refused_before_any_work(
    tmp_path: Path, stage: Any, config: str, added: list[str], named: str
) -> None:
    with pytest.raises(UnknownConfigKeyError, match=named):
        stage(synthetic_config(tmp_path, config, *added, output="run"))
    assert not (tmp_path / "run").exists()  # not even the resolved config written


def test_additions_the_code_takes_still_run(tmp_path: Path) -> None:
    """A Trainer argument no config sets, and a callback added with its own settings."""
    added = [
        "+trainer.gradient_clip_val=1.0",
        "+callbacks.stop._target_=pytorch_lightning.callbacks.EarlyStopping",
        "+callbacks.stop.monitor=val/acc",
        "+callbacks.stop.mode=max",
    ]
    results = train(synthetic_config(tmp_path, "train", "selection=uniform", "trainer.max_steps=3", *added))
    assert results["steps"] == 3


@pytest.mark.slow
def test_the_command_line_names_the_unknown_key(tmp_path: Path) -> None:
    result = run("run.py", "experiment=synthetic_noisy_mlp", "+foo=1", root=tmp_path)
    assert result.returncode != 0
    assert "These config keys are read by nothing" in result.stderr and "  foo (no similar key)" in result.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("config_resolved.yaml"))
