"""Two-process DDP on CPU (gloo), from the command line as a user runs it: both stages on synthetic data.

Semantics (docs/scale.md, "Several GPUs: DDP"): each of W ranks draws its own large batch of n_B from its
own share of the pool and trains on its own top n_b; one optimizer step averages the W gradients, so
a step is W * n_b points and max_steps counts optimizer steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from rholoss.data.in_memory import EpochPermutation
from rholoss.irreducible import IrreducibleLossStore
from tests.conftest import compose_config
from tests.pipelines.test_cli import QUIET, run

DDP = ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]


@pytest.mark.slow
def test_two_process_ddp_runs_both_stages_with_per_rank_selection(tmp_path: Path) -> None:
    il = run(
        "run_irreducible.py", *QUIET, *DDP, "trainer.max_steps=60", f"hydra.run.dir={tmp_path / 'il'}", root=tmp_path
    )
    assert il.returncode == 0, il.stderr[-3000:]
    il_results = json.loads((tmp_path / "il" / "results.json").read_text())
    # 900 holdout points per rank in batches of 64: 15 steps per epoch, so epoch 3 ends at step 60.
    assert il_results["steps"] == 60 and il_results["best_checkpoint"].endswith("epoch=3-step=60.ckpt")
    assert il_results["val_acc"] > 0.9
    store = IrreducibleLossStore.load(Path(il_results["il_store"]))
    assert len(store.losses) == 1800

    # Two steps of n_B = 320 per rank: 4 large batches, disjoint across ranks and epochs' first batches.
    target = run(
        "run.py",
        *QUIET,
        *DDP,
        "trainer.max_steps=2",
        "val_every_n_steps=1",
        f"hydra.run.dir={tmp_path / 'rho'}",
        root=tmp_path,
    )
    assert target.returncode == 0, target.stderr[-3000:]
    assert (
        "2 rank(s) each score 320 points and train on 32: a global large batch of 640 and a global batch of 64"
        in target.stderr + target.stdout
    )
    result = json.loads((tmp_path / "rho" / "results.json").read_text())
    assert (result["world_size"], result["global_large_batch_size"], result["global_batch_size"]) == (2, 640, 64)
    assert result["steps"] == 2
    # Counts are summed over the ranks: 2 steps x 2 ranks x 32 points, each point at most once (the
    # ranks draw disjoint shares; without sharding both ranks would pick the same points).
    assert result["selection_counts"]["histogram"] == [[0, 1800 - 128], [1, 128]]
    assert result["il_store"] == il_results["il_store"]  # loaded on every rank
    assert result["noisy_selected_fraction"] < 0.1


def test_ranks_draw_disjoint_shares_of_each_epoch() -> None:
    ranks = [EpochPermutation(10, seed=3, rank=r, world_size=3) for r in range(3)]
    for _ in range(2):  # two epochs
        shares = [sampler.permutation() for sampler in ranks]
        assert all(len(share) == 3 for share in shares)
        union = torch.cat(shares)
        assert len(set(union.tolist())) == 9  # disjoint; one point (10 mod 3) left out this epoch
    assert [len(sampler) for sampler in ranks] == [3, 3, 3]


def test_a_resumed_rank_continues_its_own_share() -> None:
    reference = EpochPermutation(12, seed=5, rank=1, world_size=2)
    epochs = [reference.permutation() for _ in range(3)]
    resumed = EpochPermutation(12, seed=5, rank=1, world_size=2)
    resumed.start_after(batches=4, batch_size=2, drop_last=True)  # 3 batches per epoch: epoch 1, batch 1
    assert torch.equal(resumed.permutation(), epochs[1][2:])
    assert torch.equal(resumed.permutation(), epochs[2])


def test_the_slurm_example_starts_one_task_per_device_on_every_node() -> None:
    overrides = [
        "hydra/launcher=slurm_ddp",
        "hydra.launcher.partition=gpu",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
    ]
    cfg = compose_config("train", overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert cfg.trainer.strategy.broadcast_buffers is False


def test_under_slurm_the_trainer_takes_its_rank_from_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """What each task of a 2-node x 2-device SLURM job sees (here: task 3, on node 1)."""
    slurm = {
        "SLURM_NTASKS": "4",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_PROCID": "3",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
        "SLURM_JOB_ID": "1234",
        "SLURM_JOB_NAME": "rholoss",
        "SLURM_NODELIST": "node[1-2]",
    }
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    # Building the trainer sets Lightning's process-wide rank (3 here): put it back afterwards, or
    # every later test in this process would log nothing, as a non-zero rank.
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    monkeypatch.setattr(utils_rank_zero_only, "rank", utils_rank_zero_only.rank)
    cfg = compose_config(
        "train", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.num_nodes=2"]
    )
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 3, 1, 1)
    assert trainer.is_global_zero is False
