"""Scoring by a small proxy trained online (ClassAct; Evans et al., "Bad students make great teachers",
2024): each step's large batch is scored by the proxy's loss instead of the target's, and the proxy then
takes one step of its own on exactly what the target trains on, so it follows the target's data as the
target learns. The scoring pass over n_B points costs what the proxy costs: a width-128 MLP scores
Fashion-MNIST at a fraction of the 512-wide target's cost and keeps RHO-LOSS's noise filtering (a point
with a wrong label stays hard for any model; its IL says it is not learnable).

The proxy is held outside the module tree on purpose: the target's optimizer takes the training
module's parameters and DDP averages their gradients, and the proxy is trained by neither. It still
follows the module to its device and dtype, and its weights and optimizer state are in the checkpoint
(the method's extra state), so a resumed run scores as an uninterrupted one. Under DDP each rank's
proxy learns from that rank's share of the step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from rholoss.methods.base import Run, TrainingContext
from rholoss.methods.points import PointSelection
from rholoss.selection.registry import Selection, SelectionRule
from rholoss.selection.step import selected_loss


class ProxySelection(PointSelection):
    """Point selection scored by a proxy model that trains on what the target trains on.

    Args:
        proxy: the proxy's model config, as the ``model`` group's (``_target_`` and its settings; the
            data's arguments, such as ``input_shape`` and ``num_classes``, are filled in as for the
            target), e.g. ``{_target_: rholoss.models.MLP, hidden_sizes: [128, 128, 128]}``; or, outside
            the pipelines (an own loop, a test), the proxy model itself.
        The other arguments are :class:`~rholoss.methods.points.PointSelection`'s; the proxy trains with
        the run's optimizer (its learning rate held constant).
    """

    def __init__(
        self,
        rule: SelectionRule,
        percent_train: float = 0.1,
        proxy: Mapping[str, Any] | nn.Module | None = None,
        options: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(rule, percent_train, options=options, **settings)
        if not rule.needs_forward or rule.needs_mc_samples:
            raise ValueError(
                f"A proxy scores by one forward pass per point; {rule.name!r} "
                f"{'needs MC-dropout samples' if rule.needs_mc_samples else 'needs no forward pass'}: "
                "use it without selection._target_=rholoss.methods.ProxySelection."
            )
        if self.stale is not None:
            raise ValueError("A proxy's scoring pass is already cheap: remove selection.stale_every.")
        # Held in a dict, not as a submodule: see the module's docstring.
        self._held: dict[str, Any] = {}
        self._pending_optimizer_state: dict[str, Any] | None = None
        if isinstance(proxy, nn.Module):
            self._held["model"] = proxy
            self.proxy_settings: dict[str, Any] = {"model": type(proxy).__name__}
        elif proxy and "_target_" in proxy:
            self.proxy_settings = dict(proxy)
        else:
            raise ValueError(
                "selection.proxy is the proxy's model config, with a _target_: e.g. "
                "selection.proxy={_target_: rholoss.models.MLP, hidden_sizes: [128, 128, 128]}."
            )

    def prepare(self, run: Run) -> None:
        super().prepare(run)
        if "model" not in self._held:
            if run.new_model is None:
                raise RuntimeError(
                    "A proxy config is built for the run's data: prepare ProxySelection with a pipeline's Run, "
                    "or give it the proxy model itself (proxy=nn.Module)."
                )
            self._held["model"] = run.new_model(self.proxy_settings)
        self._held["optimizer_factory"] = run.optimizer or _default_optimizer

    @property
    def proxy(self) -> nn.Module:
        if "model" not in self._held:
            raise RuntimeError("The proxy is built by prepare(run): call it first.")
        model: nn.Module = self._held["model"]
        return model

    def scoring_model(self, context: TrainingContext) -> nn.Module:
        return self.proxy

    def learn(self, x: Any, y: Tensor, chosen: Selection, context: TrainingContext) -> None:
        """One optimizer step of the proxy on the points the target trains on, with their weights."""
        optimizer = self._optimizer()
        self.proxy.train()
        with torch.enable_grad():
            loss = selected_loss(context.task.point_loss(self.proxy(x), y), chosen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def _optimizer(self) -> torch.optim.Optimizer:
        """Built at the first step, on the proxy's device; a checkpoint's state is loaded there too."""
        if "optimizer" not in self._held:
            factory: Callable[..., torch.optim.Optimizer] = self._held["optimizer_factory"]
            self._held["optimizer"] = factory(self.proxy.parameters())
        optimizer: torch.optim.Optimizer = self._held["optimizer"]
        if self._pending_optimizer_state is not None:
            optimizer.load_state_dict(self._pending_optimizer_state)
            self._pending_optimizer_state = None
        return optimizer

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> ProxySelection:
        # The training module's .to(device) or dtype cast reaches the proxy too.
        super()._apply(fn, recurse)
        if "model" in self._held:
            self.proxy._apply(fn, recurse)
        return self

    def get_extra_state(self) -> dict[str, Any]:
        optimizer = self._held.get("optimizer")
        state = optimizer.state_dict() if optimizer is not None else self._pending_optimizer_state
        return {"proxy": self.proxy.state_dict(), "optimizer": state}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.proxy.load_state_dict(state["proxy"])
        self._pending_optimizer_state = state["optimizer"]
        self._held.pop("optimizer", None)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "proxy": self.proxy_settings}

    def results(self) -> dict[str, Any]:
        return {**super().results(), "proxy": self.proxy_settings}


def _default_optimizer(parameters: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=1e-3)
