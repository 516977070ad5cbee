"""Selection methods as plug-ins: a :class:`Method` has a lifecycle (check, prepare, step, results)
and runs a scoring rule from :mod:`rholoss.selection`; :func:`build_method` makes one from the
``selection`` config (``name`` or ``_target_``); :class:`SelectionDiagnostics` records what training
was spent on."""

from rholoss.methods.base import Method, Run, StepOutcome, TrainingContext
from rholoss.methods.diagnostics import SelectionDiagnostics
from rholoss.methods.factory import build_method, method_class_for, selection_keys
from rholoss.methods.points import PointSelection
from rholoss.methods.proxy import ProxySelection
from rholoss.methods.stale import StaleScores
from rholoss.methods.svp import CoresetSelection, EntropyProxy, max_entropy_coreset
from rholoss.methods.tokens import TokenSelection

__all__ = [
    "CoresetSelection",
    "EntropyProxy",
    "Method",
    "PointSelection",
    "ProxySelection",
    "Run",
    "SelectionDiagnostics",
    "StaleScores",
    "StepOutcome",
    "TokenSelection",
    "TrainingContext",
    "build_method",
    "max_entropy_coreset",
    "method_class_for",
    "selection_keys",
]
