"""What the core needs to know about a kind of problem, and nothing more.

RHO-LOSS asks only for a per-example loss: the current model's and the IL model's. A :class:`Task`
says how to compute it from a model's outputs and the targets, how validation and test are
measured (a metric and whether higher or lower is better), and whether the outputs are class
logits (which some selection functions need). The modules, the pipelines, the IL store and the
analysis read these and nothing else, so a new kind of problem is one new file in this package.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from torch import Tensor
from torchmetrics import Metric

if TYPE_CHECKING:
    from rholoss.data import SplitDataModule

Mode = Literal["max", "min"]


class TaskMismatchError(ValueError):
    """The data (or a selection function) does not fit the task."""


class Task(ABC):
    """A kind of problem. Subclasses set the class attributes and implement the losses and metric.

    Class attributes (known before any data is loaded, so mistakes are refused early):
        name: the config name (``task=<name>``).
        metric: short metric name, logged as ``val/<metric>`` and ``test/<metric>``.
        mode: ``max`` when a higher metric is better, ``min`` when lower is.
        class_logits: the model's outputs are class logits, which ``entropy``, ``bald``,
            ``gradnorm`` and ``gradnorm_is`` need.
        metric_label: the metric in words, for messages (``accuracy``).
        metric_is_fraction: the metric is a share in [0, 1] (shown as a percentage).
        token_level: a point is a sequence whose loss is the mean of per-token losses
            (:meth:`token_loss`), which the IL store keeps and token-level selection uses.

    ``num_outputs`` is the width of the model's output layer; data-derived, so :meth:`fit_to`
    fills it in from the datamodule.
    """

    name: ClassVar[str]
    metric: ClassVar[str]
    mode: ClassVar[Mode]
    class_logits: ClassVar[bool]
    metric_label: ClassVar[str]
    metric_is_fraction: ClassVar[bool] = False
    token_level: ClassVar[bool] = False

    def __init__(self, num_outputs: int | None = None) -> None:
        self.num_outputs = num_outputs

    @property
    def val_metric(self) -> str:
        return f"val/{self.metric}"

    @property
    def test_metric(self) -> str:
        return f"test/{self.metric}"

    def better(self, a: float, b: float) -> bool:
        """Is metric value ``a`` better than ``b``."""
        return a > b if self.mode == "max" else a < b

    @abstractmethod
    def fit_to(self, datamodule: SplitDataModule) -> Task:
        """This task sized for ``datamodule`` (its output width), or a :class:`TaskMismatchError`
        that says what about the data does not fit and which task does."""

    @abstractmethod
    def point_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Per-example loss, float32 ``[N]`` whatever the outputs' precision: what the model trains
        on (its mean), what the IL store holds and what selection functions score."""

    def token_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Per-token losses ``[N, T]``, for tasks whose points are sequences (``token_level``): their
        point loss is the mean over tokens."""
        raise NotImplementedError(f"task={self.name} has no per-token losses: its points are not sequences.")

    @abstractmethod
    def new_metric(self) -> Metric:
        """A fresh metric for one of validation or test."""

    def update_metric(self, metric: Metric, outputs: Tensor, targets: Tensor) -> None:
        metric.update(outputs, targets)

    def output_problem(self, outputs: Tensor, batch: int) -> str | None:
        """What is wrong with a model's outputs for ``batch`` inputs (checked once, before training),
        or None: one row of ``num_outputs`` values per input."""
        expected = (batch, self.num_outputs)
        if tuple(outputs.shape) == expected:
            return None
        return (
            f"outputs shape {tuple(outputs.shape)} for {batch} inputs, but task={self.name} needs {expected}: "
            f"num_outputs={self.num_outputs}"
        )

    def derived_metrics(self, value: Tensor) -> dict[str, Tensor]:
        """Metrics computed from the metric's value and logged beside it (``val/ppl`` for a mean token loss)."""
        return {}

    def model_arguments(self) -> dict[str, Any]:
        """Data-derived arguments a model callable may take (passed only where its signature has them)."""
        return {"num_outputs": self.num_outputs}

    def describe(self) -> dict[str, Any]:
        """What ``results.json`` records about the task."""
        return {"task": self.name, "metric": self.val_metric, "mode": self.mode}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_outputs={self.num_outputs})"
