"""IL stores out of rholoss and back: a store made for data with sample ids carries them; exported, it
is a parquet table (index, id, il) any tool joins with the data; a table (id, il) in any row order is
read back by id as the run's IL; per-token stores export as the token array plus its window index."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rholoss.irreducible import IrreducibleLossStore, StoreError, TokenLossStore
from rholoss.irreducible.exchange import export_store, read_il_column
from rholoss.pipelines import train, train_irreducible
from tests.conftest import config_in
from tests.pipelines.test_language_models import lm_config

pytestmark = pytest.mark.usefixtures("one_thread")


def table_data(root: Path) -> list[str]:
    """Overrides for a small numeric table with string ids and 20% label noise, as datamodule=hf reads it."""
    path = root / "table.parquet"
    if not path.is_file():
        rng = np.random.default_rng(0)
        features = rng.normal(size=(600, 4)).astype("float32")
        labels = (features[:, 0] + features[:, 1] > 0).astype("int64")
        datasets.Dataset.from_dict(
            {"x": features.tolist(), "label": labels, "id": [f"row-{i:04d}" for i in range(600)]}
        ).to_parquet(str(path))
    return [
        "datamodule=hf",
        f"datamodule.path={path}",
        "datamodule.input_column=x",
        "datamodule.id_column=id",
        "datamodule.val_size=50",
        "datamodule.label_noise=0.2",
        f"datamodule.cache_dir={root / 'hf-cache'}",
        "datamodule.num_workers=0",
        "datamodule.batch_size=64",
        "model.hidden_sizes=[32]",
        "trainer.max_steps=40",
        "val_every_n_steps=20",
    ]


@pytest.fixture(scope="module")
def il_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("exchange")
    return root, train_irreducible(config_in(root, "train_irreducible", *table_data(root), output="il"))


@pytest.mark.slow
def test_a_store_exports_as_an_id_keyed_table_and_reads_back_by_id(il_store: tuple[Path, dict]) -> None:
    root, il = il_store
    store = IrreducibleLossStore.load(Path(il["il_store"]))
    assert store.ids is not None and len(store.ids) == len(store.losses) and store.ids[0].startswith("row-")
    done = subprocess.run(
        [sys.executable, "-m", "rholoss.irreducible", "export", il["il_store"], str(root / "il.parquet")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    table = pq.read_table(root / "il.parquet")
    assert table.column_names == ["index", "id", "il"]
    assert table.column("id").to_pylist() == store.ids
    assert np.array_equal(table.column("il").to_numpy(), store.losses.numpy())

    shuffled = table.take(np.random.default_rng(1).permutation(table.num_rows)).select(["id", "il"])
    pq.write_table(shuffled, root / "shuffled.parquet")
    assert torch.equal(read_il_column(root / "shuffled.parquet", store.ids), store.losses)

    rho = train(
        config_in(
            root, "train", *table_data(root), f"irreducible.path={root / 'shuffled.parquet'}", output="from-table"
        )
    )
    assert rho["il_store"] == str(root / "shuffled.parquet")
    assert rho["noisy_selected_fraction"] < 0.2  # the table's IL still filters the noise


def test_a_table_missing_ids_or_columns_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["a", "b"], "il": [0.1, 0.2]}), tmp_path / "il.parquet")
    with pytest.raises(StoreError, match=r"no IL for 1 of the pool's 3 ids"):
        read_il_column(tmp_path / "il.parquet", ["a", "b", "c"])
    with pytest.raises(StoreError, match="this data has no ids"):
        read_il_column(tmp_path / "il.parquet", None)
    pq.write_table(pa.table({"key": ["a"], "il": [0.1]}), tmp_path / "bad.parquet")
    with pytest.raises(StoreError, match="needs columns id and il"):
        read_il_column(tmp_path / "bad.parquet", ["a"])


@pytest.mark.slow
def test_a_per_token_store_exports_as_its_array_and_window_index(tmp_path: Path) -> None:
    il = train_irreducible(lm_config(tmp_path, "train_irreducible", "trainer.max_steps=10", output="il"))
    files = export_store(Path(il["il_store"]), tmp_path / "tokens.parquet")
    store = TokenLossStore.open(Path(il["il_store"]))
    array, index = np.load(files[0]), pq.read_table(files[1])
    assert int(index.schema.metadata[b"seq_len"]) == store.seq_len
    for window, start in zip(
        index.column("window").to_pylist()[:5], index.column("start").to_pylist()[:5], strict=True
    ):
        assert np.array_equal(array[start : start + store.seq_len], store.windows[window])
