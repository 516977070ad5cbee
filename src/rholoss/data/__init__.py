"""Datasets behind the index contract ``(index, x, y)``, with seeded splits, noise and fingerprints."""

from rholoss.data.datamodule import PoolDataModule, Sources
from rholoss.data.fashion_mnist import FashionMNISTDataModule
from rholoss.data.glue import GLUEDataModule
from rholoss.data.indexed import IndexedDataset
from rholoss.data.synthetic import SyntheticDataModule

__all__ = [
    "FashionMNISTDataModule", "GLUEDataModule", "IndexedDataset", "PoolDataModule", "Sources", "SyntheticDataModule",
]
