"""The on-device data path gives exactly the batches of the DataLoader path."""

from __future__ import annotations

import re

import pytest
import torch
from torch.utils.data import Dataset

from rholoss.data import IndexedDataset, SyntheticDataModule
from rholoss.data.in_memory import in_memory_tensors


def batches(on_device: bool, train_split: str = "pool", epochs: int = 2) -> list[list[tuple]]:
    torch.manual_seed(0)
    datamodule = SyntheticDataModule(batch_size=64, on_device=on_device, label_noise=0.1, train_split=train_split)
    datamodule.setup()
    loader = datamodule.train_dataloader()
    return [list(loader) for _ in range(epochs)]


@pytest.mark.parametrize("train_split", ["pool", "holdout"])
def test_same_batches_as_the_dataloader_for_the_same_seed(train_split: str) -> None:
    reference, on_device = batches(False, train_split), batches(True, train_split)
    assert [len(epoch) for epoch in on_device] == [len(epoch) for epoch in reference]
    for ref_epoch, dev_epoch in zip(reference, on_device, strict=True):
        for (ref_index, ref_x, ref_y), (index, x, y) in zip(ref_epoch, dev_epoch, strict=True):
            assert torch.equal(index, ref_index) and torch.equal(x, ref_x) and torch.equal(y, ref_y)
    first_epoch_order = torch.cat([index for index, _, _ in on_device[0]])
    second_epoch_order = torch.cat([index for index, _, _ in on_device[1]])
    assert not torch.equal(first_epoch_order, second_epoch_order)  # a new permutation each epoch


def test_pool_batches_drop_the_partial_large_batch_and_carry_noisy_labels() -> None:
    torch.manual_seed(0)
    datamodule = SyntheticDataModule(batch_size=64, on_device=True, label_noise=0.1)
    datamodule.setup()
    pool = datamodule.split("pool")
    epoch = list(datamodule.train_dataloader())
    assert len(epoch) == len(pool) // 64 and all(len(index) == 64 for index, _, _ in epoch)
    for index, x, y in epoch[:3]:
        assert torch.equal(y, pool.labels[index])
        assert torch.equal(x, torch.stack([pool[int(i)][1] for i in index]))


def test_evaluation_loaders_keep_index_order_and_every_point() -> None:
    datamodule = SyntheticDataModule(on_device=True, eval_batch_size=300)
    datamodule.setup()
    index = torch.cat([batch[0] for batch in datamodule.pool_dataloader()])
    assert torch.equal(index, torch.arange(len(datamodule.split("pool"))))
    assert sum(len(batch[0]) for batch in datamodule.val_dataloader()) == len(datamodule.split("val"))


def test_a_dataset_not_held_as_tensors_is_refused_with_the_fix() -> None:
    class Items(Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.zeros(2), 0

    with pytest.raises(ValueError, match=re.escape("datamodule.on_device=false")):
        in_memory_tensors(IndexedDataset(Items(), torch.arange(4), torch.zeros(4)), torch.device("cpu"))
