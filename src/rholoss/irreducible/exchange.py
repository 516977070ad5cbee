"""IL stores in and out of rholoss: an IL column any tool can join with the data, and back.

``export`` writes a per-point store as a parquet table ``(index, id, il)`` (``id`` where the data has
sample ids), and a per-token store as a NumPy array of every pool token's IL (float16, NaN where no
token is predicted) plus a parquet index ``(window, start)``: window ``w``'s IL is
``array[start : start + seq_len]``. A parquet table ``(id, il)`` made anywhere (another framework, a
reference model run elsewhere) is read back by sample id: ``irreducible.path=il.parquet``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rholoss.atomic import atomic_write
from rholoss.irreducible.store import IrreducibleLossStore, StoreError
from rholoss.irreducible.token_store import MAGIC, TokenLossStore

PARQUET_EXTRA = "pip install pyarrow (or 'rholoss[nlp]')"


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"Reading and writing IL tables needs pyarrow: {PARQUET_EXTRA}.") from None
    return pa, pq


def export_store(store: Path, out: Path) -> list[Path]:
    """Write the store at ``store`` as files any tool reads (each atomically); returns them."""
    pa, pq = _pyarrow()
    store, out = Path(store), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(store, "rb") as file:
        per_token = file.read(len(MAGIC)) == MAGIC
    if per_token:
        tokens = TokenLossStore.open(store)
        array = out.with_suffix(".npy")
        atomic_write(array, lambda file: np.save(file, np.asarray(tokens.losses)))
        windows = np.arange(len(tokens.windows), dtype=np.int64)
        index = pa.table({"window": windows, "start": windows * tokens.seq_len + 1})
        index = index.replace_schema_metadata({"seq_len": str(tokens.seq_len), "array": array.name})
        atomic_write(out, lambda file: pq.write_table(index, file))
        return [array, out]
    points = IrreducibleLossStore.load(store)
    columns: dict[str, Any] = {"index": np.arange(len(points.losses), dtype=np.int64)}
    if points.ids is not None:
        columns["id"] = points.ids
    columns["il"] = points.losses.numpy()
    table = pa.table(columns)
    atomic_write(out, lambda file: pq.write_table(table, file))
    return [out]


def ids_list(ids: Any) -> list[Any]:
    """Sample ids as a plain list (a datamodule may give a NumPy array)."""
    return list(ids.tolist() if hasattr(ids, "tolist") else ids)


def read_il_column(path: Path, ids: Any) -> Tensor:
    """The ``il`` column of the parquet table at ``path``, in the order of ``ids`` (the pool's sample
    ids), joined on its ``id`` column; every pool id must be there, once."""
    _, pq = _pyarrow()
    if ids is None:
        raise StoreError(
            f"irreducible.path={path} is an IL table keyed by sample id, but this data has no ids: give the "
            "datamodule an id column (datamodule.id_column=... for datamodule=hf)."
        )
    table = pq.read_table(path)
    missing_columns = {"id", "il"} - set(table.column_names)
    if missing_columns:
        raise StoreError(f"{path} needs columns id and il; it has {', '.join(table.column_names)}.")
    by_id = dict(zip(table.column("id").to_pylist(), table.column("il").to_pylist(), strict=True))
    if len(by_id) != table.num_rows:
        raise StoreError(f"{path}: some ids appear more than once; each point needs one IL.")
    wanted = ids_list(ids)
    absent = [point for point in wanted if point not in by_id]
    if absent:
        raise StoreError(f"{path} has no IL for {len(absent)} of the pool's {len(wanted)} ids (e.g. {absent[:3]}).")
    losses = torch.tensor([by_id[point] for point in wanted], dtype=torch.float32)
    if not torch.isfinite(losses).all():
        raise StoreError(f"{path}: some irreducible losses are NaN or infinite.")
    return losses
