"""The per-token IL store and the token windows at language-model scale: write and open a synthetic
store of 100M tokens (float16: 200 MB) and a token file of the same length, and time the per-step
gathers of a large batch of windows (its IL, its inputs and targets), with the process's memory
after each phase to show that RAM stays bounded: its private memory (RssAnon, what it allocated)
and the file pages it has mapped (RssFile: page cache of the memory-mapped files, which the kernel
reclaims under pressure), beside the peak RSS (ru_maxrss, both together). Everything lives in a
temporary folder that is deleted afterwards.

    python benchmarks/token_store.py [--tokens 100000000] [--seq-len 256] [--windows 320]

Prints a Markdown table and writes benchmarks/results/token_store.json. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from rholoss.analysis import markdown_table
from rholoss.atomic import atomic_write_json
from rholoss.data.tokens.files import write_token_file
from rholoss.data.tokens.windows import TokenWindows, num_windows
from rholoss.irreducible import TokenLossStore, TokenLossWriter

WRITE_WINDOWS = 16_384  # windows per written batch of IL (a pool loader's batches are far smaller)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory() -> list[str]:
    """Private MiB, mapped file MiB (Linux's /proc/self/status; n/a elsewhere) and peak RSS MiB."""
    try:
        status = Path("/proc/self/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        private, mapped = (f"{int(fields[key].split()[0]) / 1024:.0f}" for key in ("RssAnon", "RssFile"))
    except (OSError, KeyError):
        private = mapped = "n/a"
    return [private, mapped, f"{peak_rss_mib():.0f}"]


def timed(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def per_call_ms(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and 95th percentile of ``repeats`` calls, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def write_store(path: Path, tokens: int, seq_len: int) -> None:
    windows = num_windows(tokens, seq_len)
    fingerprint = {
        "dataset": "synthetic",
        "pool_size": windows,
        "pool_tokens": tokens,
        "seq_len": seq_len,
        "digest": "0",
    }
    generator = torch.Generator().manual_seed(0)
    with TokenLossWriter(path, tokens, seq_len, fingerprint) as writer:
        for start in range(0, windows, WRITE_WINDOWS):
            rows = torch.arange(start, min(start + WRITE_WINDOWS, windows))
            writer.write(rows, torch.rand(len(rows), seq_len, generator=generator) * 8)


def token_chunks(tokens: int, vocab_size: int) -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    for start in range(0, tokens, 1 << 22):
        yield f"chunk {start}", rng.integers(0, vocab_size, min(1 << 22, tokens - start), dtype=np.int64)


def measure(
    folder: Path, args: argparse.Namespace, windows: int, rows: list[list[object]], summary: dict[str, object]
) -> None:
    """Every phase, on files in ``folder``: a row each in ``rows``, timings in ``summary``. The memory
    maps it opens are released when it returns, before the caller deletes the folder."""
    store_path, tokens_path = folder / "il.tokens", folder / "pool.bin"
    seconds, _ = timed(lambda: write_store(store_path, args.tokens, args.seq_len))
    rows.append(
        [
            "write IL store (chunked, atomic)",
            f"{seconds:.2f} s",
            f"{store_path.stat().st_size / 2**20:.0f} MiB",
            *memory(),
        ]
    )
    summary["write_store_s"] = seconds

    seconds, store = timed(lambda: TokenLossStore.open(store_path, verify=False))
    rows.append(["open IL store (map only)", f"{seconds * 1000:.2f} ms", "", *memory()])
    summary["open_store_s"] = seconds
    seconds, _ = timed(lambda: TokenLossStore.open(store_path))
    rows.append(["open IL store + NaN check (one chunked read)", f"{seconds:.2f} s", "", *memory()])
    summary["open_verified_store_s"] = seconds
    seconds, sequence = timed(store.sequence_losses)
    rows.append(["per-sequence IL of every window", f"{seconds:.2f} s", f"{len(sequence)} windows", *memory()])
    summary["sequence_losses_s"] = seconds

    generator = torch.Generator().manual_seed(1)
    draw = lambda: torch.randint(0, windows, (args.windows,), generator=generator)  # noqa: E731
    median, p95 = per_call_ms(lambda: store.gather(draw()), args.repeats)
    rows.append(
        [
            f"gather IL [{args.windows}, {args.seq_len}] (random windows)",
            f"{median:.2f} ms (p95 {p95:.2f})",
            "",
            *memory(),
        ]
    )
    summary["gather_il_ms"] = {"median": median, "p95": p95}

    seconds, token_file = timed(
        lambda: write_token_file(tokens_path, token_chunks(args.tokens, 50_257), 50_257, "synthetic")
    )
    rows.append(
        [
            "write token file (uint16, chunked, atomic)",
            f"{seconds:.2f} s",
            f"{tokens_path.stat().st_size / 2**20:.0f} MiB",
            *memory(),
        ]
    )
    summary["write_tokens_s"] = seconds
    pool = TokenWindows(token_file.tokens, args.seq_len)
    median, p95 = per_call_ms(lambda: pool.__getitems__(draw().tolist()), args.repeats)
    rows.append(
        [f"gather windows x, y [{args.windows}, {args.seq_len}]", f"{median:.2f} ms (p95 {p95:.2f})", "", *memory()]
    )
    summary["gather_windows_ms"] = {"median": median, "p95": p95}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=100_000_000)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--windows", type=int, default=320, help="windows per gathered batch (n_B)")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "token_store.json")
    args = parser.parse_args()
    windows = num_windows(args.tokens, args.seq_len)
    rows: list[list[object]] = []
    summary: dict[str, object] = {
        "tokens": args.tokens,
        "seq_len": args.seq_len,
        "windows": windows,
        "batch_windows": args.windows,
    }
    rows.append(["(the interpreter with torch and rholoss loaded)", "", "", *memory()])
    with tempfile.TemporaryDirectory() as folder:
        measure(Path(folder), args, windows, rows, summary)
    summary["peak_rss_mib"] = peak_rss_mib()
    header = ["operation", "time", "size", "private MiB", "mapped file MiB", "peak RSS MiB"]
    summary["table"] = [dict(zip(header, row, strict=True)) for row in rows]
    atomic_write_json(summary, args.output)
    print(f"{args.tokens:,} tokens, seq_len {args.seq_len}: {windows:,} windows; memory after each phase\n")
    print(markdown_table(header, rows))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
