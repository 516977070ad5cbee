"""Selection-via-Proxy (Coleman et al., 2020): before training, a proxy model (the target's
architecture, the run's optimizer and batches) trains briefly on the pool and ranks every pool point
by predictive entropy; the most uncertain points form a core-set, and target training draws uniformly
from it (only the n_b points a step trains on)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from rholoss.methods.base import Run
from rholoss.methods.points import PointSelection
from rholoss.modules.supervised import Batch, SupervisedModule
from rholoss.selection.functions import entropy
from rholoss.selection.registry import SelectionInput, SelectionRule

log = logging.getLogger(__name__)


class EntropyProxy(SupervisedModule):
    """A SupervisedModule (classification) whose ``predict_step`` gives each point's predictive entropy."""

    def predict_step(self, batch: Batch, batch_idx: int) -> tuple[Tensor, Tensor]:
        index, x, y = batch
        return index, entropy(SelectionInput(targets=y, logits=self(x)))


def max_entropy_coreset(entropies: Tensor, fraction: float) -> Tensor:
    """Sorted positions of the ``fraction`` of points with the highest entropy (at least one)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"selection.coreset_fraction must be in (0, 1], got {fraction}.")
    size = max(1, round(fraction * len(entropies)))
    return torch.topk(entropies, size, sorted=False).indices.sort().values


class CoresetSelection(PointSelection):
    """Uniform draws from a core-set chosen once, in :meth:`prepare`.

    Args:
        coreset_fraction: share of the pool kept: the points of highest predictive entropy under the proxy.
        proxy_steps: steps the proxy trains on the pool.
    """

    def __init__(
        self,
        rule: SelectionRule,
        percent_train: float = 0.1,
        coreset_fraction: float = 0.5,
        proxy_steps: int = 300,
        draw_only_selected: bool = True,
        options: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(rule, percent_train, draw_only_selected=draw_only_selected, options=options, **settings)
        if proxy_steps < 1:
            raise ValueError(f"selection.proxy_steps must be positive, got {proxy_steps}.")
        if not 0.0 < coreset_fraction <= 1.0:
            raise ValueError(f"selection.coreset_fraction must be in (0, 1], got {coreset_fraction}.")
        self.coreset_fraction, self.proxy_steps = coreset_fraction, proxy_steps
        self.coreset: dict[str, Any] | None = None

    def prepare(self, run: Run) -> None:
        super().prepare(run)
        if run.datamodule is None or run.fit is None or run.new_model is None:
            raise RuntimeError(
                "Selection-via-Proxy trains a proxy on the run's data: prepare it with a pipeline's Run."
            )
        started = time.perf_counter()
        proxy = EntropyProxy(run.new_model(), run.task, run.optimizer)
        trainer = run.fit(proxy, self.proxy_steps)
        entropies = torch.empty(run.pool_size)
        for index, values in trainer.predict(proxy, dataloaders=run.datamodule.pool_dataloader()) or []:
            entropies[index.cpu()] = values.float().cpu()
        positions = max_entropy_coreset(entropies, self.coreset_fraction)
        run.datamodule.restrict_training(positions)
        log.info(
            "SVP core-set: %d of %d pool points (proxy trained %d steps)",
            len(positions),
            run.pool_size,
            self.proxy_steps,
        )
        self.coreset = {
            "size": len(positions),
            "fraction": self.coreset_fraction,
            "proxy_steps": self.proxy_steps,
            "proxy_seconds": round(time.perf_counter() - started, 3),
        }

    def results(self) -> dict[str, Any]:
        return {**super().results(), "coreset": self.coreset}
