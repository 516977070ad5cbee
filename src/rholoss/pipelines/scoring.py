"""Stage one's pool scoring: every pool point (or token) scored by its IL model, sharded over the ranks
and resumable by shard.

The pool is cut into shards of ``irreducible.shard_size`` points, whatever the number of ranks. Under DDP
rank ``r`` scores shards ``r, r + W, …`` of each IL model, so W processes do the work once between them.
A finished shard is saved at once (atomically) into a parts folder beside the store; a run stopped during
scoring (preempted, killed) and started again scores only the shards that are missing, as long as its IL
models have the same weights (the parts folder records a digest of them; other weights start it afresh).
Once every shard is there, rank 0 streams them into the one store (per point or per token) and removes
the parts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import Tensor

from rholoss.atomic import atomic_torch_save, atomic_write_json
from rholoss.data import SplitDataModule
from rholoss.irreducible import store_writer
from rholoss.irreducible.exchange import ids_list

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scorer:
    """An IL model ready to score: its LightningModule, the trainer that trained it, its best weights
    (None: the module's own) and the pool positions it scores (None: all of them)."""

    module: pl.LightningModule
    trainer: pl.Trainer
    best_checkpoint: str | None
    positions: Tensor | None


@dataclass(frozen=True)
class Shard:
    number: int
    scorer: int
    positions: Tensor


@dataclass(frozen=True)
class ScoringSummary:
    """``mean_loss``: mean IL over the pool's points (rank 0; NaN elsewhere); ``scored_by_rank``: points
    each rank scored in this run; ``resumed_points``: points found already scored by an earlier run;
    ``seconds``: the scoring's wall-clock, the store's writing included."""

    mean_loss: float
    scored_by_rank: list[int]
    resumed_points: int
    seconds: float


def plan_shards(scorers: Sequence[Scorer], pool_size: int, shard_size: int) -> list[Shard]:
    """The shards of every scorer's positions, in pool order, numbered across scorers."""
    if shard_size < 1:
        raise ValueError(f"irreducible.shard_size must be a positive number of points, got {shard_size}.")
    shards: list[Shard] = []
    for number, scorer in enumerate(scorers):
        positions = torch.arange(pool_size) if scorer.positions is None else scorer.positions
        for chunk in torch.split(positions, shard_size):
            shards.append(Shard(len(shards), number, chunk))
    return shards


class ScoringParts:
    """The folder of finished shards beside the store at ``store``, valid for one ``identity``."""

    def __init__(self, store: Path, identity: str) -> None:
        self.folder = store.with_name(store.name + ".parts")
        self.identity = identity

    def open(self) -> int:
        """Keep the shards of an earlier run with the same identity, drop any other's; returns how many
        were kept. Called on one rank."""
        record = self.folder / "identity.json"
        if self.folder.is_dir() and (not record.is_file() or json.loads(record.read_text()) != self.identity):
            log.info("IL scoring: dropping the parts in %s (made by other IL weights)", self.folder)
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.identity, record)
        return len(list(self.folder.glob("shard-*.pt")))

    def _file(self, shard: Shard) -> Path:
        return self.folder / f"shard-{shard.number:06d}.pt"

    def done(self, shard: Shard) -> bool:
        return self._file(shard).is_file()

    def save(self, shard: Shard, index: Tensor, losses: Tensor) -> None:
        atomic_torch_save({"index": index, "losses": losses}, self._file(shard))

    def load(self, shard: Shard) -> tuple[Tensor, Tensor]:
        part = torch.load(self._file(shard), map_location="cpu", weights_only=True)
        return part["index"], part["losses"]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def weights_identity(scorers: Sequence[Scorer], shard_size: int) -> str:
    """A digest of the scorers' weights (their best checkpoints') and the shard plan: parts made with
    another IL model, or cut otherwise, are not reused."""
    digest = hashlib.sha256(f"shard_size={shard_size}".encode())
    for scorer in scorers:
        state = (
            torch.load(scorer.best_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
            if scorer.best_checkpoint
            else scorer.module.state_dict()
        )
        for name in sorted(state):
            digest.update(name.encode())
            digest.update(state[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def score_pool(
    scorers: Sequence[Scorer],
    datamodule: SplitDataModule,
    path: Path,
    metadata: dict[str, Any],
    token_store: bool,
    shard_size: int,
) -> ScoringSummary:
    """Score the pool shard by shard on every rank, then (rank 0) write the store at ``path``."""
    started_all = time.perf_counter()
    trainer = scorers[0].trainer
    rank, world = trainer.global_rank, trainer.world_size
    pool_size = len(datamodule.split("pool"))
    shards = plan_shards(scorers, pool_size, shard_size)
    parts = ScoringParts(path, weights_identity(scorers, shard_size))
    if trainer.is_global_zero:
        kept = parts.open()
        if kept:
            log.info("IL scoring: resuming, %d of %d shards already scored", kept, len(shards))
    trainer.strategy.barrier("il-scoring-parts")
    scored, resumed = 0, 0
    for number, scorer in enumerate(scorers):
        own = [shard for shard in shards if shard.scorer == number][rank::world]
        slots = -(-sum(shard.scorer == number for shard in shards) // world)
        for slot in range(slots):
            shard = own[slot] if slot < len(own) else None
            todo = shard is not None and not parts.done(shard)
            if shard is not None and not todo:
                resumed += len(shard.positions)
            # Every rank predicts once per slot (Lightning synchronises the ranks around a predict, and
            # refuses a rank with nothing to predict), on one point it discards where its shard is done
            # or it has none.
            started = time.perf_counter()
            positions = shard.positions if shard is not None and todo else _first_point(scorer, pool_size)
            index, losses = _predict(scorer, datamodule, positions)
            if shard is not None and todo:
                parts.save(shard, index, losses)
                scored += len(index)
                log.info(
                    "IL scoring (rank %d): shard %d of %d, %d points at %.0f points/s",
                    rank,
                    shard.number + 1,
                    len(shards),
                    len(index),
                    len(index) / max(time.perf_counter() - started, 1e-9),
                )
    counts = torch.zeros(world, dtype=torch.long)
    counts[rank] = scored
    counts = trainer.strategy.reduce(counts, reduce_op="sum")
    resumed_total = int(trainer.strategy.reduce(torch.tensor(resumed), reduce_op="sum"))
    trainer.strategy.barrier("il-scoring-done")
    mean_loss = float("nan")
    if trainer.is_global_zero:
        ids = datamodule.sample_ids("pool")
        ids = None if ids is None or token_store else ids_list(ids)
        mean_loss = _merge(parts, shards, path, datamodule.fingerprint, metadata, token_store, pool_size, ids)
    trainer.strategy.barrier("il-store-written")
    return ScoringSummary(mean_loss, [int(c) for c in counts], resumed_total, time.perf_counter() - started_all)


def _merge(
    parts: ScoringParts,
    shards: Sequence[Shard],
    path: Path,
    fingerprint: dict[str, Any],
    metadata: dict[str, Any],
    token_store: bool,
    pool_size: int,
    ids: list[Any] | None,
) -> float:
    """Stream every shard into the store (written atomically), drop the parts; the mean IL per point."""
    total = 0.0
    with store_writer(path, fingerprint, metadata, token_store=token_store, ids=ids) as writer:
        for shard in shards:
            index, losses = parts.load(shard)
            writer.write(index, losses)
            total += float(losses.float().reshape(len(index), -1).mean(1).sum())
    parts.remove()
    return total / pool_size


class _Collect(BasePredictionWriter):
    """Hands each predicted batch to ``sink`` as it comes."""

    def __init__(self, sink: Callable[[Tensor, Tensor], None]) -> None:
        super().__init__(write_interval="batch")
        self.sink = sink

    def write_on_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any, *args: Any
    ) -> None:
        self.sink(*prediction)


def _first_point(scorer: Scorer, pool_size: int) -> Tensor:
    """One of the scorer's points: what a rank with no shard to score predicts on, to keep in step."""
    return (torch.arange(min(pool_size, 1)) if scorer.positions is None else scorer.positions)[:1]


def _predict(scorer: Scorer, datamodule: SplitDataModule, positions: Tensor) -> tuple[Tensor, Tensor]:
    """The scorer's ``(index, loss)`` on the pool points at ``positions`` (per point ``[B]`` float32, or
    per token ``[B, T]`` float16)."""
    indices: list[Tensor] = []
    losses: list[Tensor] = []

    def keep(index: Tensor, loss: Tensor) -> None:
        indices.append(index.cpu())
        loss = loss.detach().cpu()
        losses.append(loss.half() if loss.ndim == 2 else loss.float())

    collect = _Collect(keep)
    trainer = scorer.trainer
    trainer.callbacks.append(collect)  # type: ignore[attr-defined]  # set on the Trainer by a Lightning connector: mypy cannot see it
    try:
        trainer.predict(
            scorer.module,
            dataloaders=datamodule.pool_dataloader(positions),
            ckpt_path=scorer.best_checkpoint,
            return_predictions=False,
        )
    finally:
        trainer.callbacks.remove(collect)  # type: ignore[attr-defined]  # set on the Trainer by a Lightning connector: mypy cannot see it
    if not indices:
        return torch.empty(0, dtype=torch.long), torch.empty(0)
    return torch.cat(indices), torch.cat(losses)
