"""Atomic file writes: a reader sees the old file or the complete new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(obj: Any, path: Path) -> Path:
    return atomic_write(path, lambda file: torch.save(obj, file))


def atomic_write_text(text: str, path: Path) -> Path:
    return atomic_write(path, lambda file: file.write(text.encode()))


def atomic_write_json(data: Any, path: Path) -> Path:
    """Indented JSON with a final newline: results and summaries that people read and diff."""
    return atomic_write_text(json.dumps(data, indent=2) + "\n", path)
