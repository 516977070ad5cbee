"""Selection methods from a user's own package, through ``selection._target_`` as ``model._target_``
names a model: a point-level rule, a token-level rule and a Method class, each defined in a module
outside rholoss (written to tmp_path), run through both stages from the command line; and the checks
a method from anywhere gets (declared needs against the task, unknown options refused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rholoss.methods import PointSelection, build_method
from rholoss.pipelines import train, train_irreducible
from rholoss.tasks import Regression
from tests.conftest import ROOT, synthetic_config
from tests.pipelines.test_language_models import lm_overrides

QUIET = ["trainer.enable_progress_bar=false", "callbacks=none"]

PLUGIN = '''
"""A user's selection methods, in their own package."""
import torch

from rholoss.methods import PointSelection
from rholoss.selection import register_score, register_token_score


@register_score(needs_irreducible=True)
def damped_reducible_loss(batch, damping: float = 0.5):
    """RHO-LOSS with the IL counted at a damping factor."""
    return batch.loss - damping * batch.il


@register_token_score(needs_irreducible=True)
def token_excess_loss(batch):
    """Tokens whose loss most exceeds the reference model's."""
    return batch.token_loss - batch.il


@register_score(needs_class_logits=True)
def margin(batch):
    """Smallest margin between the two largest logits."""
    top = torch.topk(batch.class_logits, 2).values
    return top[:, 1] - top[:, 0]


class EveryOtherStep(PointSelection):
    """Selects by its rule on even steps and trains on the first points drawn on odd ones."""

    default_rule = "reducible_loss"

    def __init__(self, *args, odd_share: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.odd_share = odd_share
        self.odd_steps = 0

    def step(self, context, index, x, y):
        if context.global_step % 2 == 0:
            return super().step(context, index, x, y)
        self.odd_steps += 1
        keep = max(1, round(self.odd_share * self.percent_train * len(y)))
        from rholoss.methods import StepOutcome
        loss = context.task.point_loss(context(x[:keep]), y[:keep]).mean()
        return StepOutcome(loss, index[:keep])

    def results(self):
        return {**super().results(), "odd_steps": self.odd_steps}
'''


@pytest.fixture(scope="module")
def plugin_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user_code")
    (folder / "my_methods.py").write_text(textwrap.dedent(PLUGIN))
    return folder


def run(script: str, *args: str, root: Path, package: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "RHOLOSS_ROOT": str(root),
        "WANDB_MODE": "disabled",
        "HYDRA_FULL_ERROR": "0",
        "PYTHONPATH": os.pathsep.join([str(package), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def results_of(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


@pytest.mark.slow
def test_a_point_level_rule_from_a_users_package_runs_both_stages_from_the_cli(
    tmp_path: Path, plugin_package: Path
) -> None:
    common = [*QUIET, "experiment=synthetic_noisy_mlp"]
    il = run("run_irreducible.py", *common, f"hydra.run.dir={tmp_path / 'il'}", root=tmp_path, package=plugin_package)
    assert il.returncode == 0, il.stderr
    noisy = {}
    for damping in (1.0, 0.0):
        folder = tmp_path / f"damping{damping}"
        target = run(
            "run.py",
            *common,
            "selection._target_=my_methods.damped_reducible_loss",
            f"+selection.damping={damping}",
            f"hydra.run.dir={folder}",
            root=tmp_path,
            package=plugin_package,
        )
        assert target.returncode == 0, target.stderr
        result = results_of(folder)
        assert result["selection"] == "my_methods.damped_reducible_loss"
        assert result["il_store"] == results_of(tmp_path / "il")["il_store"]
        noisy[damping] = result["noisy_selected_fraction"]
    # 20% of the pool is noisy: with the IL counted whole the rule filters it as RHO-LOSS does; without
    # it, it is the loss rule, which picks noise (the option reached the rule).
    assert noisy[1.0] < 0.5 * 0.2 < 0.2 < noisy[0.0]

    typo = run(
        "run.py",
        *common,
        "selection._target_=my_methods.damped_reducible_loss",
        "+selection.dampin=0.25",
        root=tmp_path,
        package=plugin_package,
    )
    assert typo.returncode != 0 and "selection.dampin (did you mean selection.damping?)" in typo.stderr


@pytest.mark.slow
def test_a_token_level_rule_from_a_users_package_runs_both_stages_from_the_cli(
    tmp_path: Path, plugin_package: Path
) -> None:
    il = run(
        "run_irreducible.py",
        *QUIET,
        *lm_overrides(tmp_path, "train_irreducible"),
        "trainer.max_steps=40",
        f"hydra.run.dir={tmp_path / 'il'}",
        root=tmp_path,
        package=plugin_package,
    )
    assert il.returncode == 0, il.stderr
    target = run(
        "run.py",
        *QUIET,
        *lm_overrides(tmp_path, "train"),
        "selection=token_reducible_loss",
        "selection._target_=my_methods.token_excess_loss",
        "selection.token_fraction=0.25",
        f"hydra.run.dir={tmp_path / 'run'}",
        root=tmp_path,
        package=plugin_package,
    )
    assert target.returncode == 0, target.stderr
    result = results_of(tmp_path / "run")
    assert (result["selection"], result["token_fraction"]) == ("my_methods.token_excess_loss", 0.25)
    windows = sum(times * count for times, count in result["selection_counts"]["histogram"])
    seq_len = result["dataset"]["seq_len"]
    assert result["tokens_trained"] == pytest.approx(0.25 * windows * seq_len, rel=0.01)


@pytest.mark.slow
def test_a_method_class_from_a_users_package_runs_with_its_own_options(tmp_path: Path, plugin_package: Path) -> None:
    sys.path.insert(0, str(plugin_package))
    try:
        train_irreducible(synthetic_config(tmp_path, "train_irreducible", output="il"))
        result = train(
            synthetic_config(
                tmp_path,
                "train",
                "selection._target_=my_methods.EveryOtherStep",
                "+selection.odd_share=0.5",
                "trainer.max_steps=10",
                output="run",
            )
        )
    finally:
        sys.path.remove(str(plugin_package))
    assert result["selection"] == "reducible_loss" and result["odd_steps"] == 5
    trained = sum(times * count for times, count in result["selection_counts"]["histogram"])
    n_b = result["batch_size"]
    assert trained == 5 * n_b + 5 * round(0.5 * n_b)


def test_a_rules_declared_needs_are_checked_against_the_task(plugin_package: Path) -> None:
    sys.path.insert(0, str(plugin_package))
    try:
        method = build_method({"_target_": "my_methods.margin", "name": "reducible_loss"})
        assert isinstance(method, PointSelection) and method.name == "my_methods.margin"
        with pytest.raises(Exception, match=r"needs class logits, which task=regression does not give"):
            method.check_task(Regression(1))
    finally:
        sys.path.remove(str(plugin_package))


def test_an_undecorated_function_or_a_missing_target_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"not a selection rule: decorate the function"):
        build_method({"_target_": "os.path.join"})
    with pytest.raises(ValueError, match=r"cannot be imported"):
        build_method({"_target_": "no_such_package.rule"})
    with pytest.raises(
        ValueError, match=r"does not take selection.temprature \(did you mean selection.temperature\?\)"
    ):
        build_method({"name": "reducible_loss_sampled", "temprature": 2.0})
