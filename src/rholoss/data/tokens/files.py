"""Token files: one flat array of token ids on disk (the layout of nanoGPT's ``train.bin``) and a small
JSON file beside it that says what the ids are.

The array is read through a memory map (:func:`map_file`), so a corpus never has to fit in RAM, and written a chunk at a
time to a temporary file that is renamed into place. The metadata is written the same way and last,
with the array's length: a reader that finds metadata finds the complete array it describes.
Ready-made files (a raw ``.bin`` as nanoGPT writes it, or a ``.npy``) are opened as they are.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from rholoss.atomic import atomic_write, atomic_write_json

FORMAT = "rholoss-tokens-1"
# Slices the digest reads: enough to notice any changed file or setting, cheap for any corpus size.
_DIGEST_SAMPLES, _DIGEST_WIDTH = 4096, 64
# Tokens a scan over a ready-made file reads at a time.
SCAN_CHUNK = 1 << 24


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (as nanoGPT's files), else uint32."""
    if vocab_size < 1 or vocab_size > 2**32:
        raise ValueError(f"A vocabulary of {vocab_size} ids cannot be stored as token ids (1 to 2**32).")
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def metadata_path(path: Path) -> Path:
    """Where the metadata of the token array at ``path`` lives: ``pool.bin`` -> ``pool.bin.json``."""
    return Path(path).with_name(Path(path).name + ".json")


def strided_digest(array: np.ndarray) -> str:
    """A hash of the array's length, dtype and a few thousand evenly spaced slices: it reads ~1 MB
    whatever the size, and any re-tokenization, other split or other noise changes it."""
    digest = hashlib.sha256(f"{array.dtype.str}:{len(array)}".encode())
    if len(array):
        starts = np.unique(np.linspace(0, max(len(array) - _DIGEST_WIDTH, 0), _DIGEST_SAMPLES).astype(np.int64))
        for start in starts:
            digest.update(np.ascontiguousarray(array[start : start + _DIGEST_WIDTH]).tobytes())
    return digest.hexdigest()[:16]


@dataclass
class TokenFile:
    """A flat array of token ids (memory-mapped) and what they are.

    ``documents`` holds each source file's ``(name, start, end)`` range of ``tokens``, end exclusive,
    in file order (empty for ready-made files); ``eos_token_id`` separates documents when set.
    """

    tokens: np.ndarray
    vocab_size: int
    tokenizer: str
    path: Path
    eos_token_id: int | None = None
    documents: list[tuple[str, int, int]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def digest(self) -> str:
        return strided_digest(self.tokens)


def write_token_file(
    path: Path,
    documents: Iterable[tuple[str, np.ndarray]],
    vocab_size: int,
    tokenizer: str,
    eos_token_id: int | None = None,
    extra: dict[str, Any] | None = None,
    ranges: list[tuple[str, int, int]] | None = None,
) -> TokenFile:
    """Write ``documents`` (``(name, ids)`` pairs, one at a time: RAM holds one document) as one token
    array at ``path`` and its metadata beside it, both atomically; returns the file opened.

    Ids must lie in ``[0, vocab_size)``; ``extra`` is kept in the metadata (noise settings, counts).
    ``ranges`` records other document ranges than the pieces written (a noisy copy written by chunks
    keeps the clean file's documents).
    """
    dtype = token_dtype(vocab_size)
    pieces: list[tuple[str, int, int]] = []

    def write(file: IO[bytes]) -> None:
        count = 0
        for name, ids in documents:
            ids = np.asarray(ids)
            if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
                raise ValueError(
                    f"{name}: token ids must lie in [0, {vocab_size}) for tokenizer {tokenizer}, got "
                    f"{int(ids.min())}..{int(ids.max())}."
                )
            file.write(ids.astype(dtype, copy=False).tobytes())
            pieces.append((name, count, count + len(ids)))
            count += len(ids)

    atomic_write(Path(path), write)
    count = pieces[-1][2] if pieces else 0
    ranges = pieces if ranges is None else ranges
    tokens = map_file(Path(path), dtype, count)
    metadata = {
        "format": FORMAT,
        "dtype": dtype.name,
        "count": count,
        "vocab_size": vocab_size,
        "tokenizer": tokenizer,
        "eos_token_id": eos_token_id,
        "documents": {
            "names": [name for name, _, _ in ranges],
            "starts": [start for _, start, _ in ranges],
            "ends": [end for _, _, end in ranges],
        },
        "digest": strided_digest(tokens),
        **({"extra": extra} if extra else {}),
    }
    atomic_write_json(metadata, metadata_path(path))
    return open_token_file(path)


def open_token_file(path: Path) -> TokenFile:
    """A token file written by :func:`write_token_file`, memory-mapped read-only; a missing,
    truncated or foreign one fails with what to do about it."""
    path = Path(path)
    meta_path = metadata_path(path)
    fix = f"Delete {path} and {meta_path.name} and rerun to tokenize again."
    try:
        metadata = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"No token file metadata at {meta_path}. {fix}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{meta_path} is not valid JSON ({error}). {fix}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{meta_path} is not token file metadata of format {FORMAT}. {fix}")
    dtype, count = np.dtype(metadata["dtype"]), int(metadata["count"])
    size = path.stat().st_size if path.is_file() else None
    if size != count * dtype.itemsize:
        found = "no file" if size is None else f"{size} bytes"
        raise ValueError(
            f"{path} should hold {count} {dtype.name} token ids ({count * dtype.itemsize} bytes), found {found}. {fix}"
        )
    documents = metadata["documents"]
    return TokenFile(
        tokens=map_file(path, dtype, count),
        vocab_size=int(metadata["vocab_size"]),
        tokenizer=str(metadata["tokenizer"]),
        path=path,
        eos_token_id=metadata.get("eos_token_id"),
        documents=list(zip(documents["names"], documents["starts"], documents["ends"], strict=True)),
        extra=metadata.get("extra", {}),
    )


def open_ready_made(path: Path, vocab_size: int | None = None, dtype: str | None = None) -> TokenFile:
    """A token array prepared elsewhere, opened as it is: a ``.npy`` (memory-mapped, its own dtype),
    a raw ``.bin`` (nanoGPT's layout: ``dtype`` given, else uint16 or uint32 from ``vocab_size``,
    else nanoGPT's uint16), or a file with this project's metadata beside it.

    ``vocab_size`` defaults to the largest id + 1 (one chunked pass over the file); when given, a
    sample of ids is checked against it.
    """
    path = Path(path)
    if metadata_path(path).is_file():
        return open_token_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"No token file at {path}: point datamodule.token_files at .bin or .npy files.")
    if path.suffix == ".npy":
        tokens = np.load(path, mmap_mode="r")
        if dtype is not None and np.dtype(dtype) != tokens.dtype:
            raise ValueError(f"{path} holds {tokens.dtype} ids, not the {dtype} given: drop datamodule.token_dtype.")
    elif path.suffix == ".bin":
        item = np.dtype(dtype) if dtype else token_dtype(vocab_size) if vocab_size else np.dtype(np.uint16)
        if path.stat().st_size % item.itemsize:
            raise ValueError(
                f"{path} has {path.stat().st_size} bytes, not a whole number of {item.name} token ids: set "
                "datamodule.token_dtype to the dtype it was written with."
            )
        tokens = map_file(path, item, path.stat().st_size // item.itemsize)
    else:
        raise ValueError(f"{path}: ready-made token files are raw .bin (nanoGPT's layout) or .npy arrays.")
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
        raise ValueError(f"{path} must hold a flat array of integer token ids, got {tokens.dtype} {tokens.shape}.")
    if vocab_size is None:
        vocab_size = 1 + max(
            (int(tokens[i : i + SCAN_CHUNK].max()) for i in range(0, len(tokens), SCAN_CHUNK)), default=0
        )
    else:
        sample = tokens[:: max(1, len(tokens) // 1_000_000)]
        if len(sample) and int(sample.max()) >= vocab_size:
            raise ValueError(
                f"{path} holds token id {int(sample.max())}, outside the vocabulary of {vocab_size} given: set "
                "datamodule.vocab_size to the tokenizer's vocabulary size (or null to read it off the file)."
            )
    return TokenFile(tokens, vocab_size, f"ready-made:{path.name}:{len(tokens)}", path)


def map_file(path: Path, dtype: np.dtype, count: int, offset: int = 0) -> np.ndarray:
    """``count`` values of ``dtype`` at byte ``offset`` of ``path``, memory-mapped read-only.

    The map is advised for random access: a training step reads a few hundred scattered windows, and
    for a corpus on disk the kernel's default read-ahead would fetch ~100 KB around each one.
    """
    if count == 0:  # an empty file cannot be mapped; an empty array reads the same
        return np.empty(0, dtype)
    with open(path, "rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mmap, "MADV_RANDOM"):
        mapped.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapped, dtype=dtype, count=count, offset=offset)
