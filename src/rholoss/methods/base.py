"""A selection method as an object with a lifecycle, so that neither the pipeline nor the training
module branches on what a method is:

- :meth:`Method.check_task` / :meth:`Method.check_model`: refuse what the method cannot serve, before
  any data is loaded (and before training);
- :meth:`Method.points_per_step`: how many points a step draws (n_B, or n_b for methods that train on
  what they draw);
- :meth:`Method.prepare`: open its IL source, build a core-set, size its caches, from the :class:`Run`;
- :meth:`Method.step`: what one step trains on, with what weights (a :class:`StepOutcome`);
- :meth:`Method.results`: what it adds to ``results.json``.

A method is an ``nn.Module`` held by the training module, so its tables (IL, score caches) follow the
model to its device and what must survive a restart (a cache of scores) is in the checkpoint.
Scoring rules stay plain functions (:mod:`rholoss.selection.functions`); a method runs a rule.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from rholoss.irreducible.source import IrreducibleLosses, irreducible_losses
from rholoss.selection.registry import SelectionRule, check_applies
from rholoss.tasks import Task

if TYPE_CHECKING:
    import pytorch_lightning as pl

    from rholoss.data import SplitDataModule
    from rholoss.modules.supervised import OptimizerFactory


@dataclass
class Run:
    """What a method may use while it prepares: the task, the pool, and (from the pipeline) the data,
    the run's IL store, and a way to train an auxiliary model the way the run trains (SVP's proxy).

    ``irreducible(per_token)`` opens the run's IL store as a source: per token when the method reads
    per-token IL. ``fit(module, steps)`` trains a LightningModule for ``steps`` steps on the run's data
    and returns its trainer (to predict with). ``new_model()`` builds another copy of the run's model;
    ``new_model(settings)`` the model a config of the ``model`` group's form describes, fitted to the data.
    """

    task: Task
    pool_size: int
    datamodule: SplitDataModule | None = None
    irreducible: Callable[[bool], tuple[IrreducibleLosses, str | None]] | None = None
    fit: Callable[[pl.LightningModule, int], pl.Trainer] | None = None
    new_model: Callable[..., nn.Module] | None = None
    optimizer: OptimizerFactory | None = None
    # Set by prepare when a method read the IL store, for results.json.
    il_store: str | None = field(default=None)

    @classmethod
    def in_memory(cls, task: Task, pool_size: int, irreducible: Tensor | None = None) -> Run:
        """A run over a pool known only by its size, with IL given as a tensor (``[N]``, or ``[N, T]``
        per token): for a method used outside the pipelines (a test, a notebook)."""
        if irreducible is None:
            return cls(task, pool_size)
        losses = irreducible
        return cls(task, pool_size, irreducible=lambda per_token: (irreducible_losses(losses, per_token), None))

    def open_irreducible(self, per_token: bool = False) -> IrreducibleLosses:
        if self.irreducible is None:
            raise RuntimeError("This selection method needs irreducible losses, but the run has no IL source.")
        source, self.il_store = self.irreducible(per_token)
        return source


@dataclass(frozen=True)
class StepOutcome:
    """One step's choice: the ``loss`` to take a gradient step on, the pool indices ``trained`` on
    (repeats for methods that sample with replacement), the ``token_mask`` of their tokens that the
    loss averaged (``[len(trained), T]``; None: every token, or points that are not sequences) and the
    step's ``statistics`` (device tensors, logged as interval means)."""

    loss: Tensor
    trained: Tensor
    token_mask: Tensor | None = None
    statistics: dict[str, Tensor] = field(default_factory=dict)


class TrainingContext(Protocol):
    """What a step sees of the training module (the module itself): its model and task, the current
    step, the step budget and the learning rate's share of its peak (for selection schedules), its
    device, a training forward, and the pool's batches (for methods that re-score the pool)."""

    model: nn.Module
    task: Task

    @property
    def global_step(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def total_steps(self) -> int | None: ...

    @property
    def lr_share(self) -> float: ...

    def __call__(self, x: Any) -> Tensor: ...

    def pool_dataloader(self) -> Iterable[Any]: ...


class Method(nn.Module):
    """A selection method: runs ``rule`` (a registered scoring rule) with ``options`` (the rule's own
    keyword settings, e.g. ``temperature``), keeping ``percent_train`` (n_b / n_B) of each large batch.

    Subclasses implement :meth:`step`; the rest has defaults. The keyword arguments of a subclass's
    ``__init__`` are its config keys (``selection.<key>``), checked against the config like any
    ``_target_``'s.
    """

    token_level: ClassVar[bool] = False

    def __init__(
        self, rule: SelectionRule, percent_train: float = 0.1, options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.rule = rule
        self.percent_train = percent_train
        self.options = dict(options or {})
        self.irreducible: IrreducibleLosses | None = None

    @property
    def name(self) -> str:
        return self.rule.name

    def check_task(self, task: Task) -> None:
        """Refuse a task the rule cannot serve, listing the methods that apply."""
        check_applies(self.rule, task)

    def check_model(self, model: nn.Module) -> None:
        """Refuse a model the method cannot use (MC dropout without dropout layers)."""

    def points_per_step(self, large_batch_size: int) -> int:
        """How many points each step draws from the pool."""
        return large_batch_size

    def prepare(self, run: Run) -> None:
        """Open what the method needs before training: by default its IL source, when the rule needs one."""
        if self.rule.needs_irreducible:
            self.irreducible = run.open_irreducible(per_token=self.token_level)

    def il(self, index: Tensor) -> Tensor:
        """Per-point IL of pool points ``index`` (the mean over a sequence's tokens)."""
        return self._irreducible().points(index)

    def il_tokens(self, index: Tensor) -> Tensor:
        return self._irreducible().tokens(index)

    def _irreducible(self) -> IrreducibleLosses:
        if self.irreducible is None:
            raise RuntimeError(f"Selection {self.name!r} needs irreducible losses: call prepare(run) first.")
        return self.irreducible

    def step(self, context: TrainingContext, index: Tensor, x: Any, y: Tensor) -> StepOutcome:
        """Choose what to train on from the drawn batch ``(index, x, y)`` and give its loss."""
        raise NotImplementedError

    def results(self) -> dict[str, Any]:
        """What the method adds to ``results.json`` (the keys every run reports, with the method's values)."""
        return {
            "percent_train": self.percent_train,
            "draw_only_selected": False,
            "stale_every": None,
            "selection_precision": None,
            "coreset": None,
            "token_fraction": None,
            "proxy": None,
        }

    def describe(self) -> dict[str, Any]:
        """The method's settings, as recorded with the module's hyperparameters."""
        return {"name": self.name, "method": type(self).__name__, "percent_train": self.percent_train, **self.options}


def method_keys(method_class: type[Method]) -> set[str]:
    """The config keys a method class takes itself (its ``__init__``'s, less the rule and options)."""
    keys: set[str] = set()
    for base in method_class.__mro__:
        if "__init__" in vars(base) and issubclass(base, Method):
            parameters = inspect.signature(vars(base)["__init__"]).parameters.values()
            keys |= {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return keys - {"self", "rule", "options"}
