from rholoss.callbacks.checkpoint import (
    CheckpointError,
    NonFiniteLossError,
    StepCheckpoint,
    requeued_run,
    resolve_resume,
)
from rholoss.callbacks.preemption import StopSignals
from rholoss.callbacks.progress import StepProgressBar
from rholoss.callbacks.step_timer import StepTimer
from rholoss.callbacks.test_curve import TestCurve
from rholoss.callbacks.val_curve import ValCurve

__all__ = [
    "CheckpointError",
    "NonFiniteLossError",
    "StepCheckpoint",
    "StepProgressBar",
    "StepTimer",
    "StopSignals",
    "TestCurve",
    "ValCurve",
    "requeued_run",
    "resolve_resume",
]
