"""Datasets behind the index contract ``(index, x, y)``, with seeded splits, noise and fingerprints."""

from rholoss.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from rholoss.data.clothing1m import Clothing1MDataModule
from rholoss.data.datamodule import PoolDataModule, Sources, SplitDataModule
from rholoss.data.fashion_mnist import FashionMNISTDataModule
from rholoss.data.glue import GLUEDataModule
from rholoss.data.hf import HuggingFaceDataModule
from rholoss.data.image_folder import CINIC10DataModule, ImageFolderDataModule
from rholoss.data.indexed import IndexedDataset
from rholoss.data.mnist import MNISTDataModule, QMNISTDataModule
from rholoss.data.synthetic import SyntheticDataModule, SyntheticRegressionDataModule
from rholoss.data.tensor_file import TensorFileDataModule
from rholoss.data.tokens import TokenCorpusDataModule
from rholoss.data.tokens.hf_corpus import HFCorpusDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "CINIC10DataModule",
    "Clothing1MDataModule",
    "FashionMNISTDataModule",
    "GLUEDataModule",
    "HFCorpusDataModule",
    "HuggingFaceDataModule",
    "ImageFolderDataModule",
    "IndexedDataset",
    "MNISTDataModule",
    "PoolDataModule",
    "QMNISTDataModule",
    "Sources",
    "SplitDataModule",
    "SyntheticDataModule",
    "SyntheticRegressionDataModule",
    "TensorFileDataModule",
    "TokenCorpusDataModule",
]
