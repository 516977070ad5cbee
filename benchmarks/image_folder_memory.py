"""Memory of an image folder decoded lazily (per image, in DataLoader workers) against the in-memory path
(every image decoded once into one tensor), on a generated folder of PNGs.

Each configuration runs in a fresh Python process, which sets the datamodule up and reads the pool
once in eval batches (what IL scoring does), and reports its setup time, its images per second over
that pass, its peak resident memory (ru_maxrss) and its DataLoader workers' peak (the largest of
them); a first process only imports, the floor every row starts from. The folder lives in a temporary directory that is deleted afterwards.

    python benchmarks/image_folder_memory.py [--images 3000] [--size 128] [--workers 2]

Prints a Markdown table and writes benchmarks/results/image_folder_memory.json. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rholoss.analysis import markdown_table
from rholoss.atomic import atomic_write_json

CLASSES = ("a", "b", "c", "d")
RESULTS = Path(__file__).parent / "results" / "image_folder_memory.json"


def write_folder(root: Path, images: int, size: int) -> None:
    """``images`` RGB PNGs of ``size`` x ``size`` under ``root/train/<class>/`` and a tenth as many under
    ``root/test/<class>/``: smooth colour gradients plus noise, so they compress as photos do, not to nothing."""
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    for split, count in (("train", images), ("test", max(len(CLASSES), images // 10))):
        for number in range(count):
            colour = rng.uniform(0, 255, size=3).astype(np.float32)
            pixels = ramp[:, None, None] * colour + rng.normal(0, 12, size=(size, size, 3))
            path = root / split / CLASSES[number % len(CLASSES)] / f"{number:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)


def measure(folder: Path, decode: str, workers: int) -> dict[str, float]:
    """Set up the datamodule in this process, read the pool once, and return the figures."""
    import torch

    from rholoss.data import ImageFolderDataModule

    torch.set_num_threads(1)
    if decode == "none":  # the interpreter, torch and rholoss alone: what every row starts from
        return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    started = time.perf_counter()
    datamodule = ImageFolderDataModule(
        data_dir=str(folder),
        decode=decode,
        cache=False,
        on_device=False,
        num_workers=workers,
        val_size=100,
        batch_size=16,  # only the pool pass below runs: any size that fits the pool
        eval_batch_size=256,
    )
    datamodule.setup()
    setup_seconds = time.perf_counter() - started
    started = time.perf_counter()
    points = sum(len(index) for index, _, _ in datamodule.pool_dataloader())
    read_seconds = time.perf_counter() - started
    return {
        "setup_s": setup_seconds,
        "images_per_s": points / read_seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def run_in_fresh_process(folder: Path, decode: str, workers: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--measure", str(folder), "--decode", decode, "--workers", str(workers)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measuring decode={decode} with {workers} workers failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process's own call
    parser.add_argument("--decode", default="memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.decode, args.workers)))
        return
    configurations = [("none", 0), ("memory", 0), ("lazy", 0), ("lazy", args.workers)]
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write_folder(folder, args.images, args.size)
        results = [
            {"decode": decode, "workers": workers, **run_in_fresh_process(folder, decode, workers)}
            for decode, workers in configurations
        ]
    decoded_mib = args.images * 1.1 * 3 * args.size**2 * 4 / 2**20  # the pool's source, float32, train + test
    rows = [
        [
            "(imports only)" if r["decode"] == "none" else r["decode"],
            str(r["workers"]),
            f"{r['setup_s']:.1f}" if "setup_s" in r else "-",
            f"{r['images_per_s']:.0f}" if "images_per_s" in r else "-",
            f"{r['peak_rss_mib']:.0f}",
            f"{r['worker_peak_rss_mib']:.0f}" if r["workers"] else "-",
        ]
        for r in results
    ]
    headers = ["decode", "workers", "setup s", "images/s (pool pass)", "peak RSS MiB", "worker peak RSS MiB"]
    print(
        f"{args.images} + {args.images // 10} PNGs of {args.size}x{args.size} (float32 inputs: {decoded_mib:.0f} MiB)"
    )
    print(markdown_table(headers, rows))
    settings = {"images": args.images, "size": args.size, "workers": args.workers}
    atomic_write_json({"settings": settings, "results": results}, RESULTS)


if __name__ == "__main__":
    main()
