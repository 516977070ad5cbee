"""Noise you can measure on a pool of tokens: spans of random tokens inside real text, and whole
windows of random tokens, recorded token by token.

Both are spans ``[start, end)`` of pool positions, drawn with a seed; the noisy pool and its noise
mask (one byte per token) are written a chunk at a time, so RAM stays bounded for any pool size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from rholoss.atomic import atomic_write
from rholoss.data.tokens.files import TokenFile, map_file, write_token_file

CHUNK = 1 << 22  # tokens per written chunk; random tokens are drawn per chunk, so it is part of the format


def token_noise_spans(
    num_tokens: int, share: float, mean_span: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of spans covering exactly ``round(share * num_tokens)`` positions of
    ``range(num_tokens)``, about ``mean_span`` long each, at random places.

    The noise total is cut into ``n`` random positive lengths and the clean rest into ``n + 1``
    random gaps; spans and gaps then alternate. Spans that touch (a gap of zero) read as one.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"datamodule.token_noise must be in [0, 1), got {share}.")
    if mean_span < 1:
        raise ValueError(f"datamodule.noise_span must be at least 1 token, got {mean_span}.")
    noisy = round(share * num_tokens)
    if noisy == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    count = max(1, round(noisy / mean_span))
    # Cut points 1..noisy-1, drawn without materialising that range (RAM: O(count), not O(pool)).
    cuts = np.sort(rng.choice(noisy - 1, size=count - 1, replace=False) + 1) if count > 1 else np.empty(0, np.int64)
    lengths = np.diff(np.concatenate([[0], cuts, [noisy]])).astype(np.int64)
    gap_cuts = np.sort(rng.integers(0, num_tokens - noisy + 1, size=count))
    gaps = np.diff(np.concatenate([[0], gap_cuts])).astype(np.int64)  # the gap before each span
    starts = np.cumsum(gaps) + np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return starts, starts + lengths


def window_noise_spans(
    num_windows: int, share: float, seq_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of the targets of ``round(share * num_windows)`` random windows: window
    ``i``'s targets are positions ``i * seq_len + 1`` to ``(i + 1) * seq_len`` (see
    :class:`~rholoss.data.tokens.windows.TokenWindows`), so every token it is trained to predict is
    noise, and no other window's target is."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"datamodule.sequence_noise must be in [0, 1), got {share}.")
    windows = np.sort(rng.choice(num_windows, size=round(share * num_windows), replace=False)).astype(np.int64)
    starts = windows * seq_len + 1
    return starts, starts + seq_len


def merge_spans(*spans: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The union of several span lists as sorted, disjoint, non-touching spans."""
    starts = np.concatenate([s for s, _ in spans]).astype(np.int64)
    ends = np.concatenate([e for _, e in spans]).astype(np.int64)
    if len(starts) == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    new = np.concatenate([[True], starts[1:] > reach[:-1]])
    group = np.cumsum(new) - 1
    merged_ends = np.zeros(int(group[-1]) + 1, np.int64)
    np.maximum.at(merged_ends, group, ends)
    return starts[new], merged_ends


def _chunk_masks(spans: tuple[np.ndarray, np.ndarray], num_tokens: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(offset, mask)`` of each chunk of ``CHUNK`` positions: True where a span covers it."""
    starts, ends = spans
    for offset in range(0, num_tokens, CHUNK):
        stop = min(offset + CHUNK, num_tokens)
        first, last = np.searchsorted(ends, offset, side="right"), np.searchsorted(starts, stop, side="left")
        change = np.zeros(stop - offset + 1, np.int32)
        np.add.at(change, np.clip(starts[first:last], offset, stop) - offset, 1)
        np.add.at(change, np.clip(ends[first:last], offset, stop) - offset, -1)
        yield offset, np.cumsum(change[:-1]) > 0


def write_noisy_pool(
    clean: TokenFile,
    spans: tuple[np.ndarray, np.ndarray],
    allowed_ids: np.ndarray,
    seed: int,
    path: Path,
    mask_path: Path,
    settings: dict,
) -> TokenFile:
    """Copy ``clean`` to ``path`` with every position inside ``spans`` replaced by an id drawn uniformly
    from ``allowed_ids``, and write the noise mask (uint8, 1 = noise) to ``mask_path``; the mask is
    written first and the token file's metadata (with ``settings`` and the realised noise count) last.
    """
    num_tokens = len(clean)

    def write_mask(file: IO[bytes]) -> None:
        for _, mask in _chunk_masks(spans, num_tokens):
            file.write(mask.astype(np.uint8).tobytes())

    def chunks() -> Iterator[tuple[str, np.ndarray]]:
        for number, (offset, mask) in enumerate(_chunk_masks(spans, num_tokens)):
            tokens = np.array(clean.tokens[offset : offset + len(mask)], dtype=np.int64)
            rng = np.random.default_rng([seed, number])
            tokens[mask] = allowed_ids[rng.integers(0, len(allowed_ids), int(mask.sum()))]
            yield f"chunk {number}", tokens

    atomic_write(mask_path, write_mask)
    noisy_tokens = int((spans[1] - spans[0]).sum())
    extra = {**settings, "noise_tokens": noisy_tokens, "noise_mask": Path(mask_path).name}
    # The files are where they were in the pool; only some of their ids changed.
    return write_token_file(
        path, chunks(), clean.vocab_size, clean.tokenizer, clean.eos_token_id, extra, clean.documents
    )


def open_noise_mask(path: Path, num_tokens: int) -> np.ndarray:
    """The noise mask of a pool of ``num_tokens`` tokens, memory-mapped (uint8, 1 = noise)."""
    size = Path(path).stat().st_size if Path(path).is_file() else None
    if size != num_tokens:
        raise ValueError(
            f"The noise mask {path} should hold {num_tokens} bytes, found {size}: delete the token cache "
            "folder and rerun."
        )
    return map_file(Path(path), np.dtype(np.uint8), num_tokens)
