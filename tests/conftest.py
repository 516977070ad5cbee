"""Shared fixtures: compose the real configs, shrunk to tiny CPU runs that write under tmp_path."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from rholoss.configs import CONFIG_DIR as CONFIG_DIR  # the package's configs, for tests that list them
from rholoss.configs import compose_config

# Tests never download: Hugging Face libraries read these when imported, so set them before any test does.
for _variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_variable] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
# Quiet, CPU-only, no network: every composed test config gets these first.
QUIET = ["trainer.enable_progress_bar=false", "callbacks=none", "logger=csv", "trainer.accelerator=cpu"]


def config_in(root: Path, config_name: str, *overrides: str, output: str = "run") -> DictConfig:
    """A composed config whose paths all point into ``root``, so stores, data and runs never leak
    between tests; ``output`` is the run's folder in it."""
    return compose_config(
        config_name, [*QUIET, f"paths.root_dir={root}", f"paths.output_dir={root / output}", *overrides]
    )


def synthetic_config(root: Path, config_name: str, *overrides: str, output: str = "run") -> DictConfig:
    """``config_in`` for the synthetic experiment: the tiny offline pipeline most tests run."""
    return config_in(root, config_name, "experiment=synthetic_noisy_mlp", *overrides, output=output)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_config("train", "selection=loss", output="run1")``: ``config_in`` this test's tmp_path."""
    return functools.partial(config_in, tmp_path)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a shared CPU those threads wait on each
    other: one thread made the text IL stage ~10x faster on the 2-core development machine. A module
    asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def selected(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Every step's selected pool indices, in order (for the resume and same-seed tests)."""
    from rholoss.methods import SelectionDiagnostics  # imported here: most tests never train

    record: list[torch.Tensor] = []
    count = SelectionDiagnostics.record

    def recording(self, trained, token_mask=None) -> None:
        record.append(trained.cpu())
        count(self, trained, token_mask)

    monkeypatch.setattr(SelectionDiagnostics, "record", recording)
    return record
