"""The pool followed by the holdout as one token file (``datamodule.pool_includes_holdout``): what a
baseline that needs no IL model trains on, so it sees every token the user has.

The joined file is written once beside the pool, a chunk at a time (RAM holds a chunk, not the corpus),
so every per-token array (windows, noise mask, a per-token IL store of halves of it) works on it as on
any pool. The pool's windows keep their indices; the holdout's follow, clean, and one window straddles
the seam as windows straddle document ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from rholoss.atomic import atomic_write
from rholoss.data.tokens.files import TokenFile, write_token_file

CHUNK = 1 << 22  # tokens read and written at a time


def write_joined_pool(pool: TokenFile, holdout: TokenFile, noise_mask: np.ndarray | None, path: Path) -> TokenFile:
    """Write ``pool`` then ``holdout`` to ``path``; with a ``noise_mask`` of the pool, the joined mask
    (the holdout's tokens clean) to ``<path>.mask``, written before the token file's metadata, which
    names it. Document ranges are the pool's, then the holdout's shifted past the pool."""
    if pool.vocab_size != holdout.vocab_size or pool.tokenizer != holdout.tokenizer:
        raise ValueError(
            f"The pool ({pool.tokenizer}, {pool.vocab_size} ids) and the holdout ({holdout.tokenizer}, "
            f"{holdout.vocab_size} ids) are tokenized differently, so they cannot be one pool: tokenize both "
            "with the same tokenizer."
        )

    def chunks() -> Iterator[tuple[str, np.ndarray]]:
        for name, file in (("pool", pool), ("holdout", holdout)):
            for offset in range(0, len(file), CHUNK):
                yield f"{name} chunk {offset // CHUNK}", np.asarray(file.tokens[offset : offset + CHUNK])

    extra: dict = {"joined": {"pool_tokens": len(pool), "holdout_tokens": len(holdout)}}
    if noise_mask is not None:
        mask_path = path.with_suffix(".mask")

        def write_mask(file: IO[bytes]) -> None:
            for offset in range(0, len(noise_mask), CHUNK):
                file.write(np.asarray(noise_mask[offset : offset + CHUNK], dtype=np.uint8).tobytes())
            for offset in range(0, len(holdout), CHUNK):
                file.write(bytes(min(CHUNK, len(holdout) - offset)))

        atomic_write(mask_path, write_mask)
        extra.update(noise_mask=mask_path.name, noise_tokens=int(pool.extra.get("noise_tokens", 0)))
    shift = len(pool)
    ranges = [*pool.documents, *((name, start + shift, end + shift) for name, start, end in holdout.documents)]
    return write_token_file(path, chunks(), pool.vocab_size, pool.tokenizer, pool.eos_token_id, extra, ranges)
