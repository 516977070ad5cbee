"""A text corpus for language models: files tokenized once into cached token files, split by file,
served as windows of next-token predictions, with noise recorded token by token.

The token cache lives in ``cache_dir/<name>-<key>/``: ``pool.bin``, ``holdout.bin``, ``val.bin`` and
``test.bin`` (each with its ``.json``), the trained BPE (``bpe.json``) and, with noise, the noisy pool
and its mask. The key hashes the files' names, sizes and modification times and every setting the
tokens depend on, so a changed file or setting tokenizes again and an unchanged corpus never does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from rholoss.data.datamodule import SplitDataModule
from rholoss.data.tokens.corpus import SPLITS, default_source_dir, files_key, list_corpus_files, split_files
from rholoss.data.tokens.files import (
    TokenFile,
    metadata_path,
    open_ready_made,
    open_token_file,
    strided_digest,
    write_token_file,
)
from rholoss.data.tokens.joined import write_joined_pool
from rholoss.data.tokens.noise import (
    merge_spans,
    open_noise_mask,
    token_noise_spans,
    window_noise_spans,
    write_noisy_pool,
)
from rholoss.data.tokens.tokenizers import ByteTokenizer, CorpusTokenizer, hugging_face_tokenizer, load_bpe, train_bpe
from rholoss.data.tokens.windows import TokenWindows, batched, num_windows, target_rows

CACHE_FORMAT = 1
# Windows whose noise share is above this count as corrupted in the per-point statistics.
CORRUPTED_SHARE = 0.5


class TokenCorpusDataModule(SplitDataModule):
    """Pool / holdout / val / test of a corpus of text files, as windows of ``seq_len`` tokens.

    Source: every file under ``source_dir`` (null: the running interpreter's standard library) whose
    name ends in one of ``extensions``, outside folders named in ``exclude``; ``max_bytes`` keeps a
    seeded subset of about that size. Or ``token_files``: ready-made token arrays (``.bin`` as
    nanoGPT's, or ``.npy``) for each of ``pool``, ``holdout``, ``val`` and ``test``, used as they are
    (``vocab_size`` and ``token_dtype`` say what they hold when they cannot tell).

    ``tokenizer``: ``byte`` (257 ids, nothing needed), ``bpe`` (a byte-level BPE of ``vocab_size`` ids
    trained on the holdout files and cached) or a Hugging Face tokenizer's name or folder.

    Splits are by file, seeded by ``split_seed``: ``holdout_fraction``, ``val_fraction`` and
    ``test_fraction`` of the bytes (the pool keeps the rest). A point is a window of the pool (see
    :mod:`rholoss.data.tokens.windows` for the input/target convention); batches are
    ``(index, x, y)`` with ``x`` and ``y`` ``[B, seq_len]`` int64 ids.

    Noise, on the pool only (val and test stay clean), seeded: ``token_noise`` of the pool's tokens
    replaced by random ids in spans of about ``noise_span`` tokens, and ``sequence_noise`` of the
    windows' targets replaced whole. :attr:`noise_mask` records it per token, :meth:`target_noise`
    per window target, :attr:`noise_share` per window.
    """

    target_kind = "tokens"

    def __init__(
        self,
        source_dir: str | None = None,
        extensions: Sequence[str] = (".py",),
        exclude: Sequence[str] = (),
        tokenizer: str = "byte",
        vocab_size: int | None = None,
        seq_len: int = 64,
        holdout_fraction: float = 0.4,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        max_bytes: int | None = None,
        token_noise: float = 0.0,
        sequence_noise: float = 0.0,
        noise_span: int = 16,
        cache_dir: str = ".cache/tokens",
        token_files: dict[str, str] | None = None,
        token_dtype: str | None = None,
        name: str = "corpus",
        batch_size: int = 64,
        eval_batch_size: int = 256,
        split_seed: int = 0,
        train_split: Literal["pool", "holdout"] = "pool",
        num_workers: int = 0,
        on_device: bool = False,
        pool_includes_holdout: bool = False,
    ) -> None:
        super().__init__(
            batch_size, eval_batch_size, split_seed, train_split, num_workers, on_device, pool_includes_holdout
        )
        if seq_len < 1:
            raise ValueError(f"datamodule.seq_len must be at least 1 token, got {seq_len}.")
        if token_files is not None and set(token_files) != set(SPLITS):
            raise ValueError(
                f"datamodule.token_files names {sorted(token_files)}; it needs one token file for each of "
                f"{', '.join(SPLITS)} (slice a nanoGPT train.bin into pool and holdout with np.memmap)."
            )
        if tokenizer == "bpe" and vocab_size is None and token_files is None:
            raise ValueError("datamodule.tokenizer=bpe trains a BPE of datamodule.vocab_size ids: set vocab_size.")
        # Checked here, not after tokenizing: bad noise settings should not cost a tokenization.
        token_noise_spans(1, token_noise, noise_span, np.random.default_rng(0))
        window_noise_spans(1, sequence_noise, seq_len, np.random.default_rng(0))
        self.name = name
        self.source_dir = Path(source_dir) if source_dir else default_source_dir()
        self.extensions = list(extensions)
        self.exclude = list(exclude)
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.fractions = {"holdout": holdout_fraction, "val": val_fraction, "test": test_fraction}
        self.max_bytes = max_bytes
        self.token_noise = token_noise
        self.sequence_noise = sequence_noise
        self.noise_span = noise_span
        self.cache_dir = Path(cache_dir)
        self.token_files = dict(token_files) if token_files is not None else None
        self.token_dtype = token_dtype
        self.input_shape = (seq_len,)
        self.collate_fn = batched
        self.files: dict[str, TokenFile] = {}
        self.noise_mask: np.ndarray | None = None  # per pool token: 1 = noise (None: a clean pool)

    # --- the token cache ------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Tokenize into the cache unless it is there (Lightning calls this on one process per node)."""
        if self.token_files is None:
            self._tokenized_corpus()

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:  # idempotent: the pipelines call it before Lightning does
            return
        self.draw_shuffle_seed()
        clean = self._ready_made() if self.token_files is not None else self._tokenized_corpus()
        pool = clean["pool"]
        if self.token_noise > 0 or self.sequence_noise > 0:
            pool = self._noisy_pool(clean["pool"], self._cache_folder(clean))
            self.noise_mask = open_noise_mask(pool.path.with_name(pool.extra["noise_mask"]), len(pool))
        if self.pool_includes_holdout:
            pool = self._pool_with_holdout(pool, clean["holdout"], self._cache_folder(clean))
            if self.noise_mask is not None:
                self.noise_mask = open_noise_mask(pool.path.with_name(pool.extra["noise_mask"]), len(pool))
        self.files = {**clean, "pool": pool}
        self.num_classes = pool.vocab_size
        self._datasets = {name: TokenWindows(self.files[name].tokens, self.seq_len) for name in SPLITS}
        for name, windows in self._datasets.items():
            if len(windows) == 0:
                raise ValueError(
                    f"The {name} split has {len(self.files[name])} tokens, less than one window of "
                    f"seq_len={self.seq_len} + 1: lower datamodule.seq_len or give it more text."
                )
        if len(self.split(self.train_split)) < self.batch_size:
            raise ValueError(
                f"The {self.train_split} split has {len(self.split(self.train_split))} windows of "
                f"{self.seq_len} tokens, fewer than one batch of {self.batch_size}: lower the batch size or "
                "seq_len, or use more data."
            )
        self.noise_share = self._noise_share()
        self.corrupted = self.noise_share > CORRUPTED_SHARE
        self.fingerprint = self._fingerprint()

    def _tokenized_corpus(self) -> dict[str, TokenFile]:
        """The four splits' token files from the cache, tokenized first if they are not there."""
        files = list_corpus_files(self.source_dir, self.extensions, self.exclude)
        folder = self.cache_dir / f"{self.name}-{self._cache_key({'files': files_key(self.source_dir, files)})}"
        if all(metadata_path(folder / f"{name}.bin").is_file() for name in SPLITS):
            return {name: open_token_file(folder / f"{name}.bin") for name in SPLITS}
        sizes = [(self.source_dir / path).stat().st_size for path in files]
        positions = split_files(sizes, self.fractions, self.split_seed, self.max_bytes)
        by_split = {name: [files[i] for i in positions[name]] for name in SPLITS}
        tokenizer = self._tokenizer((self._read(path) for path in by_split["holdout"]), folder)
        return {name: self._write_split(folder / f"{name}.bin", by_split[name], tokenizer) for name in SPLITS}

    def _cache_key(self, source: dict[str, Any]) -> str:
        """A hash of the ``source``'s state (the files', or a dataset's) and every setting the tokens
        depend on: a tokenizer folder's files count too (its name alone would not change when it is
        saved again)."""
        settings = {
            "format": CACHE_FORMAT,
            **source,
            "tokenizer": self._tokenizer_state(),
            "vocab_size": self.vocab_size if self.tokenizer == "bpe" else None,
            "fractions": self.fractions,
            "split_seed": self.split_seed,
            "max_bytes": self.max_bytes,
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def _tokenizer_state(self) -> str:
        """What identifies the tokenizer in a cache key: its name, or a tokenizer folder's files' state."""
        tokenizer = Path(self.tokenizer)
        if self.tokenizer not in ("byte", "bpe") and tokenizer.is_dir():
            folder = [path.relative_to(tokenizer) for path in sorted(tokenizer.rglob("*")) if path.is_file()]
            return files_key(tokenizer, folder)
        return self.tokenizer

    def _tokenizer(self, holdout_texts: Iterable[bytes], folder: Path) -> CorpusTokenizer:
        """The corpus tokenizer; a BPE is trained on ``holdout_texts`` (read only then) and saved in ``folder``."""
        if self.tokenizer == "byte":
            return ByteTokenizer()
        if self.tokenizer == "bpe":
            saved = folder / "bpe.json"
            if saved.is_file():
                return load_bpe(saved)
            if self.vocab_size is None:  # refused in __init__ unless token_files are given
                raise ValueError("datamodule.tokenizer=bpe trains a BPE of datamodule.vocab_size ids: set vocab_size.")
            return train_bpe(holdout_texts, self.vocab_size, saved)
        return hugging_face_tokenizer(self.tokenizer)

    def _write_split(self, path: Path, files: Sequence[Path], tokenizer: CorpusTokenizer) -> TokenFile:
        def documents() -> Iterator[tuple[str, np.ndarray]]:
            end = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
            for name in files:
                yield str(name), np.concatenate([tokenizer.encode(self._read(name)), np.asarray(end, np.int64)])

        return write_token_file(path, documents(), tokenizer.vocab_size, tokenizer.identity, tokenizer.eos_token_id)

    def _read(self, name: Path) -> bytes:
        return (self.source_dir / name).read_bytes()

    def _ready_made(self) -> dict[str, TokenFile]:
        assert self.token_files is not None
        files = {
            name: open_ready_made(Path(self.token_files[name]), self.vocab_size, self.token_dtype) for name in SPLITS
        }
        vocab_size = max(file.vocab_size for file in files.values())
        for file in files.values():  # read off the files, every split takes the largest
            file.vocab_size = vocab_size
        return files

    def _cache_folder(self, clean: dict[str, TokenFile]) -> Path:
        """Where derived files (the noisy pool) live: beside the tokenized corpus, or, for ready-made
        files, in a folder named after their digests."""
        pool_path = clean["pool"].path
        if self.token_files is None:
            return pool_path.parent
        digests = "".join(file.digest for file in clean.values())
        return self.cache_dir / f"{self.name}-{hashlib.sha256(digests.encode()).hexdigest()[:16]}"

    def _noisy_pool(self, clean: TokenFile, folder: Path) -> TokenFile:
        """The pool with its noise, from the cache or written there; random ids are drawn uniformly
        from the vocabulary without the end-of-document id."""
        settings = {
            "token_noise": self.token_noise,
            "sequence_noise": self.sequence_noise,
            "noise_span": self.noise_span,
            "seq_len": self.seq_len,
            "seed": self.split_seed + 1,
            "clean": clean.digest,
        }
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        path = folder / f"pool-noise-{key}.bin"
        if metadata_path(path).is_file():
            return open_token_file(path)
        rng = np.random.default_rng(self.split_seed + 1)
        spans = merge_spans(
            token_noise_spans(len(clean), self.token_noise, self.noise_span, rng),
            window_noise_spans(num_windows(len(clean), self.seq_len), self.sequence_noise, self.seq_len, rng),
        )
        special = [] if clean.eos_token_id is None else [clean.eos_token_id]
        allowed = np.setdiff1d(np.arange(clean.vocab_size, dtype=np.int64), special)
        return write_noisy_pool(clean, spans, allowed, self.split_seed + 1, path, path.with_suffix(".mask"), settings)

    def _pool_with_holdout(self, pool: TokenFile, holdout: TokenFile, folder: Path) -> TokenFile:
        """The (noisy) pool followed by the clean holdout, from the cache or written there."""
        key = hashlib.sha256(f"{pool.digest}:{holdout.digest}".encode()).hexdigest()[:16]
        path = folder / f"pool-holdout-{key}.bin"
        if metadata_path(path).is_file():
            return open_token_file(path)
        return write_joined_pool(pool, holdout, self.noise_mask, path)

    # --- what the pipelines read ------------------------------------------------------------------------

    @property
    def has_noise(self) -> bool:
        """Whether the pool has noise tokens (of random tokens or whole noise sequences)."""
        return self.token_noise > 0 or self.sequence_noise > 0

    def pool_noise(self) -> Tensor | None:
        return self.target_noise(torch.arange(len(self.split("pool")))) if self.has_noise else None

    @property
    def sequence_length(self) -> int | None:
        return self.seq_len

    def noise_settings(self) -> str:
        return f"token_noise={self.token_noise}, sequence_noise={self.sequence_noise}"

    def split_tensors(self, name: str, device: torch.device) -> tuple[Tensor, Tensor]:
        return self._datasets[name].tensors(device)  # type: ignore[attr-defined]

    def model_kwargs(self) -> dict[str, Any]:
        if not self.files:
            raise RuntimeError("Call setup() before building a model for a corpus: the vocabulary is known there.")
        return {"vocab_size": self.num_classes, "eos_token_id": self.files["pool"].eos_token_id}

    def target_noise(self, index: Tensor) -> Tensor:
        """``[B, seq_len]`` bool: which targets of the pool windows ``index`` are noise (all False for a
        clean pool); aligned with ``y`` and with the per-token IL."""
        index = torch.as_tensor(index, dtype=torch.long).cpu()
        if self.noise_mask is None:
            return torch.zeros(len(index), self.seq_len, dtype=torch.bool)
        rows = target_rows(self.noise_mask, self.seq_len)[index.numpy()]
        return torch.from_numpy(rows.astype(bool))

    def _noise_share(self) -> Tensor:
        """Per pool window: the share of its targets that are noise, read a block of rows at a time."""
        windows = len(self.split("pool"))
        if self.noise_mask is None:
            return torch.zeros(windows)
        rows = target_rows(self.noise_mask, self.seq_len)
        block = max(1, (1 << 24) // self.seq_len)
        shares = [rows[start : start + block].mean(axis=1, dtype=np.float64) for start in range(0, windows, block)]
        return torch.from_numpy(np.concatenate(shares).astype(np.float32))

    def _fingerprint(self) -> dict[str, Any]:
        """What an IL store made for this pool must agree with: the settings, each split's size and a
        strided digest of the (noisy) pool tokens and noise mask."""
        pool = self.files["pool"]
        digest = hashlib.sha256(f"{pool.digest}:{self.seq_len}".encode())
        if self.noise_mask is not None:
            digest.update(strided_digest(self.noise_mask).encode())
        source = (
            {"token_files": sorted(Path(p).name for p in self.token_files.values())}
            if self.token_files
            else {
                **self._source_settings(),
                "max_bytes": self.max_bytes,
                "holdout_fraction": self.fractions["holdout"],
                "val_fraction": self.fractions["val"],
                "test_fraction": self.fractions["test"],
            }
        )
        return {
            "dataset": self.name,
            "pool_size": len(self.split("pool")),
            "pool_tokens": len(pool),
            "seq_len": self.seq_len,
            "tokenizer": pool.tokenizer,
            "vocab_size": pool.vocab_size,
            "split_seed": self.split_seed,
            **source,
            "split_tokens": {name: len(self.files[name]) for name in SPLITS},
            "token_noise": self.token_noise,
            "sequence_noise": self.sequence_noise,
            "noise_span": self.noise_span,
            **({"pool_includes_holdout": True} if self.pool_includes_holdout else {}),
            "digest": digest.hexdigest()[:16],
        }

    def _source_settings(self) -> dict[str, Any]:
        """Where the text comes from, for the fingerprint."""
        return {"source": self.source_dir.name, "extensions": self.extensions, "exclude": self.exclude}

    def describe(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            name: {
                "windows": len(self.split(name)),
                "tokens": len(self.files[name]),
                "files": len(self.files[name].documents),
            }
            for name in SPLITS
        }
        summary["tokenizer"] = self.files["pool"].tokenizer
        if self.noise_mask is not None:
            summary["noise_tokens"] = int(self.files["pool"].extra["noise_tokens"])
            summary["corrupted_windows"] = int(self.corrupted.sum())
        return summary
