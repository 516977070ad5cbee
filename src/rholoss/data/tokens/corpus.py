"""A folder of text files as a corpus: which files, a cheap key for their state, and seeded splits by
file, so no document straddles pool, holdout, val and test."""

from __future__ import annotations

import hashlib
import os
import sysconfig
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SPLITS = ("pool", "holdout", "val", "test")


def default_source_dir() -> Path:
    """The running interpreter's standard-library source: a code corpus every Python machine has."""
    return Path(sysconfig.get_paths()["stdlib"])


def list_corpus_files(source_dir: Path, extensions: Sequence[str], exclude: Sequence[str] = ()) -> list[Path]:
    """Files under ``source_dir`` whose names end in one of ``extensions``, skipping any whose path
    (relative to ``source_dir``) passes through a folder named in ``exclude``; sorted, so the order
    does not depend on the file system."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise FileNotFoundError(
            f"datamodule.source_dir={source_dir} is not a folder: point it at a folder of text files."
        )
    suffixes = tuple(extensions)
    skipped = set(exclude)
    files = []
    for folder, subfolders, names in os.walk(source_dir):
        subfolders[:] = [name for name in subfolders if name not in skipped]  # never walked into
        files += [Path(folder, name).relative_to(source_dir) for name in names if name.endswith(suffixes)]
    files.sort()
    if not files:
        raise FileNotFoundError(
            f"No files ending in {list(extensions)} under {source_dir} (excluding folders {sorted(skipped)}): "
            "check datamodule.source_dir, datamodule.extensions and datamodule.exclude."
        )
    return files


def files_key(source_dir: Path, files: Sequence[Path]) -> str:
    """A hash of each file's name, size and modification time: changes when any file does, costs one
    ``stat`` per file."""
    digest = hashlib.sha256(str(Path(source_dir).resolve()).encode())
    for name in files:
        stat = (Path(source_dir) / name).stat()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def split_files(
    sizes: Sequence[int], fractions: dict[str, float], seed: int, max_bytes: int | None = None
) -> dict[str, list[int]]:
    """Positions of the files (given their sizes in bytes) in each split.

    The files are shuffled with ``seed``; ``max_bytes`` keeps the shortest prefix of that order that
    reaches it (a seeded subset for quick runs). Walking the order, ``val``, ``test`` and ``holdout``
    then each take files until they hold their ``fractions`` of the kept bytes (at least one file
    each); the pool keeps the rest. Splitting by bytes, not by file count, keeps each split's share of
    tokens close to its fraction however unequal the files are. Positions are sorted in each split.
    """
    for name in ("holdout", "val", "test"):
        if not 0.0 < fractions[name] < 1.0:
            raise ValueError(f"datamodule.{name}_fraction must be in (0, 1), got {fractions[name]}.")
    if sum(fractions[name] for name in ("holdout", "val", "test")) >= 1.0:
        raise ValueError(f"holdout, val and test fractions {fractions} leave nothing for the pool: lower them.")
    order = np.random.default_rng(seed).permutation(len(sizes))
    if max_bytes is not None:
        reached = np.cumsum(np.asarray(sizes, dtype=np.int64)[order]) >= max_bytes
        order = order[: int(np.argmax(reached)) + 1 if reached.any() else len(order)]
    if len(order) < len(SPLITS):
        raise ValueError(
            f"{len(order)} files cannot be split into {', '.join(SPLITS)} by file: add files, or raise "
            "datamodule.max_bytes."
        )
    total = sum(sizes[i] for i in order)
    splits: dict[str, list[int]] = {}
    position = 0
    for name in ("val", "test", "holdout"):
        taken: list[int] = []
        held = 0
        # Leave at least one file for each split still to come.
        while position < len(order) - (len(SPLITS) - len(splits) - 1) and (not taken or held < fractions[name] * total):
            taken.append(int(order[position]))
            held += sizes[order[position]]
            position += 1
        splits[name] = sorted(taken)
    splits["pool"] = sorted(int(i) for i in order[position:])
    return {name: splits[name] for name in SPLITS}
