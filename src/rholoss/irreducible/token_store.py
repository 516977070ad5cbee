"""The per-token irreducible loss store: the IL model's loss on every token of the pool, float16,
memory-mapped, aligned with the pool's token array.

Entry ``t`` is the IL model's loss on predicting token ``t`` from the tokens before it in its window
(see :mod:`rholoss.data.tokens.windows`); position 0 and the tail after the last window are never
predicted and hold NaN. Window ``i``'s per-token IL is row ``i`` of :attr:`TokenLossStore.windows`,
its per-sequence IL the mean of that row.

One file: an 8-byte magic, the length of a JSON header (fingerprint, metadata, sizes), the header,
then the float16 array at a 4096-byte boundary. :class:`TokenLossWriter` fills a temporary file
beside it window by window (positional writes: nothing is mapped, so the process holds only the
batch it writes) and renames it into place only once every window is written, so a crash never
leaves a file that opens. Reading maps the file; whole-store passes (the NaN check, per-sequence
means) read it a chunk at a time.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rholoss.data.tokens.files import map_file
from rholoss.data.tokens.windows import num_windows, target_rows
from rholoss.irreducible.store import StoreError, check_fingerprint

MAGIC = b"RHOILTOK"
FORMAT_VERSION = 1
_ALIGN = 4096
# Tokens checked (or averaged) at a time: bounded RAM for any pool.
_CHUNK = 1 << 24
_FIX = "Delete it and rerun run_irreducible.py to make the per-token store again."


def _data_offset(header_length: int) -> int:
    """Where the losses start: after the magic, the header's length and the header, at a page boundary."""
    return -(-(len(MAGIC) + 8 + header_length) // _ALIGN) * _ALIGN


class TokenLossWriter:
    """Writes a per-token IL store for a pool of ``num_tokens`` tokens in windows of ``seq_len``;
    use as a context manager, then :meth:`write` each batch of pool windows. On a clean exit
    the file is renamed into place (every window must have been written); on an error it is removed.
    """

    def __init__(
        self,
        path: Path,
        num_tokens: int,
        seq_len: int,
        fingerprint: dict[str, Any],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.seq_len = seq_len
        self.num_windows = num_windows(num_tokens, seq_len)
        if self.num_windows == 0:
            raise ValueError(f"A pool of {num_tokens} tokens holds no window of seq_len={seq_len}.")
        header = json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "num_tokens": num_tokens,
                "seq_len": seq_len,
                "fingerprint": fingerprint,
                "metadata": metadata or {},
            }
        ).encode()
        self.offset = _data_offset(len(header))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.write(self.fd, MAGIC + struct.pack("<Q", len(header)) + header)
        os.ftruncate(self.fd, self.offset + 2 * num_tokens)
        # Position 0 and the tail after the last window are never predicted.
        covered_end = self.num_windows * seq_len + 1
        self._write(0, np.full(1, np.nan, np.float16))
        self._write(covered_end, np.full(num_tokens - covered_end, np.nan, np.float16))
        self.written = np.zeros(self.num_windows, dtype=bool)

    def _write(self, position: int, values: np.ndarray) -> None:
        os.pwrite(self.fd, np.ascontiguousarray(values, dtype=np.float16).tobytes(), self.offset + 2 * position)

    def write(self, index: Tensor, losses: Tensor) -> None:
        """The IL model's per-token losses ``[B, seq_len]`` on pool windows ``index`` (loss ``t`` of a
        row: on predicting the window's target ``t``). Runs of consecutive windows (a pool loader's
        batches) are one write each."""
        windows = torch.as_tensor(index).long().cpu().numpy()
        if tuple(losses.shape) != (len(windows), self.seq_len):
            raise ValueError(
                f"write needs losses of shape [{len(windows)}, {self.seq_len}], got {tuple(losses.shape)}."
            )
        if len(windows) == 0:
            return
        if windows.min() < 0 or windows.max() >= self.num_windows:
            raise ValueError(f"Window indices must lie in [0, {self.num_windows}).")
        order = np.argsort(windows, kind="stable")
        windows, rows = windows[order], losses.detach().to("cpu", torch.float16).numpy()[order]
        breaks = np.flatnonzero(np.diff(windows) != 1) + 1
        for run_index, run_rows in zip(np.split(windows, breaks), np.split(rows, breaks), strict=True):
            self._write(int(run_index[0]) * self.seq_len + 1, run_rows)
        self.written[windows] = True

    def __enter__(self) -> TokenLossWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                missing = int((~self.written).sum())
                if missing:
                    raise StoreError(
                        f"{missing} of {self.num_windows} pool windows have no IL: {self.path} not written."
                    )
                os.fsync(self.fd)
                os.close(self.fd)
                self.fd = -1
                os.replace(self.tmp, self.path)
        finally:
            if self.fd >= 0:
                os.close(self.fd)
            Path(self.tmp).unlink(missing_ok=True)


class TokenLossStore:
    """A per-token IL store opened memory-mapped: nothing is read until asked for."""

    def __init__(
        self,
        path: Path,
        losses: np.ndarray,
        seq_len: int,
        fingerprint: dict[str, Any],
        metadata: dict[str, Any],
        offset: int,
    ) -> None:
        self.path = path
        self.offset = offset
        self.losses = losses  # float16 [pool tokens], NaN where no token is predicted
        self.seq_len = seq_len
        self.fingerprint = fingerprint
        self.metadata = metadata
        self.windows = target_rows(losses, seq_len)  # float16 [pool windows, seq_len]

    @classmethod
    def open(cls, path: Path, verify: bool = True) -> TokenLossStore:
        """Map the store at ``path``; ``verify`` reads it once (a chunk at a time) to refuse NaN or
        infinite losses inside the windows, as the per-point store does."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"No per-token IL store at {path}.")
        with open(path, "rb") as file:
            start = file.read(len(MAGIC) + 8)
            if len(start) < len(MAGIC) + 8 or start[: len(MAGIC)] != MAGIC:
                raise StoreError(f"{path} is not a per-token IL store (no {MAGIC.decode()} header). {_FIX}")
            (length,) = struct.unpack("<Q", start[len(MAGIC) :])
            try:
                header = json.loads(file.read(length))
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise StoreError(f"{path}: its header is unreadable ({error}). {_FIX}") from None
        if header.get("format_version") != FORMAT_VERSION or not isinstance(header.get("fingerprint"), dict):
            raise StoreError(f"{path} is not a per-token IL store of format version {FORMAT_VERSION}. {_FIX}")
        num_tokens, seq_len = int(header["num_tokens"]), int(header["seq_len"])
        offset = _data_offset(length)
        if path.stat().st_size != offset + 2 * num_tokens:
            raise StoreError(
                f"{path} should hold {num_tokens} float16 losses after its header ({offset + 2 * num_tokens} bytes), "
                f"found {path.stat().st_size} bytes: it is truncated. {_FIX}"
            )
        losses = map_file(path, np.dtype(np.float16), num_tokens, offset)
        store = cls(path, losses, seq_len, header["fingerprint"], header.get("metadata", {}), offset)
        if verify:
            store._check_finite()
        return store

    def _window_blocks(self) -> Iterator[np.ndarray]:
        """Every window's losses, ``[rows, seq_len]`` blocks of about ``_CHUNK`` tokens, read from the
        file (not through the map, so the pages read do not stay with the process)."""
        rows = max(1, _CHUNK // self.seq_len)
        with open(self.path, "rb") as file:
            for start in range(0, len(self.windows), rows):
                count = min(rows, len(self.windows) - start)
                file.seek(self.offset + 2 * (start * self.seq_len + 1))
                yield np.fromfile(file, dtype=np.float16, count=count * self.seq_len).reshape(count, self.seq_len)

    def _check_finite(self) -> None:
        bad = sum(int((~np.isfinite(block)).sum()) for block in self._window_blocks())
        if bad:
            raise StoreError(
                f"{self.path}: {bad} of {self.windows.size} per-token irreducible losses are NaN or infinite (a diverged "
                f"IL model?). {_FIX}"
            )

    def check_matches(self, fingerprint: dict[str, Any], path: Path | str | None = None) -> None:
        """Refuse a store made for another corpus, tokenizer, ``seq_len`` or noise, naming what differs."""
        path = path or self.path
        check_fingerprint(fingerprint, self.fingerprint, path)
        if len(self.windows) != fingerprint["pool_size"] or len(self.losses) != fingerprint.get(
            "pool_tokens", len(self.losses)
        ):
            raise StoreError(
                f"{path} holds {len(self.losses)} token losses ({len(self.windows)} windows) for a pool of "
                f"{fingerprint.get('pool_tokens')} tokens ({fingerprint['pool_size']} windows). {_FIX}"
            )

    def gather(self, index: Tensor) -> Tensor:
        """``[B, seq_len]`` float32 per-token IL of pool windows ``index``, aligned with their targets."""
        rows = self.windows[torch.as_tensor(index).long().cpu().numpy()]
        return torch.from_numpy(rows.astype(np.float32))

    def sequence_losses(self) -> Tensor:
        """``[pool windows]`` float32: each window's IL as the mean of its tokens' (what sequence-level
        selection scores with), computed a block of windows at a time."""
        return torch.from_numpy(
            np.concatenate([block.mean(axis=1, dtype=np.float32) for block in self._window_blocks()])
        )

    def to_tensor(self, device: torch.device | str = "cpu") -> Tensor:
        """All windows' per-token IL as one ``[pool windows, seq_len]`` float16 tensor on ``device``, for
        gathering there when the pool is small enough to hold."""
        return torch.from_numpy(np.array(self.windows)).to(device)
