"""Data made in memory, for tests and quick experiments anywhere: Gaussian-blob classification and a
smooth nonlinear regression."""

from __future__ import annotations

import math

import torch
from torch.utils.data import TensorDataset

from rholoss.data.datamodule import PoolDataModule, Sources


class SyntheticDataModule(PoolDataModule):
    """``num_classes`` Gaussian blobs in ``num_features`` dimensions; ``class_sep`` sets how far
    apart their means are (larger is easier). Generated from ``data_seed``, so it is reproducible.
    ``image_shape`` (e.g. ``[3, 32, 32]``) serves each point as an image of that shape instead, for
    exercising image models, augmentation and image-size throughput without a dataset on disk."""

    name = "synthetic"
    num_classes: int  # always known: set from the constructor's argument

    def __init__(
        self,
        num_train: int = 4000,
        num_test: int = 1000,
        num_features: int = 20,
        num_classes: int = 4,
        class_sep: float = 1.0,
        data_seed: int = 0,
        image_shape: list[int] | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("val_size", num_train // 10)
        super().__init__(**kwargs)
        self.num_train, self.num_test = num_train, num_test
        self.num_classes = num_classes
        self.input_shape = tuple(image_shape) if image_shape else (num_features,)
        self.class_sep = class_sep
        self.data_seed = data_seed

    def load_sources(self) -> Sources:
        generator = torch.Generator().manual_seed(self.data_seed)
        features = math.prod(self.input_shape)
        means = torch.randn(self.num_classes, features, generator=generator) * self.class_sep

        def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.randint(0, self.num_classes, (n,), generator=generator)
            x = means[y] + torch.randn(n, features, generator=generator)
            return x.view(n, *self.input_shape), y

        (x_train, y_train), (x_test, y_test) = sample(self.num_train), sample(self.num_test)
        return Sources(TensorDataset(x_train, y_train), y_train, TensorDataset(x_test, y_test), y_test)


class SyntheticRegressionDataModule(PoolDataModule):
    """Real-valued targets ``y = f(x) + noise`` with ``x ~ N(0, I)`` in ``num_features`` dimensions and
    ``f`` a fixed random one-hidden-layer tanh network (``hidden`` units) scaled to unit variance:
    smooth, nonlinear and learnable by an MLP. ``observation_noise`` is the standard deviation of the
    Gaussian noise every target has (the irreducible part); ``label_noise`` corrupts a share of the
    pool on top (other points' targets, recorded). Generated from ``data_seed``."""

    name = "synthetic_regression"
    target_kind = "real"
    num_classes = None

    def __init__(
        self,
        num_train: int = 4000,
        num_test: int = 1000,
        num_features: int = 20,
        hidden: int = 64,
        observation_noise: float = 0.1,
        data_seed: int = 0,
        **kwargs,
    ) -> None:
        kwargs.setdefault("val_size", num_train // 10)
        super().__init__(**kwargs)
        if observation_noise < 0:
            raise ValueError(f"observation_noise must be non-negative, got {observation_noise}.")
        self.num_train, self.num_test = num_train, num_test
        self.input_shape = (num_features,)
        self.hidden = hidden
        self.observation_noise = observation_noise
        self.data_seed = data_seed

    def load_sources(self) -> Sources:
        generator = torch.Generator().manual_seed(self.data_seed)
        features = self.input_shape[0]
        weights = torch.randn(features, self.hidden, generator=generator) / math.sqrt(features)
        bias = torch.randn(self.hidden, generator=generator) * 0.5
        readout = torch.randn(self.hidden, generator=generator)
        probe = torch.tanh(torch.randn(4096, features, generator=generator) @ weights + bias) @ readout
        scale = probe.std()

        def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.randn(n, features, generator=generator)
            y = torch.tanh(x @ weights + bias) @ readout / scale
            return x, y + self.observation_noise * torch.randn(n, generator=generator)

        (x_train, y_train), (x_test, y_test) = sample(self.num_train), sample(self.num_test)
        return Sources(TensorDataset(x_train, y_train), y_train, TensorDataset(x_test, y_test), y_test)
