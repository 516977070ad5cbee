"""CIFAR-10-size ResNet-18 on a GPU: steps/s of uniform and reducible_loss, fp32 vs bf16 selection,
on-device data vs a DataLoader, all through the project's Lightning module.

    python benchmarks/gpu.py [--steps 200] [--repeats 3] [--device cuda]

n_B=320, n_b=32 as in the paper's CIFAR runs. The data are 50k CIFAR-shaped synthetic images
(``SyntheticDataModule(image_shape=[3, 32, 32])``): throughput does not depend on pixel values, and
no dataset has to be on the machine. Configurations are interleaved within each repeat; medians are
reported. Prints a Markdown table and writes benchmarks/results/gpu.json.

A check of the script on a CPU (minutes; the full benchmark would take hours there):

    python benchmarks/gpu.py --device cpu --steps 2 --warmup 1 --repeats 1 --large-batch 40 --pool 2000
"""

from __future__ import annotations

import argparse
import logging
import statistics
import warnings
from pathlib import Path

import torch

from rholoss.analysis import markdown_table
from rholoss.atomic import atomic_write_json
from rholoss.data import SyntheticDataModule
from rholoss.data.augment import BatchAugment
from rholoss.models import resnet18
from rholoss.modules import OnlineBatchSelection
from rholoss.selection import selection_size
from throughput import StepClock, bare_trainer  # benchmarks/ is on sys.path when this file runs as a script

# (method, selection precision, on-device data)
CONFIGURATIONS = [
    ("uniform", "32", True),
    ("uniform", "32", False),
    ("reducible_loss", "32", True),
    ("reducible_loss", "bf16", True),
    ("reducible_loss", "32", False),
    ("reducible_loss", "bf16", False),
]


def steps_per_second(
    datamodule: SyntheticDataModule, il: torch.Tensor, method: str, precision: str, args: argparse.Namespace
) -> float:
    torch.manual_seed(0)
    module = OnlineBatchSelection(
        resnet18((3, 32, 32), 10),
        10,
        selection=method,
        percent_train=0.1,
        # uniform draws only the n_b points it trains on (as run.py does)
        draw_only_selected=method == "uniform",
        precision=precision,
        augment=BatchAugment(4) if args.augment else None,
    )
    module.prepare_pool(len(il), il)
    clock = StepClock(args.warmup)
    trainer = bare_trainer(
        args.warmup + args.steps, clock, accelerator=args.device, devices=1, precision=args.train_precision
    )
    trainer.fit(module, datamodule=datamodule)
    return args.steps / (clock.end - clock.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-batch", type=int, default=320)
    parser.add_argument("--pool", type=int, default=50_000)
    parser.add_argument("--train-precision", default="32-true", help="Lightning precision of the training step")
    parser.add_argument("--augment", action="store_true", help="batched crop+flip of each large batch on the device")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "gpu.json")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "No CUDA device here: run on a GPU machine, or check the script on the CPU with --device cpu "
            "--steps 2 --warmup 1 --repeats 1 --large-batch 40 --pool 2000."
        )
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.backends.cudnn.benchmark = True

    samples: dict[str, list[float]] = {}
    datamodule = SyntheticDataModule(
        num_train=args.pool + 5_000,
        num_test=1_000,
        image_shape=[3, 32, 32],
        val_size=5_000,
        holdout_fraction=0.0,
        batch_size=args.large_batch,
    )
    datamodule.setup()
    il = torch.rand(len(datamodule.split("pool")))
    for _ in range(args.repeats):
        for method, precision, on_device in CONFIGURATIONS:
            datamodule.on_device = on_device
            datamodule.batch_size = selection_size(args.large_batch, 0.1) if method == "uniform" else args.large_batch
            key = f"{method}/{precision}/{'on_device' if on_device else 'dataloader'}"
            samples.setdefault(key, []).append(steps_per_second(datamodule, il, method, precision, args))
    median = {key: statistics.median(values) for key, values in samples.items()}
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    summary = {
        "settings": vars(args) | {"output": str(args.output), "device_name": device_name},
        "median": median,
        "samples": samples,
    }
    atomic_write_json(summary, args.output)

    base = median["uniform/32/on_device"]
    print(
        f"ResNet-18, CIFAR-size inputs, n_B={args.large_batch}, n_b={selection_size(args.large_batch, 0.1)}, "
        f"{device_name}, training precision {args.train_precision}, augment {args.augment}, median of {args.repeats}\n"
    )
    rows = []
    for key, value in median.items():
        method, precision, data = key.split("/")
        rows.append([method, precision if method != "uniform" else "-", data, f"{value:.1f}", f"{base / value:.2f}"])
    header = ["method", "selection precision", "data", "steps/s", "step time / uniform on-device"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
