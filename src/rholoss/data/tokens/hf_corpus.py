"""A language-model corpus from a text column of a Hugging Face dataset (``datamodule=hf_corpus``).

Each row is a document. Rows are split into pool / holdout / val / test by bytes, seeded, as the files
of a folder corpus are (:func:`~rholoss.data.tokens.corpus.split_files`), so no document straddles two
splits. Each split is tokenized with ``datasets.map(batched=True, num_proc=...)``: ``num_proc`` shards
in parallel, each an Arrow file in the cache with its progress bar; the shards are then streamed, in
row order, into the split's one memory-mapped token file (:mod:`rholoss.data.tokens.files`), which the
windows and the per-token IL store address as one flat array. Everything else (noise, windows,
fingerprint, loaders) is :class:`~rholoss.data.tokens.datamodule.TokenCorpusDataModule`'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rholoss.data.hf_files import open_dataset
from rholoss.data.tokens.corpus import SPLITS, split_files
from rholoss.data.tokens.datamodule import TokenCorpusDataModule
from rholoss.data.tokens.files import TokenFile, metadata_path, open_token_file, write_token_file
from rholoss.data.tokens.tokenizers import CorpusTokenizer

# Rows read from the tokenized shards at a time while the token file is written.
WRITE_BATCH = 1000


class HFCorpusDataModule(TokenCorpusDataModule):
    """The documents in ``text_column`` of the dataset split ``split`` (null: ``train``, or the only
    split) of the Hugging Face dataset at ``path`` (any form :mod:`rholoss.data.hf_files` opens),
    tokenized into cached token files; ``id_column`` names each document in the token files' metadata
    (default: its row number). ``num_proc`` processes tokenize each split; the other settings are
    :class:`TokenCorpusDataModule`'s (``tokenizer``, ``seq_len``, fractions, ``max_bytes``, noise...).
    """

    def __init__(
        self,
        path: str | os.PathLike | Mapping[str, Any],
        text_column: str = "text",
        split: str | None = None,
        id_column: str | None = None,
        config_name: str | None = None,
        hf_cache_dir: str | None = None,
        num_proc: int | None = None,
        name: str = "hf_corpus",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.path = str(path) if isinstance(path, (str, os.PathLike)) else {str(k): v for k, v in path.items()}
        self.text_column, self.hf_split, self.id_column = text_column, split, id_column
        self.config_name, self.hf_cache_dir, self.num_proc = config_name, hf_cache_dir, num_proc
        self._data: Any = None

    def _dataset(self) -> Any:
        """The dataset split holding the corpus, opened once; its columns checked."""
        if self._data is not None:
            return self._data
        dataset = open_dataset(self.path, self.config_name, self.hf_cache_dir)
        names = list(dataset)
        split = self.hf_split or ("train" if "train" in names or len(names) != 1 else names[0])
        if split not in names:
            raise ValueError(
                f"datamodule.path={self.path} has the splits {names}, not {split!r}: set datamodule.split to one of them."
            )
        data = dataset[split]
        for setting, column in (("text_column", self.text_column), ("id_column", self.id_column)):
            if column is not None and column not in data.column_names:
                raise ValueError(
                    f"The {split!r} split of datamodule.path={self.path} has no column {column!r}; its columns are "
                    f"{data.column_names}. Set datamodule.{setting} to one of them."
                )
        self._data = data
        return data

    def _tokenized_corpus(self) -> dict[str, TokenFile]:
        import pyarrow as pa
        import pyarrow.compute as pc

        data = self._dataset()
        column = data.data.column(self.text_column)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            raise ValueError(f"datamodule.text_column {self.text_column!r} holds {column.type}, not text.")
        # The dataset's state (its Hugging Face fingerprint) and the columns read from it.
        source = {"dataset": data._fingerprint, "text_column": self.text_column, "id_column": self.id_column}
        folder = self.cache_dir / f"{self.name}-{self._cache_key(source)}"
        if all(metadata_path(folder / f"{name}.bin").is_file() for name in SPLITS):
            return {name: open_token_file(folder / f"{name}.bin") for name in SPLITS}
        # Bytes per document (UTF-8), from Arrow without reading the texts into Python.
        sizes = pc.fill_null(pc.binary_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        rows = split_files(sizes.tolist(), self.fractions, self.split_seed, self.max_bytes)
        holdout = data.select(rows["holdout"])
        texts = (
            (text or "").encode() for batch in holdout.iter(batch_size=WRITE_BATCH) for text in batch[self.text_column]
        )
        tokenizer = self._tokenizer(texts, folder)
        return {name: self._write_rows(folder, name, data, rows[name], tokenizer) for name in SPLITS}

    def _write_rows(
        self, folder: Path, split: str, data: Any, positions: list[int], tokenizer: CorpusTokenizer
    ) -> TokenFile:
        """Tokenize the rows ``positions`` of ``data`` in ``num_proc`` shards (cached Arrow files), then
        write them in order as the split's token file, each document named by its id (or row number);
        the shards are removed once it is complete."""
        from tqdm.auto import tqdm

        column, end = self.text_column, [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
        rows = data.select(positions)
        names = [str(name) for name in rows[self.id_column]] if self.id_column else [str(row) for row in positions]

        def encode(batch: dict[str, list]) -> dict[str, list]:
            ids = [
                np.concatenate([tokenizer.encode((text or "").encode()), np.asarray(end, np.int64)])
                for text in batch[column]
            ]
            return {"ids": ids}

        shards = folder / "shards" / f"{split}.arrow"
        shards.parent.mkdir(parents=True, exist_ok=True)
        tokenized = rows.map(
            encode,
            batched=True,
            num_proc=self.num_proc,
            remove_columns=rows.column_names,
            cache_file_name=str(shards),
            desc=f"Tokenizing {split}",
        ).with_format("numpy")

        def documents() -> Iterator[tuple[str, np.ndarray]]:
            progress = tqdm(total=len(tokenized), desc=f"Writing {split}.bin", unit=" documents")
            number = 0
            for batch in tokenized.iter(batch_size=WRITE_BATCH):
                for ids in batch["ids"]:
                    yield names[number], ids
                    number += 1
                progress.update(len(batch["ids"]))
            progress.close()

        written = write_token_file(
            folder / f"{split}.bin", documents(), tokenizer.vocab_size, tokenizer.identity, tokenizer.eos_token_id
        )
        for file in tokenized.cache_files:
            Path(file["filename"]).unlink(missing_ok=True)
        return written

    def _source_settings(self) -> dict[str, Any]:
        data = self._dataset()
        return {"source": data._fingerprint, "text_column": self.text_column, "rows": len(data)}
