"""Steps per second of online batch selection: the project's Lightning module against a minimal
raw-PyTorch loop doing the same math on the same tensors, A/B interleaved.

    python benchmarks/throughput.py [--repeats 5] [--steps 300] [--precision bf16]

The module runs twice: under a bare Trainer (no progress bar, logger or callbacks: what Lightning
itself costs) and under the trainer ``run.py`` builds at the project's defaults
(src/rholoss/configs/train.yaml with experiment=fmnist_noisy_mlp: progress bar, CSV logger, step
checkpoints, validation curve; built by ``rholoss.pipelines.parts.trainer_for``), what a user gets
without touching a setting.

Also times the Lightning reducible_loss run fed by a DataLoader instead of on-device tensors, and
each data path alone (large batches per second, no model).

Prints a Markdown table and writes benchmarks/results/throughput.json. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from rholoss.analysis import markdown_table
from rholoss.atomic import atomic_write_json
from rholoss.callbacks import ValCurve
from rholoss.configs import compose_config
from rholoss.data import FashionMNISTDataModule
from rholoss.models import MLP
from rholoss.modules import OnlineBatchSelection
from rholoss.pipelines.parts import trainer_for
from rholoss.selection import selection_size

warnings.filterwarnings("ignore")
AUTOCAST = {"bf16": torch.bfloat16, "16": torch.float16}


def bare_trainer(max_steps: int, clock: pl.Callback, **settings: Any) -> pl.Trainer:
    """A Trainer with nothing but ``clock``: no logger, checkpoints, progress bar or validation, so a
    step costs what Lightning itself adds (``settings``: accelerator, precision, ...)."""
    settings = {"accelerator": "cpu", **settings}
    return pl.Trainer(
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[clock],
        log_every_n_steps=50,
        **settings,
    )


class StepClock(pl.Callback):
    """Time from the end of step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def default_trainer(method: str, max_steps: int, callbacks: list[pl.Callback], output_dir: Path) -> pl.Trainer:
    """The trainer run.py builds from the composed default configs (only the step budget and the
    output folder changed; CPU, as the raw loop)."""
    cfg = compose_config(
        "train",
        [
            "experiment=fmnist_noisy_mlp",
            f"selection={method}",
            "trainer=cpu",
            f"trainer.max_steps={max_steps}",
            "val_every_n_steps=500",
            f"paths.root_dir={output_dir}",
            f"paths.output_dir={output_dir}",
        ],
    )
    return trainer_for(cfg, output_dir, callbacks)


def lightning_steps_per_second(
    datamodule, il: torch.Tensor, method: str, steps: int, warmup: int, precision: str, defaults: bool = False
) -> float:
    """Steps per second of the module under a bare Trainer, or (``defaults``) under the trainer of
    the project's default configs."""
    torch.manual_seed(0)
    module = OnlineBatchSelection(
        MLP((1, 28, 28), 10),
        10,
        selection=method,
        percent_train=0.1,
        # uniform draws only the n_b points it trains on (as run.py does)
        draw_only_selected=method == "uniform",
        precision=precision,
    )
    module.prepare_pool(len(il), il, noise=datamodule.corrupted)
    clock = StepClock(warmup)
    with tempfile.TemporaryDirectory() as output_dir:
        if defaults:
            trainer = default_trainer(method, warmup + steps, [ValCurve(), clock], Path(output_dir))
        else:
            trainer = bare_trainer(warmup + steps, clock)
        trainer.fit(module, datamodule=datamodule)
    return steps / (clock.end - clock.start)


def raw_steps_per_second(
    x_pool, y_pool, il, method: str, large_batch: int, steps: int, warmup: int, precision: str
) -> float:
    torch.manual_seed(0)
    model = MLP((1, 28, 28), 10)
    optimizer = torch.optim.AdamW(model.parameters())
    k = selection_size(large_batch, 0.1)
    draw = k if method == "uniform" else large_batch
    order = torch.randperm(len(y_pool))
    autocast = precision in AUTOCAST
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        begin = (step * draw) % (len(y_pool) - draw)
        index = order[begin : begin + draw]
        x, y = x_pool[index], y_pool[index]
        if method == "reducible_loss":
            with torch.inference_mode(), torch.autocast("cpu", dtype=AUTOCAST.get(precision), enabled=autocast):
                losses = F.cross_entropy(model(x).float(), y, reduction="none")
            chosen = torch.topk(losses - il[index], k, sorted=False).indices
            x, y = x[chosen], y[chosen]
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def forward_images_per_second(x_pool, large_batch: int, precision: str, repeats: int = 50) -> float:
    model = MLP((1, 28, 28), 10)
    x = x_pool[:large_batch]
    with torch.inference_mode(), torch.autocast("cpu", dtype=AUTOCAST.get(precision), enabled=precision in AUTOCAST):
        for _ in range(5):
            model(x)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return repeats * large_batch / (time.perf_counter() - start)


def loader_batches_per_second(datamodule, on_device: bool, batches: int) -> float:
    """Large batches per second of the training loader alone (no model): what the data path costs."""
    datamodule.on_device, datamodule.trainer = on_device, None
    next(iter(datamodule.train_dataloader()))  # the on-device path's one-off copy to the device
    start = time.perf_counter()
    drawn = 0
    while drawn < batches:  # the pool holds fewer large batches than asked for: go on over epochs
        for _ in datamodule.train_dataloader():
            drawn += 1
            if drawn == batches:
                break
    datamodule.on_device = True
    return batches / (time.perf_counter() - start)


def paired_ratio(samples: dict[str, list[float]], a: str, b: str) -> float:
    """The median over repeats of ``a / b`` measured in the same repeat."""
    return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--large-batch", type=int, default=640)
    parser.add_argument("--precision", default="bf16", choices=["32", "bf16", "16"])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "throughput.json")
    args = parser.parse_args()

    datamodule = FashionMNISTDataModule(batch_size=args.large_batch, label_noise=0.1, on_device=True, download=False)
    datamodule.setup()
    x_pool, y_pool = datamodule._device_tensors("pool")
    il = torch.rand(len(y_pool)) * 2  # the values do not change the cost

    samples: dict[str, list[float]] = {}
    for _ in range(args.repeats):  # A/B interleaved, so drifts in machine load hit both sides alike
        for method in ("uniform", "reducible_loss"):
            datamodule.batch_size = selection_size(args.large_batch, 0.1) if method == "uniform" else args.large_batch
            samples.setdefault(f"lightning/{method}", []).append(
                lightning_steps_per_second(datamodule, il, method, args.steps, args.warmup, args.precision)
            )
            samples.setdefault(f"defaults/{method}", []).append(
                lightning_steps_per_second(
                    datamodule, il, method, args.steps, args.warmup, args.precision, defaults=True
                )
            )
            samples.setdefault(f"raw/{method}", []).append(
                raw_steps_per_second(
                    x_pool, y_pool, il, method, args.large_batch, args.steps, args.warmup, args.precision
                )
            )
        datamodule.on_device = False  # the same module fed by a DataLoader (per-sample __getitem__ + collate)
        samples.setdefault("lightning/reducible_loss/dataloader", []).append(
            lightning_steps_per_second(datamodule, il, "reducible_loss", args.steps, args.warmup, args.precision)
        )
        datamodule.on_device = True
        for on_device, name in ((True, "on_device"), (False, "dataloader")):
            samples.setdefault(f"loader_batches_per_second/{name}", []).append(
                loader_batches_per_second(datamodule, on_device, args.steps)
            )
        samples.setdefault("forward_images_per_second", []).append(
            forward_images_per_second(x_pool, args.large_batch, args.precision)
        )
    median = {name: statistics.median(values) for name, values in samples.items()}
    uniform_ms, rho_ms = 1000 / median["lightning/uniform"], 1000 / median["lightning/reducible_loss"]
    forward_ms = 1000 * args.large_batch / median["forward_images_per_second"]
    summary = {
        "settings": vars(args) | {"output": str(args.output), "torch_threads": torch.get_num_threads()},
        "median": median,
        "samples": samples,
        # Medians of each repeat's ratio: a drift in machine load hits both sides of a repeat alike.
        "lightning_over_raw": {
            m: paired_ratio(samples, f"lightning/{m}", f"raw/{m}") for m in ("uniform", "reducible_loss")
        },
        "defaults_over_raw": {
            m: paired_ratio(samples, f"defaults/{m}", f"raw/{m}") for m in ("uniform", "reducible_loss")
        },
        "reducible_step_over_uniform_step": rho_ms / uniform_ms,
        "extra_ms_over_forward_ms": (rho_ms - uniform_ms) / forward_ms,
        "on_device_over_dataloader": median["lightning/reducible_loss"] / median["lightning/reducible_loss/dataloader"],
        "loader_on_device_over_dataloader": (
            median["loader_batches_per_second/on_device"] / median["loader_batches_per_second/dataloader"]
        ),
    }
    atomic_write_json(summary, args.output)

    print(
        f"MLP on Fashion-MNIST, n_B={args.large_batch}, n_b={selection_size(args.large_batch, 0.1)}, "
        f"selection precision {args.precision}, {torch.get_num_threads()} threads, median of {args.repeats}\n"
    )
    rows = [
        [
            method,
            f"{median[f'raw/{method}']:.1f}",
            f"{median[f'lightning/{method}']:.1f}",
            f"{summary['lightning_over_raw'][method]:.2f}",
            f"{median[f'defaults/{method}']:.1f}",
            f"{summary['defaults_over_raw'][method]:.2f}",
        ]
        for method in ("uniform", "reducible_loss")
    ]
    print(
        markdown_table(
            [
                "method",
                "raw loop steps/s",
                "bare Trainer steps/s",
                "bare / raw",
                "default configs steps/s",
                "defaults / raw",
            ],
            rows,
        )
    )
    print("steps/s: medians over the repeats; ratios: medians of each repeat's ratio (A/B interleaved).")
    print(
        f"\nreducible_loss step / uniform step: {summary['reducible_step_over_uniform_step']:.2f} "
        f"({rho_ms:.2f} ms vs {uniform_ms:.2f} ms)"
    )
    print(
        f"extra time of a reducible_loss step / bare inference forward over n_B: "
        f"{summary['extra_ms_over_forward_ms']:.2f} ({rho_ms - uniform_ms:.2f} ms vs {forward_ms:.2f} ms)"
    )
    print(
        f"reducible_loss on-device data / DataLoader: {summary['on_device_over_dataloader']:.2f} "
        f"({median['lightning/reducible_loss']:.1f} vs {median['lightning/reducible_loss/dataloader']:.1f} steps/s)"
    )
    print(
        f"loading alone, on-device / DataLoader: {summary['loader_on_device_over_dataloader']:.1f} "
        f"({median['loader_batches_per_second/on_device']:.0f} vs "
        f"{median['loader_batches_per_second/dataloader']:.0f} large batches/s)"
    )


if __name__ == "__main__":
    main()
