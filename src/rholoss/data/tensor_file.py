"""Your own data as one ``.pt`` file of tensors: the quickest way to plug in data without code."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from rholoss.data.datamodule import PoolDataModule, Sources

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("holdout", "val")


class TensorFileDataModule(PoolDataModule):
    """Data from ``path``: a ``torch.save``-d dict with ``x_train``, ``y_train``, ``x_test``, ``y_test``
    and optionally ``x_holdout``, ``y_holdout`` (trains the IL model; else split off the training
    data) and ``x_val``, ``y_val``. ``x_*`` are float inputs of any shape ``(N, ...)`` (already
    normalised), ``y_*`` integer class labels ``0..num_classes-1``.

    ``num_classes`` defaults to the largest label + 1.
    """

    name = "tensor_file"

    def __init__(self, path: str = "data/dataset.pt", num_classes: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self.given_num_classes = num_classes

    def load_sources(self) -> Sources:
        if not self.path.is_file():
            raise FileNotFoundError(
                f"tensor_file: {self.path} does not exist. Write one with torch.save({{'x_train': ..., 'y_train': "
                "..., 'x_test': ..., 'y_test': ...}}, path) (optionally x_holdout/y_holdout, x_val/y_val) and set "
                "datamodule.path to it."
            )
        data = torch.load(self.path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict):
            raise ValueError(f"tensor_file: {self.path} holds a {type(data).__name__}, expected a dict of tensors.")
        missing = [key for key in REQUIRED if key not in data]
        missing += [
            f"x_{s} or y_{s} (give both or neither)" for s in OPTIONAL if (f"x_{s}" in data) ^ (f"y_{s}" in data)
        ]
        if missing:
            raise ValueError(f"tensor_file: {self.path} lacks {', '.join(missing)} (it has {', '.join(sorted(data))}).")
        splits = {s: self._pair(data, s) for s in ("train", "test", *OPTIONAL) if f"x_{s}" in data}
        labels = torch.cat([y for _, y in splits.values()])
        self.num_classes = self.given_num_classes or int(labels.max()) + 1
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            low, high = int(labels.min()), int(labels.max())
            raise ValueError(f"tensor_file: labels must be in 0..{self.num_classes - 1}, found {low}..{high}.")
        self.input_shape = tuple(splits["train"][0].shape[1:])
        return Sources.from_tensors(**splits)

    def _pair(self, data: dict[str, Tensor], split: str) -> tuple[Tensor, Tensor]:
        x, y = data[f"x_{split}"], data[f"y_{split}"]
        if len(x) != len(y) or y.dim() != 1 or y.dtype.is_floating_point:
            raise ValueError(
                f"tensor_file: y_{split} must be a 1-d integer tensor with one label per row of x_{split}; got "
                f"x_{split} {tuple(x.shape)} and y_{split} {tuple(y.shape)} {y.dtype}."
            )
        if x.shape[1:] != data["x_train"].shape[1:]:
            raise ValueError(
                f"tensor_file: x_{split} has inputs of shape {tuple(x.shape[1:])}, "
                f"x_train {tuple(data['x_train'].shape[1:])}."
            )
        return x.float(), y.long()
