"""The proxy scorer (ClassAct): the large batch is scored by the proxy's loss, not the target's; the
proxy trains on what the target trains on, with an optimizer of its own that the target's never
sees; its weights and optimizer state are in the checkpoint, so a killed run resumes exactly; and a
proxy run through the pipeline keeps RHO-LOSS's noise filtering."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from rholoss.methods import ProxySelection, Run
from rholoss.modules import OnlineBatchSelection
from rholoss.pipelines import train, train_irreducible
from rholoss.selection import get_selection
from rholoss.tasks import Classification
from tests.conftest import synthetic_config
from tests.resuming import EVERY, KILL_AT, STEPS, kill_and_resume


class Scaled(nn.Module):
    """logits = scale * x, recording each forward pass's batch size."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(len(x))
        return x * self.scale


# Under logits = x the odd positions have the highest loss for class 0; under logits = -x the even ones.
X = torch.tensor([[3.0, 0.0], [-2.0, 2.0], [2.0, 0.0], [-3.0, 3.0], [1.0, 0.0], [-4.0, 4.0], [4.0, 0.0], [-1.0, 1.0]])
Y = torch.zeros(8, dtype=torch.long)


def module_with(proxy: nn.Module, target: nn.Module, step: int = 0) -> OnlineBatchSelection:
    method = ProxySelection(get_selection("reducible_loss"), percent_train=0.5, proxy=proxy)
    module = OnlineBatchSelection(target, 2, selection=method)
    module.prepare_pool(8, irreducible=torch.zeros(8))
    module.log = lambda *args, **kw: None  # type: ignore[method-assign]
    module._trainer = SimpleNamespace(global_step=step, max_steps=100, log_every_n_steps=1, optimizers=[])  # type: ignore[assignment]
    return module


def trained(module: OnlineBatchSelection) -> set[int]:
    return set(module.diagnostics.selection_counts.nonzero().flatten().tolist())


def test_the_proxy_scores_the_large_batch_and_the_target_only_trains() -> None:
    proxy, target = Scaled(-1.0), Scaled(1.0)
    module = module_with(proxy, target)
    module.training_step((torch.arange(8), X, Y), 0)
    # The proxy's highest losses (even positions), not the target's (odd): the target ran one forward
    # pass, on the 4 points it trains on; the proxy scored all 8, then trained on those same 4.
    assert trained(module) == {0, 2, 4, 6}
    assert target.sizes == [4] and proxy.sizes == [8, 4]


def test_the_proxy_learns_from_what_the_target_trains_on() -> None:
    torch.manual_seed(0)
    proxy, target = nn.Linear(2, 2), nn.Linear(2, 2)
    module = module_with(proxy, target)
    x = torch.randn(8, 2)
    y = (x[:, 0] > 0).long()
    before = nn.functional.cross_entropy(proxy(x), y).item()
    for _ in range(300):
        module.training_step((torch.arange(8), x, y), 0)
    assert nn.functional.cross_entropy(proxy(x), y).item() < before - 0.2


def test_the_targets_optimizer_never_sees_the_proxy() -> None:
    module = module_with(nn.Linear(2, 2), nn.Linear(2, 2))
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Optimizer)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.model.parameters()}


def test_the_proxy_follows_the_module_to_another_dtype() -> None:
    proxy = nn.Linear(2, 2)
    module = module_with(proxy, nn.Linear(2, 2))
    module.to(torch.float64)
    assert proxy.weight.dtype == torch.float64


def test_the_proxy_and_its_optimizer_state_round_trip_through_the_state_dict() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    first = module_with(nn.Linear(2, 2), nn.Linear(2, 2))
    for _ in range(3):
        first.training_step((torch.arange(8), x, y), 0)
    state = copy.deepcopy(first.state_dict())  # as a checkpoint holds it: not the live tensors
    assert "method._extra_state" in state

    proxy = nn.Linear(2, 2)
    second = module_with(proxy, nn.Linear(2, 2))
    second.load_state_dict(state)
    held = first.method.proxy
    assert all(torch.equal(a, b) for a, b in zip(held.parameters(), proxy.parameters(), strict=True))
    # One more step on each: the same proxy weights after it only if the optimizer state came along.
    first.training_step((torch.arange(8), x, y), 0)
    second.training_step((torch.arange(8), x, y), 0)
    assert all(torch.equal(a, b) for a, b in zip(held.parameters(), proxy.parameters(), strict=True))


@pytest.mark.parametrize(
    ("rule", "settings", "message"),
    [
        ("uniform", {"proxy": nn.Linear(2, 2)}, "needs no forward pass"),
        ("bald", {"proxy": nn.Linear(2, 2)}, "MC-dropout"),
        ("reducible_loss", {"proxy": nn.Linear(2, 2), "stale_every": 10}, "stale_every"),
        ("reducible_loss", {}, "selection.proxy is the proxy's model config"),
        ("reducible_loss", {"proxy": {"hidden_sizes": [8]}}, "with a _target_"),
    ],
)
def test_what_a_proxy_cannot_serve_is_refused(rule: str, settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProxySelection(get_selection(rule), **settings)


def test_a_proxy_config_needs_a_run_that_can_build_it() -> None:
    method = ProxySelection(get_selection("loss"), proxy={"_target_": "rholoss.models.MLP"})
    with pytest.raises(RuntimeError, match="pipeline's Run"):
        method.prepare(Run.in_memory(Classification(2), 8))


@pytest.mark.slow
def test_a_proxy_run_filters_noise_and_a_killed_one_resumes_exactly(
    tmp_path: Path, selected: list[torch.Tensor]
) -> None:
    train_irreducible(synthetic_config(tmp_path, "train_irreducible", output="il"))
    proxy = ["selection=reducible_loss_proxy", "selection.proxy.hidden_sizes=[16]"]
    filtered = train(synthetic_config(tmp_path, "train", *proxy, output="filtered"))
    assert filtered["proxy"]["hidden_sizes"] == [16]
    assert filtered["noisy_selected_fraction"] < 0.1  # the pool is 20% noise; uniform trains on 20%

    selected.clear()
    full, resumed = kill_and_resume(tmp_path, train, "train", *proxy)
    # The resumed run continues from the checkpoint at step EVERY: its selections are the killed run's
    # first EVERY and then its own, the uninterrupted run's all along.
    uninterrupted, killed, after = selected[:STEPS], selected[STEPS : STEPS + EVERY], selected[STEPS + KILL_AT :]
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, killed + after, strict=True))
    assert resumed["test_acc"] == full["test_acc"]
    final = {
        name: torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for name in ("full", "resumed")
    }
    proxies = [final[name]["method._extra_state"]["proxy"] for name in ("full", "resumed")]
    assert proxies[0].keys() == proxies[1].keys()
    assert all(torch.equal(proxies[0][key], proxies[1][key]) for key in proxies[0])
