"""Every model: a forward and backward pass on a tiny batch, for the input shapes it serves."""

from __future__ import annotations

import pytest
import torch

from rholoss.models import MLP, SmallCNN, resnet18

CASES = [
    (MLP, (1, 28, 28)),
    (MLP, (20,)),
    (SmallCNN, (1, 28, 28)),
    (SmallCNN, (3, 32, 32)),
    (resnet18, (3, 32, 32)),
]


@pytest.mark.parametrize(("build", "shape"), CASES, ids=[f"{b.__name__}-{'x'.join(map(str, s))}" for b, s in CASES])
def test_forward_backward(build, shape) -> None:
    torch.manual_seed(0)
    model = build(input_shape=shape, num_classes=7)
    logits = model(torch.randn(4, *shape))
    assert logits.shape == (4, 7)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_mlp_is_the_papers_three_layer_network() -> None:
    model = MLP((1, 28, 28), 10)
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [512, 512, 10]
    assert sum(p.numel() for p in model.parameters()) == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10


def test_mlp_dropout_is_optional() -> None:
    assert not any(isinstance(m, torch.nn.Dropout) for m in MLP((20,), 3).modules())
    assert sum(isinstance(m, torch.nn.Dropout) for m in MLP((20,), 3, dropout=0.1).modules()) == 2


def test_small_cnn_is_much_smaller_than_resnet18() -> None:
    def count(model: torch.nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    assert count(resnet18((3, 32, 32), 10)) > 20 * count(SmallCNN((3, 32, 32), 10))
