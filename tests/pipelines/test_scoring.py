"""Stage one's pool scoring, sharded and resumable: shards planned independently of the ranks, a run
killed while scoring resumes with only the missing shards and writes the same store, parts made by
other IL weights are dropped, and two DDP processes share the work and write the one-process store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rholoss.irreducible import IrreducibleLossStore, TokenLossStore
from rholoss.pipelines import train_irreducible
from rholoss.pipelines.scoring import Scorer, plan_shards
from tests.conftest import synthetic_config
from tests.pipelines.test_cli import QUIET, run
from tests.pipelines.test_language_models import lm_config, lm_overrides
from tests.resuming import kill_scoring_at

POOL, SHARD = 1800, 300  # the synthetic pool: 6 shards


def test_shards_cover_each_scorers_positions_in_order() -> None:
    halves = [torch.tensor([0, 2, 4, 6, 8]), torch.tensor([1, 3, 5, 7, 9])]
    scorers = [Scorer(None, None, None, positions) for positions in halves]  # type: ignore[arg-type]
    shards = plan_shards(scorers, 10, 2)
    assert [(s.number, s.scorer, s.positions.tolist()) for s in shards] == [
        (0, 0, [0, 2]),
        (1, 0, [4, 6]),
        (2, 0, [8]),
        (3, 1, [1, 3]),
        (4, 1, [5, 7]),
        (5, 1, [9]),
    ]
    assert [s.positions.tolist() for s in plan_shards([Scorer(None, None, None, None)], 5, 3)] == [[0, 1, 2], [3, 4]]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shard_size must be a positive"):
        plan_shards(scorers, 10, 0)


@pytest.mark.slow
def test_a_run_killed_while_scoring_resumes_with_the_missing_shards_only(tmp_path: Path) -> None:
    shards = [f"irreducible.shard_size={SHARD}"]
    whole = train_irreducible(synthetic_config(tmp_path / "a", "train_irreducible", *shards, output="il"))
    assert (whole["scored_by_rank"], whole["resumed_points"]) == ([POOL], 0)

    killed_root = tmp_path / "b"
    with pytest.raises(RuntimeError, match="killed while scoring shard 3"):
        train_irreducible(synthetic_config(killed_root, "train_irreducible", *shards, *kill_scoring_at(3), output="il"))
    store = Path(whole["il_store"].replace(str(tmp_path / "a"), str(killed_root)))
    parts = store.with_name(store.name + ".parts")
    assert not store.exists() and len(list(parts.glob("shard-*.pt"))) == 2

    resumed = train_irreducible(synthetic_config(killed_root, "train_irreducible", *shards, output="il"))
    assert (resumed["scored_by_rank"], resumed["resumed_points"]) == ([POOL - 2 * SHARD], 2 * SHARD)
    assert resumed["il_store"] == str(store) and not parts.exists()
    assert torch.equal(
        IrreducibleLossStore.load(store).losses, IrreducibleLossStore.load(Path(whole["il_store"])).losses
    )
    assert resumed["mean_irreducible_loss"] == pytest.approx(whole["mean_irreducible_loss"])


@pytest.mark.slow
def test_parts_made_by_other_weights_are_dropped(tmp_path: Path) -> None:
    common = [f"irreducible.shard_size={SHARD}", f"irreducible.path={tmp_path / 'il.pt'}"]
    with pytest.raises(RuntimeError, match="killed while scoring shard 3"):
        train_irreducible(synthetic_config(tmp_path, "train_irreducible", *common, *kill_scoring_at(3), output="a"))
    assert len(list((tmp_path / "il.pt.parts").glob("shard-*.pt"))) == 2
    # Another IL model (fewer steps) writing the same store: the earlier model's shards are not its own.
    other = train_irreducible(
        synthetic_config(tmp_path, "train_irreducible", *common, "trainer.max_steps=30", output="b")
    )
    assert (other["scored_by_rank"], other["resumed_points"]) == ([POOL], 0)


@pytest.mark.slow
def test_a_per_token_store_resumes_to_the_same_store(tmp_path: Path) -> None:
    common = ["irreducible.shard_size=20", "trainer.max_steps=20"]
    whole = train_irreducible(lm_config(tmp_path / "a", "train_irreducible", *common, output="il"))
    with pytest.raises(RuntimeError, match="killed while scoring shard 2"):
        train_irreducible(lm_config(tmp_path / "b", "train_irreducible", *common, *kill_scoring_at(2), output="il"))
    resumed = train_irreducible(lm_config(tmp_path / "b", "train_irreducible", *common, output="il"))
    assert resumed["resumed_points"] == 20
    a, b = TokenLossStore.open(Path(whole["il_store"])), TokenLossStore.open(Path(resumed["il_store"]))
    assert b.windows.shape == a.windows.shape and (b.windows == a.windows).all()


def scored_on_one_then_two_processes(root: Path, *overrides: str) -> tuple[dict, dict]:
    """(1-process result, 2-process result) of an IL stage: trained and scored on one process, then the
    same trained run resumed under DDP into another cache, so two processes score the same IL model."""
    one = run("run_irreducible.py", *QUIET, *overrides, f"hydra.run.dir={root / 'one'}", root=root)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run(
        "run_irreducible.py",
        *QUIET,
        *overrides,
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        f"resume={root / 'one'}",
        f"paths.cache_dir={root / 'cache2'}",
        f"hydra.run.dir={root / 'two'}",
        root=root,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    single, double = (json.loads((root / folder / "results.json").read_text()) for folder in ("one", "two"))
    assert double["il_store"] != single["il_store"]
    return single, double


@pytest.mark.slow
def test_two_ddp_processes_share_the_scoring_and_write_the_one_process_store(tmp_path: Path) -> None:
    single, double = scored_on_one_then_two_processes(
        tmp_path, "trainer.max_steps=30", "checkpoint.every_n_steps=30", f"irreducible.shard_size={SHARD}"
    )
    assert single["scored_by_rank"] == [POOL]
    assert double["scored_by_rank"] == [POOL // 2, POOL // 2]  # 6 shards: 3 each, nothing scored twice
    a = IrreducibleLossStore.load(Path(single["il_store"])).losses
    b = IrreducibleLossStore.load(Path(double["il_store"])).losses
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.slow
def test_two_ddp_processes_write_the_one_process_per_token_store(tmp_path: Path) -> None:
    single, double = scored_on_one_then_two_processes(
        tmp_path,
        *lm_overrides(tmp_path, "train_irreducible"),
        "trainer.max_steps=20",
        "irreducible.shard_size=20",
        "checkpoint.every_n_steps=20",
    )
    assert sum(double["scored_by_rank"]) == sum(single["scored_by_rank"]) and min(double["scored_by_rank"]) > 0
    a, b = TokenLossStore.open(Path(single["il_store"])), TokenLossStore.open(Path(double["il_store"]))
    assert np.allclose(a.windows.astype("float32"), b.windows.astype("float32"), atol=1e-3)
