"""Batched on-device augmentation: every output image is a flip of a window of the padded input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rholoss.data import SyntheticDataModule
from rholoss.data.augment import BatchAugment, random_crop, random_flip
from rholoss.modules import OnlineBatchSelection
from rholoss.pipelines import train
from tests.conftest import synthetic_config


def images(n: int = 64, c: int = 3, h: int = 8, w: int = 8) -> Tensor:
    # Distinct positive values, so a crop window is identified by its content and padding by zeros.
    return torch.arange(1, n * c * h * w + 1, dtype=torch.float32).view(n, c, h, w)


def windows(image: Tensor, padding: int) -> list[Tensor]:
    h, w = image.shape[-2:]
    padded = F.pad(image, (padding,) * 4)
    return [
        padded[:, top : top + h, left : left + w] for top in range(2 * padding + 1) for left in range(2 * padding + 1)
    ]


def test_random_crop_returns_a_window_of_the_zero_padded_image() -> None:
    x = images()
    torch.manual_seed(0)
    out = random_crop(x, padding=2)
    assert out.shape == x.shape
    offsets = set()
    for original, cropped in zip(x, out, strict=True):
        matches = [i for i, window in enumerate(windows(original, 2)) if torch.equal(window, cropped)]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 10  # offsets are drawn per image, not once per batch


def test_random_flip_mirrors_about_half_of_the_images() -> None:
    x = images(n=400)
    torch.manual_seed(0)
    out = random_flip(x)
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)])
    unchanged = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    assert bool((flipped ^ unchanged).all())
    assert 150 < int(flipped.sum()) < 250


def test_batch_augment_is_seeded_and_keeps_dtype_and_device() -> None:
    x = images()
    torch.manual_seed(5)
    first = BatchAugment(4)(x)
    torch.manual_seed(5)
    assert torch.equal(first, BatchAugment(4)(x))
    assert first.dtype == x.dtype and first.device == x.device
    assert torch.equal(BatchAugment(0, flip=False)(x), x)


def test_batch_augment_refuses_non_images_and_negative_padding() -> None:
    with pytest.raises(ValueError, match="augment=false"):
        BatchAugment()(torch.randn(4, 10))
    with pytest.raises(ValueError, match="crop_padding"):
        BatchAugment(-1)


def test_datamodule_builds_augmentation_only_for_images_and_only_when_asked() -> None:
    assert SyntheticDataModule().train_augmentation() is None
    with pytest.raises(ValueError, match="augment=false"):
        SyntheticDataModule(augment=True).train_augmentation()


def test_the_target_module_scores_and_trains_on_augmented_large_batches() -> None:
    seen: list[Tensor] = []

    class Recorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3 * 8 * 8, 4)

        def forward(self, x: Tensor) -> Tensor:
            seen.append(x.detach().clone())
            return self.linear(x.flatten(1))

    module = OnlineBatchSelection(Recorder(), 4, selection="loss", percent_train=0.25, augment=BatchAugment(2))
    module.prepare_pool(64)
    module.log = lambda *args, **kw: None
    x = images(16)
    module.training_step((torch.arange(16), x, torch.zeros(16, dtype=torch.long)), 0)
    scored, trained = seen
    assert not torch.equal(scored, x)  # the selection pass saw augmented images...
    assert any(torch.equal(trained[0], s) for s in scored)  # ...and training used the same ones


def test_training_with_augmentation_from_the_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="augment=false"):  # vectors cannot be cropped: refused before training
        train(synthetic_config(tmp_path, "train", "selection=uniform", "datamodule.augment=true", output="vectors"))
    result = train(
        synthetic_config(
            tmp_path,
            "train",
            "selection=loss",
            "datamodule.augment=true",
            "datamodule.image_shape=[1,6,6]",
            "trainer.max_steps=10",
            output="images",
        )
    )
    assert result["steps"] == 10 and 0.0 <= result["test_acc"] <= 1.0
