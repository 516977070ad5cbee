"""The README's two "your own training loop" examples run as written, on an IL store that
run_irreducible's pipeline made, and the selection step they use picks what RHO-LOSS should."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from rholoss.pipelines import train_irreducible
from rholoss.selection import select_batch, selected_loss, selection_statistics
from rholoss.selection.registry import Selection
from rholoss.tasks import Classification, Regression, TaskMismatchError
from tests.conftest import ROOT, synthetic_config


def readme_examples() -> list[str]:
    """The python blocks of the README's "Your own training loop" section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own training loop", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("own_loop")
    return train_irreducible(synthetic_config(root, "train_irreducible"))["il_store"]


def test_readme_has_both_examples() -> None:
    examples = readme_examples()
    assert len(examples) == 2
    assert all(len(example.strip().splitlines()) <= 25 for example in examples)


@pytest.mark.slow
def test_readme_examples_run_and_learn(store_path: str) -> None:
    plain, lightning = readme_examples()
    namespace: dict = {"STORE": store_path}
    torch.manual_seed(0)
    exec(compile(plain, "README plain loop", "exec"), namespace)
    data, model = namespace["data"], namespace["model"]
    _, x_test, y_test = next(iter(data.test_dataloader()))
    assert (model(x_test).argmax(-1) == y_test).float().mean() > 0.9  # 100 steps learn the blobs
    exec(compile(lightning, "README LightningModule", "exec"), namespace)
    module = namespace["module"]
    assert module.trainer.global_step == 100
    assert (module.model(x_test).argmax(-1) == y_test).float().mean() > 0.9


def test_select_batch_takes_the_top_reducible_loss() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x, y, il = torch.randn(40, 5), torch.randint(0, 3, (40,)), torch.rand(40)
    chosen, scored = select_batch(model, x, y, 8, "reducible_loss", il)
    with torch.no_grad():
        expected = torch.topk(F.cross_entropy(model(x), y, reduction="none") - il, 8).indices
    assert set(chosen.positions.tolist()) == set(expected.tolist())
    assert model.training  # the scoring pass left the model's mode as it was
    stats = selection_statistics(scored, chosen)
    assert float(stats["selection/reducible_loss_selected"]) > float(stats["selection/reducible_loss_not_selected"])


def test_select_batch_on_regression_and_refusals() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x, y, il = torch.randn(30, 4), torch.randn(30), torch.zeros(30)
    chosen, _ = select_batch(model, x, y, 5, "loss", task=Regression())
    with torch.no_grad():
        errors = (model(x).squeeze(1) - y).square()
    assert set(chosen.positions.tolist()) == set(torch.topk(errors, 5).indices.tolist())
    with pytest.raises(
        TaskMismatchError, match=r"'entropy' needs class logits.*Methods for regression: .*reducible_loss"
    ):
        select_batch(model, x, y, 5, "entropy", task=Regression())
    with pytest.raises(ValueError, match="needs the points' irreducible losses"):
        select_batch(model, x, y, 5, "reducible_loss", task=Regression())
    chosen, _ = select_batch(model, x, y, 5, "reducible_loss", il, Regression())
    assert len(chosen.positions) == 5


def test_selected_loss_weights() -> None:
    losses = torch.tensor([1.0, 2.0, 3.0])
    assert float(selected_loss(losses, Selection(torch.arange(3)))) == pytest.approx(2.0)
    weighted = Selection(torch.arange(3), weights=torch.tensor([0.0, 0.0, 3.0]))
    assert float(selected_loss(losses, weighted)) == pytest.approx(3.0)
    assert float(Classification().point_loss(torch.zeros(1, 4), torch.tensor([1]))[0]) == pytest.approx(1.3862944)
