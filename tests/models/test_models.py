"""Every model config: composed, instantiated, one forward and backward pass on a tiny batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rholoss.models import MLP, SmallCNN, resnet18, torchvision_resnet50
from rholoss.pipelines import build_model
from tests.conftest import CONFIG_DIR, compose_config

# Text models are built from a text datamodule's tokenizer: tests/data/test_text.py (classifiers) and
# tests/data/test_tokens.py (language models) cover them.
TEXT_MODELS = {"albert_base", "tiny_transformer", "tiny_gpt2"}
MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml") if p.stem not in TEXT_MODELS)
# The input each model is tested at. The CIFAR families are for 32x32 and torchvision_resnet50 for
# 224x224, but all pool adaptively before their last layer, so 16x16 runs the same layers at a
# fraction of the cost; VGG's five 2x2 poolings need 32x32.
INPUT_SHAPES = {"mlp": (1, 28, 28), "small_cnn": (1, 28, 28), "vgg11_bn": (3, 32, 32)}
# Settings a config leaves required (???).
REQUIRED = {"torchvision": ["model.name=resnet18"], "timm": ["model.name=resnet18"]}
# Forward+backward of batch 2 takes over 3 s on a shared 2-core CPU.
SLOW = {"densenet121", "googlenet", "inception_v3", "resnet50", "torchvision_resnet50"}
CASES = [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in MODELS]


def build(name: str, shape: tuple[int, ...], *overrides: str, num_classes: int = 7) -> torch.nn.Module:
    cfg = compose_config(
        "train", ["paths.output_dir=/tmp/unused", f"model={name}", *REQUIRED.get(name, []), *overrides]
    )
    return build_model(cfg.model, shape, num_classes)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", CASES)
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    shape = INPUT_SHAPES.get(name, (3, 16, 16))
    model = build(name, shape)
    logits = model(torch.randn(2, *shape))
    assert logits.shape == (2, 7)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 6])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_every_model_family_has_a_config() -> None:
    assert set(MODELS) >= {
        "mlp", "small_cnn", "resnet18", "resnet34", "resnet50", "vgg11_bn", "googlenet", "densenet121",
        "mobilenet_v2", "inception_v3", "torchvision_resnet50", "torchvision",
    }  # fmt: skip


@pytest.mark.parametrize("name", [m for m in MODELS if "dropout" in compose_config(
    "train", ["paths.output_dir=/tmp/unused", f"model={m}"]).model])  # fmt: skip
def test_dropout_is_configurable(name: str) -> None:
    shape = INPUT_SHAPES.get(name, (3, 32, 32))
    dropouts = (torch.nn.Dropout, torch.nn.Dropout2d)
    assert not any(isinstance(m, dropouts) for m in build(name, shape).modules())
    assert any(isinstance(m, dropouts) and m.p == 0.3 for m in build(name, shape, "model.dropout=0.3").modules())


@pytest.mark.parametrize("model", [MLP((1, 28, 28), 5, dropout=0.5), SmallCNN((3, 32, 32), 5, dropout=0.5)])
def test_dropout_is_random_in_train_mode_only(model: torch.nn.Module) -> None:
    x = torch.randn(4, *((1, 28, 28) if isinstance(model, MLP) else (3, 32, 32)))
    assert not torch.equal(model.train()(x), model(x))
    assert torch.equal(model.eval()(x), model(x))


def test_mlp_is_the_papers_network_with_three_hidden_layers_of_512() -> None:
    model = build("mlp", (1, 28, 28), num_classes=10)
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [512, 512, 512, 10]
    assert count(model) == 784 * 512 + 512 + 2 * (512 * 512 + 512) + 512 * 10 + 10


def test_small_cnn_is_as_much_cheaper_than_resnet18_as_the_papers() -> None:
    """Paper Sec. 5.3: 21x fewer parameters and 29x fewer FLOPs per forward pass."""
    small, large = build("small_cnn", (3, 32, 32), num_classes=10), resnet18((3, 32, 32), 10)
    assert 20 <= count(large) / count(small) <= 22

    def flops(model: torch.nn.Module) -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()(torch.zeros(1, 3, 32, 32))
        return counter.get_total_flops()

    assert 27 <= flops(large) / flops(small) <= 31


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (3, 224, 224)])
def test_small_cnn_fits_any_image_size(shape: tuple[int, ...]) -> None:
    assert SmallCNN(shape, 3)(torch.randn(1, *shape)).shape == (1, 3)


def test_image_models_refuse_flat_inputs_with_a_hint() -> None:
    with pytest.raises(ValueError, match="model=mlp"):
        resnet18((20,), 4)
    with pytest.raises(ValueError, match="larger inputs"):
        SmallCNN((1, 8, 8), 4)


def test_torchvision_resnet50_never_downloads_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        torchvision_resnet50((3, 224, 224), 14, pretrained_path=str(tmp_path / "resnet50.pth"))


def test_torchvision_resnet50_refuses_other_weights(tmp_path: Path) -> None:
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not hold ResNet-50 weights"):
        torchvision_resnet50((3, 224, 224), 14, pretrained_path=str(tmp_path / "other.pth"))
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "extra": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="unexpected \\['extra'\\]"):
        torchvision_resnet50((3, 224, 224), 14, pretrained_path=str(tmp_path / "other.pth"))


@pytest.mark.slow  # writes two 94 MB state dicts
def test_torchvision_resnet50_loads_local_weights_and_replaces_a_foreign_head(tmp_path: Path) -> None:
    imagenet = torchvision_resnet50((3, 224, 224), 1000)
    torch.save(imagenet.state_dict(), tmp_path / "imagenet.pth")
    model = build(
        "torchvision_resnet50", (3, 224, 224), f"model.pretrained_path={tmp_path / 'imagenet.pth'}", num_classes=14
    )
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert torch.equal(model.layer4[2].bn3.running_var, imagenet.layer4[2].bn3.running_var)
    assert model.fc.out_features == 14  # ImageNet's 1000-way head does not fit; a new one is trained

    torch.save(model.state_dict(), tmp_path / "clothing.pth")  # same classes: the head is kept too
    again = torchvision_resnet50((3, 224, 224), 14, pretrained_path=str(tmp_path / "clothing.pth"))
    assert torch.equal(again.fc.weight, model.fc.weight)
